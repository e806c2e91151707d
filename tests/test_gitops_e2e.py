"""The GitOps pipeline end to end against a real git repository (a copy of this repository's stacks, policy and
pipeline scripts, `git init` in a temporary folder), running the scripts the GitHub and GitLab pipelines run:

- a branch that grows a cluster: changed stacks -> review (validate, diff, offline plan, policy) -> the comment,
  published once and then edited in place (a GitHub-compatible comments API on 127.0.0.1) -> the gate passes;
- a branch that moves addresses, and one that breaks data residency: the gate fails (exit 6) naming the rule;
- the merge: apply (offline: the plan recorded) -> the drift check is clean, and reports drift once main moves on
  without an apply, writing nothing;
- a stale lock and a pending operation on a file:// state backend, explained.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cwd: Path, *cmd: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    full_env.pop("FJORD_STACKS_DIR", None)
    proc = subprocess.run(list(cmd), cwd=cwd, env=full_env, capture_output=True, text=True, check=False, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", *args).stdout.strip()


def edit_uk(repo: Path, change: Any) -> None:
    path = repo / "stacks" / "Pulumi.uk.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc["config"]["fjord:site"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def commit_change(repo: Path, change: Any, message: str, fresh_record: bool = False) -> None:
    """Change uk's spec, bring its allocation record up to date with `fjord alloc` (as an operator does: nothing
    recorded moves), or with `fresh_record` write a new record from nothing (which renumbers), and commit."""
    edit_uk(repo, change)
    if fresh_record:
        (repo / "stacks" / "Pulumi.uk.alloc.yaml").unlink()
    run(repo, "fjord", "alloc", "uk")
    git(repo, "commit", "-qam", message)


def commit_branch(repo: Path, branch: str, change: Any, message: str, fresh_record: bool = False) -> None:
    git(repo, "checkout", "-q", "-b", branch, "main")
    commit_change(repo, change, message, fresh_record)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this repository's stacks, policy settings, pipeline scripts and project file."""
    root = tmp_path / "site-repo"
    for part in ("stacks", "policy", "ci"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Pulumi.yaml", ".gitlab-ci.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / ".github", root / ".github")
    (root / "README.md").write_text("sites\n")
    git(root.parent, "init", "-q", "-b", "main", str(root))
    git(root, "config", "user.email", "ci@fjord.example")
    git(root, "config", "user.name", "fjord ci")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sites")
    return root


class Comments:
    """GitHub's issue comments API, as much as `fjord gitops publish` uses, on 127.0.0.1."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = [{"id": 1, "body": "a reviewer's comment"}]
        self.calls: list[tuple[str, str]] = []
        self.auth: set[str] = set()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        store = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert isinstance(doc, dict)
                return doc

            def _record(self) -> None:
                store.calls.append((self.command, self.path.split("?")[0]))
                store.auth.add(self.headers.get("Authorization", ""))

            def do_GET(self) -> None:
                self._record()
                page = int(self.path.split("page=")[-1]) if "page=" in self.path else 1
                self._reply(200, store.items[(page - 1) * 100 : page * 100])

            def do_POST(self) -> None:
                self._record()
                item = {"id": len(store.items) + 1, "body": self._body()["body"]}
                store.items.append(item)
                self._reply(201, item)

            def do_PATCH(self) -> None:
                self._record()
                cid = int(self.path.rsplit("/", 1)[-1])
                item = next(i for i in store.items if i["id"] == cid)
                item["body"] = self._body()["body"]
                self._reply(200, item)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def forge() -> Iterator[tuple[Comments, dict[str, str]]]:
    comments = Comments()
    server = ThreadingHTTPServer(("127.0.0.1", 0), comments.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "GITHUB_REPOSITORY": "sovereign/sites",
        "GITHUB_TOKEN": "ghs_test-token-never-printed",
        "GITHUB_EVENT_PATH": "",
    }
    try:
        yield comments, env
    finally:
        server.shutdown()
        server.server_close()


def test_grow_a_cluster_review_comment_in_place_merge_apply_and_drift(
    repo: Path, forge: tuple[Comments, dict[str, str]]
) -> None:
    comments, env = forge

    def grow(site: dict[str, Any]) -> None:
        site["clusters"][1]["gpus"] = 4352  # b200: one more scalable unit of 32 nodes

    commit_branch(repo, "grow-b200", grow, "uk: one more B200 scalable unit")

    changed = json.loads(run(repo, "fjord", "gitops", "changed-stacks", "--base", "main", "--json").stdout)
    assert changed["stacks"] == ["uk"]
    assert changed["reasons"] == {"uk": ["stacks/Pulumi.uk.alloc.yaml", "stacks/Pulumi.uk.yaml"]}

    run(repo, "ci/gitops/review.sh", "uk", "main", "out/uk")
    assert (repo / "out/uk/gate").read_text().strip() == "0"
    body = (repo / "out/uk/comment.md").read_text()
    assert body.startswith("<!-- fjord-gitops stack=uk -->\n")
    assert "ready to merge" in body
    assert "**safe**: 32 nodes added, 0 removed, 0 restarted (drained, in batches), 0 moved" in body
    assert "| b200 | changed | 512 -> 544 | 32 | 0 | 0 | 0 |" in body
    assert "#### Preview (offline plan)" in body
    assert "| blast-radius | mandatory | passed |" in body
    assert "| data-residency | mandatory | passed |" in body
    check = json.loads((repo / "out/uk/check.json").read_text())
    assert check["policy"]["passed"]
    assert not check["blocked"]
    run(repo, "ci/gitops/gate.sh", "uk", "out/uk")

    # The comment: added once, left alone when nothing changed, edited in place when the review changes.
    publish = ("fjord", "gitops", "publish", "uk", "--body", "out/uk/comment.md", "--number", "7")
    assert "comment created" in run(repo, *publish, env=env).stdout
    assert "comment unchanged" in run(repo, *publish, env=env).stdout
    commit_change(repo, lambda site: site["clusters"][1].__setitem__("gpus", 4608), "uk: two more B200 units")
    run(repo, "ci/gitops/review.sh", "uk", "main", "out/uk")
    assert "64 nodes added" in (repo / "out/uk/comment.md").read_text()
    assert "comment updated" in run(repo, *publish, env=env).stdout
    ours = [c for c in comments.items if c["body"].startswith("<!-- fjord-gitops stack=uk -->")]
    assert len(ours) == 1
    assert "64 nodes added" in ours[0]["body"]
    assert [m for m, _ in comments.calls].count("POST") == 1
    assert ("PATCH", f"/repos/sovereign/sites/issues/comments/{ours[0]['id']}") in comments.calls
    assert comments.auth == {"Bearer ghs_test-token-never-printed"}

    # Merge, apply (offline: the plan recorded), then the drift check: clean, and it writes nothing.
    before = git(repo, "rev-parse", "main")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge grow-b200", "grow-b200")
    after_merge = json.loads(
        run(repo, "fjord", "gitops", "changed-stacks", "--base", before, "--head", "HEAD", "--json").stdout
    )
    assert after_merge["stacks"] == ["uk"]
    applied = run(repo, "ci/gitops/apply.sh", "uk", before, "records")
    assert "offline plan, recorded" in applied.stdout
    record = repo / "records" / "uk.applied.json"
    doc = json.loads(record.read_text())
    assert doc["commit"] == git(repo, "rev-parse", "HEAD")
    assert doc["by_type"]["fjord:components:ScalableUnit"] == 4 + 18  # h200's 4 units, b200's 16 + 2
    snapshot = record.read_bytes()
    clean = run(repo, "ci/gitops/drift.sh", "uk", "records")
    assert "uk: no drift from the apply at" in clean.stdout
    assert record.read_bytes() == snapshot
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""

    # Main moves on without an apply: the drift check reports it (exit 5) and still writes nothing.
    commit_change(repo, lambda site: site["clusters"][1].__setitem__("gpus", 4864), "uk: merged, never applied")
    drifted = run(repo, "ci/gitops/drift.sh", "uk", "records", ok=False)
    assert drifted.returncode == 5
    assert "uk: drift: the spec differs from the one applied at" in drifted.stderr
    assert "fjord:components:ScalableUnit: 22 applied, 23 asked for now" in drifted.stderr
    assert record.read_bytes() == snapshot


def test_a_branch_that_moves_addresses_fails_the_gate_naming_blast_radius(repo: Path) -> None:
    # A new BMC supernet with the allocation record written afresh: every node's BMC address moves.
    renumber = lambda s: s["ip_plan"].__setitem__("bmc", "10.30.0.0/20")  # noqa: E731
    commit_branch(repo, "renumber", renumber, "uk: new BMC net", fresh_record=True)
    run(repo, "ci/gitops/review.sh", "uk", "main", "out/uk")
    assert (repo / "out/uk/gate").read_text().strip() == "6"
    body = (repo / "out/uk/comment.md").read_text()
    assert "blocked (the diff is rejected; mandatory policy failed: blast-radius)" in body
    assert "| blast-radius | mandatory | failed |" in body
    assert re.search(r"node uk-h200-su000-n\d{3}\.bmc: an existing node would move", body)
    gate = run(repo, "ci/gitops/gate.sh", "uk", "out/uk", ok=False)
    assert gate.returncode == 6
    check = run(repo, "fjord", "gitops", "check", "uk", "--base", "main", ok=False)
    assert check.returncode == 6
    assert re.search(r"uk: policy blast-radius \(mandatory\): node uk-h\d00-su000-n\d{3}\.bmc", check.stderr)
    assert "and 619 more moves of existing nodes (got 639)" in check.stderr


def test_a_branch_that_breaks_residency_fails_the_gate_naming_the_rule(repo: Path) -> None:
    def abroad(site: dict[str, Any]) -> None:
        site["storage"][1]["endpoint"] = "https://s3.frankfurt.fjord.example"

    commit_branch(repo, "frankfurt", abroad, "uk: objects in Frankfurt")
    run(repo, "ci/gitops/review.sh", "uk", "main", "out/uk")
    assert (repo / "out/uk/gate").read_text().strip() == "6"
    body = (repo / "out/uk/comment.md").read_text()
    assert "mandatory policy failed: data-residency" in body
    assert "| data-residency | mandatory | failed | object_store.tier (objects): state and artifacts at" in body
    check = json.loads((repo / "out/uk/check.json").read_text())
    assert check["policy"]["mandatory_failed"] == ["data-residency"]
    # The offline plan applies the same rules: it fails too (exit 6), and the apply on main would stop at the gate.
    plan = json.loads((repo / "out/uk/plan.json").read_text())
    assert plan["plans"][0]["policy"]["mandatory_failed"] == ["data-residency"]
    assert run(repo, "ci/gitops/apply.sh", "uk", "main", "records", ok=False).returncode == 6
    assert not (repo / "records" / "uk.applied.json").exists()


def test_shared_files_touch_every_stack_and_docs_none(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "docs", "main")
    (repo / "README.md").write_text("sites, documented\n")
    git(repo, "commit", "-qam", "docs")
    assert json.loads(run(repo, "fjord", "gitops", "changed-stacks", "--base", "main", "--json").stdout)["stacks"] == []
    (repo / "policy" / "config.yaml").write_text((repo / "policy" / "config.yaml").read_text() + "\n")
    git(repo, "commit", "-qam", "policy")
    doc = json.loads(run(repo, "fjord", "gitops", "changed-stacks", "--base", "main", "--json").stdout)
    assert doc["stacks"] == ["dev", "narvik", "uk"]
    assert doc["shared"] == ["policy/config.yaml"]


def test_stale_locks_and_pending_operations_are_explained(repo: Path, tmp_path: Path) -> None:
    backend = tmp_path / "state"
    locks = backend / ".pulumi/locks/organization/fjord/uk"
    locks.mkdir(parents=True)
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).isoformat()
    lock = {"pid": 4242, "username": "ci", "hostname": "runner-7", "timestamp": old}
    (locks / "0d6b2d1e.json").write_text(json.dumps(lock))
    checkpoint = backend / ".pulumi/stacks/fjord/uk.json"
    checkpoint.parent.mkdir(parents=True)
    urn = "urn:pulumi:uk::fjord::pulumi-python:dynamic/baremetal:NodePool::uk-b200-su000-baremetal"
    pending = {"resource": {"urn": urn}, "type": "creating"}
    checkpoint.write_text(json.dumps({"version": 3, "checkpoint": {"latest": {"pending_operations": [pending]}}}))
    proc = run(repo, "fjord", "gitops", "state", "uk", "--backend", f"file://{backend}", ok=False)
    assert proc.returncode == 3
    assert "stale-lock: stack uk is locked by ci@runner-7 (pid 4242)" in proc.stderr
    assert "pulumi cancel --stack uk" in proc.stderr
    assert f"pending-operation: {urn} was left 'creating'" in proc.stderr
    assert "--clear-pending-creates" in proc.stderr
    (locks / "0d6b2d1e.json").unlink()
    checkpoint.write_text(json.dumps({"version": 3, "checkpoint": {"latest": {"resources": []}}}))
    assert (
        "no locks, no pending operations"
        in run(repo, "fjord", "gitops", "state", "uk", "--backend", f"file://{backend}").stdout
    )
