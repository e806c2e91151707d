"""The shipped pipelines: GitHub Actions workflows checked by actionlint (with shellcheck) and by the
github-workflows JSON schema; GitLab CI's parent pipeline and every child pipeline fjord generates checked by the
gitlab-ci schema; the scripts they run by shellcheck; and what they must do (one run per stack, core first)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fjord.gitops.gitlab import child_pipeline

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
SCRIPTS = sorted((REPO / "ci" / "gitops").glob("*.sh"))
ACTIONLINT_CACHE = Path(os.environ.get("FJORD_ACTIONLINT_CACHE", "/var/cache/fjord-actionlint"))


def _tool(name: str) -> str:
    """A linter from .ci/setup-actionlint.sh: skipped where it is missing, except under FJORD_REQUIRE_INTEGRATION=1."""
    found = shutil.which(name) or next((str(p) for p in sorted(ACTIONLINT_CACHE.glob(f"*/bin/{name}"))), None)
    if found is None:
        reason = f"{name} is not installed (run .ci/setup-actionlint.sh)"
        if os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"{reason}; required under FJORD_REQUIRE_INTEGRATION=1")
        pytest.skip(reason)
    return found


def _schema_check(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    cmd = [str(exe), "--builtin-schema", f"vendor.{schema}", *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # `on:` stays a string key
    assert isinstance(doc, dict)
    return doc


def test_the_workflows_are_shipped() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"fjord-pull-request.yml", "fjord-apply.yml", "fjord-drift.yml"} <= names
    assert (REPO / ".gitlab-ci.yml").is_file()
    assert {p.name for p in SCRIPTS} >= {"review.sh", "gate.sh", "apply.sh", "drift.sh"}


def test_actionlint_passes_the_workflows_and_fails_a_broken_one(tmp_path: Path) -> None:
    actionlint = _tool("actionlint")
    _tool("shellcheck")  # actionlint checks every `run:` script with it when it is on PATH
    proc = subprocess.run(
        [actionlint, "-no-color", "-oneline", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = (REPO / ".github" / "workflows" / "fjord-apply.yml").read_text()
    broken.write_text(text.replace("needs.changes.outputs.core", "needs.changes.outputs.cores", 1))
    proc = subprocess.run(
        [actionlint, "-no-color", "-oneline", str(broken)], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 1
    assert "cores" in proc.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_match_the_github_workflows_schema(workflow: Path) -> None:
    proc = _schema_check("github-workflows", workflow)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_fails_a_wrong_workflow(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yml"
    wrong.write_text((REPO / ".github" / "workflows" / "fjord-drift.yml").read_text().replace("runs-on:", "run-on:"))
    proc = _schema_check("github-workflows", wrong)
    assert proc.returncode == 1
    assert "run-on" in proc.stdout or "runs-on" in proc.stdout


@pytest.mark.parametrize("mode", ["review", "apply", "drift"])
@pytest.mark.parametrize("stacks", [(), ("uk-core", "dev", "uk")], ids=["none", "three"])
def test_gitlab_pipelines_match_the_gitlab_ci_schema(tmp_path: Path, mode: str, stacks: tuple[str, ...]) -> None:
    child = tmp_path / "child.yml"
    child.write_text(yaml.safe_dump(child_pipeline(mode, stacks, "origin/main")))  # type: ignore[arg-type]
    proc = _schema_check("gitlab-ci", REPO / ".gitlab-ci.yml", child)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(child.read_text().replace("script:", "scripts:"))
    assert _schema_check("gitlab-ci", wrong).returncode == 1


def test_the_pipeline_scripts_pass_shellcheck() -> None:
    shellcheck = _tool("shellcheck")
    proc = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout


def test_one_run_per_stack_and_core_stacks_first_on_github() -> None:
    apply = _load(REPO / ".github" / "workflows" / "fjord-apply.yml")["jobs"]
    drift = _load(REPO / ".github" / "workflows" / "fjord-drift.yml")["jobs"]
    for job in (apply["apply-core"], apply["apply"], drift["drift"]):
        assert job["concurrency"] == {"group": "fjord-stack-${{ matrix.stack }}", "cancel-in-progress": "false"}
    assert apply["apply-core"]["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.core) }}"
    assert apply["apply"]["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.rest) }}"
    assert "apply-core" in apply["apply"]["needs"]
    assert "needs.apply-core.result == 'success'" in apply["apply"]["if"]
    # The drift check only reads: no write permission anywhere in its workflow.
    assert _load(REPO / ".github" / "workflows" / "fjord-drift.yml")["permissions"] == {"contents": "read"}
    review = _load(REPO / ".github" / "workflows" / "fjord-pull-request.yml")["jobs"]["review"]
    assert review["if"] == "needs.changes.outputs.any == 'true'"  # nothing touched: no review, no comment
    runs = [s.get("run", "") for s in review["steps"]]
    assert any("fjord gitops publish" in r for r in runs)
    assert any("ci/gitops/gate.sh" in r for r in runs)


def test_one_run_per_stack_and_core_stacks_first_on_gitlab() -> None:
    apply = child_pipeline("apply", ("uk-core", "dev", "uk"), "abc123")
    assert apply["stages"] == ["apply-core", "apply"]
    assert apply["apply:uk-core"]["stage"] == "apply-core"
    assert apply["apply:uk"]["stage"] == "apply"
    assert {apply[f"apply:{s}"]["resource_group"] for s in ("uk-core", "dev", "uk")} == {
        "fjord-stack-uk-core",
        "fjord-stack-dev",
        "fjord-stack-uk",
    }
    drift = child_pipeline("drift", ("dev",), "HEAD")
    assert drift["drift:dev"]["resource_group"] == "fjord-stack-dev"
    assert drift["drift:dev"]["cache"]["policy"] == "pull"  # the drift check never writes the apply's record
    review = child_pipeline("review", ("dev",), "origin/main")
    assert any("fjord gitops publish" in line for line in review["review:dev"]["script"])
    assert list(child_pipeline("review", (), "origin/main")) == ["default", "variables", "stages", "nothing"]
