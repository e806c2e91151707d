"""The GitOps pipeline end to end through the real Pulumi engine (where .ci/setup-pulumi.sh built it), on a real git
repository whose `lab` stack is the dev site made Slurm-only with its nodes' BMCs on the sushy emulator, and a
file:// state backend in the test's folder (`PULUMI_BACKEND_URL`, as the pipelines set it):

first apply -> drift check clean -> a branch that changes the stack: review (the engine's preview with fjord's
policy pack, the comment, the gate) -> a branch that floats the OS image: the pack fails through the engine naming
the rule -> merge -> apply (`fjord up --policy-pack policy`) -> drift check clean, writing nothing -> a node powered
off out of band -> the drift check reports it (exit 5) and still writes nothing.

tests/test_gitops_e2e.py runs the same scripts where there is no engine (the offline paths).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .engine_env import PASSPHRASE, REPO
from .redfish_lab import PASSWORD as BMC_PASSWORD
from .redfish_lab import Emulator
from .test_engine import NODES, POOL, power_off_out_of_band, slurm_site, wait_on

pytestmark = [pytest.mark.engine, pytest.mark.bmc]
BIN = Path(sys.executable).parent


class Lab:
    """The site repository, its engine environment and its state backend."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.state = root.parent / "state"
        self.state.mkdir()
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_HOME": str(root.parent / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "FJORD_PULUMI_BIN": str(bin_dir),
        }
        self.env.pop("FJORD_STACKS_DIR", None)
        self.bin_dir = bin_dir

    def run(self, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(cmd), cwd=self.root, env=self.env, capture_output=True, text=True, check=False, timeout=600
        )
        if ok:
            assert proc.returncode == 0, f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout.strip()

    def write_site(self, site: dict[str, Any]) -> None:
        path = self.root / "stacks" / "Pulumi.lab.yaml"
        doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
        doc.setdefault("config", {})
        doc["config"]["fjord:site"] = site
        doc["config"]["fjord:configureHosts"] = False
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.run("fjord", "alloc", "lab")

    def checkpoint(self) -> dict[str, bytes]:
        """Every state file: what an apply writes, and a drift check must not."""
        root = self.state / ".pulumi"
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def pool_state(self) -> dict[str, Any]:
        doc = json.loads(self.run(str(self.bin_dir / "pulumi"), "stack", "export", "--stack", "lab").stdout)
        pools = [r for r in doc["deployment"]["resources"] if r["type"] == POOL]
        assert len(pools) == 1
        state: dict[str, Any] = pools[0]["outputs"]["state"]
        return state


@pytest.fixture
def bmcs(engine: Path, dev_bmcs: Emulator) -> Emulator:
    """The dev site's four BMCs on the sushy emulator (once the engine is known to be there)."""
    return dev_bmcs


@pytest.fixture
def lab(tmp_path: Path, engine: Path, bmcs: Emulator) -> Lab:
    """The site repository on main: the lab stack (its BMC password a Pulumi secret), fjord's policy pack and
    settings, the pipeline scripts, the project file."""
    root = tmp_path / "site-repo"
    (root / "stacks").mkdir(parents=True)
    for part in ("policy", "ci"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = sys.prefix
    (root / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    repo = Lab(root, engine)
    repo.write_site(slurm_site(bmcs.url))
    pulumi = str(repo.bin_dir / "pulumi")
    repo.run(pulumi, "stack", "init", "lab", "--secrets-provider", "passphrase", "--non-interactive")
    repo.run(pulumi, "config", "set", "--secret", "fjord:bmcPassword", BMC_PASSWORD, "--stack", "lab")
    repo.run("git", "init", "-q", "-b", "main")
    repo.git("config", "user.email", "ci@fjord.example")
    repo.git("config", "user.name", "fjord ci")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "the lab site")
    return repo


def test_merge_applies_through_the_engine_and_the_drift_check_reads_the_bmcs(lab: Lab, bmcs: Emulator) -> None:
    # The first apply (the commit that added the stack): the engine brings every node up.
    first = lab.run("ci/gitops/apply.sh", "lab", "HEAD", "records")
    assert "offline plan" not in first.stdout
    wait_on(bmcs, NODES)
    assert set(lab.pool_state()) == set(NODES)
    assert not (lab.root / "records" / "lab.applied.json").exists()  # the engine's state is the record now
    snapshot = lab.checkpoint()
    clean = lab.run("ci/gitops/drift.sh", "lab", "records")
    assert "the machines against the state: exit 0; the spec against the state: exit 0" in clean.stdout
    assert lab.checkpoint() == snapshot

    # A branch that changes the stack: the review previews it through the engine, with fjord's policy pack.
    lab.git("checkout", "-q", "-b", "patient-bmcs")
    lab.write_site(slurm_site(bmcs.url, timeout_s=6))
    lab.git("commit", "-qam", "lab: give the BMCs 6 s")
    lab.run("ci/gitops/review.sh", "lab", "main", "out/lab")
    preview = json.loads((lab.root / "out/lab/preview.json").read_text())
    assert preview["operation"] == "preview"
    assert preview["ok"] is True
    assert [(s["op"], s["type"], s["diffs"]) for s in preview["steps"]] == [("update", POOL, ["timeout_s"])]
    assert [(v["policy"], v["level"]) for v in preview["policy"]] == [("fjord-driver-branch-floats", "advisory")]
    body = (lab.root / "out/lab/comment.md").read_text()
    assert "#### Preview (Pulumi engine)" in body
    assert "- policy pack fjord: fjord-driver-branch-floats (advisory): software.driver_source" in body
    assert (lab.root / "out/lab/gate").read_text().strip() == "0"
    assert lab.checkpoint() == snapshot  # a review writes no state

    # A branch that floats the OS image: the pack fails through the engine, naming the rule, and so does the gate.
    lab.git("checkout", "-q", "-b", "floating-image", "main")
    lab.write_site(slurm_site(bmcs.url, boot="virtual-media", image_url=f"{bmcs.url}/images/ubuntu-latest.iso"))
    lab.git("commit", "-qam", "lab: the latest image")
    lab.run("ci/gitops/review.sh", "lab", "main", "out/float")
    refused = json.loads((lab.root / "out/float/preview.json").read_text())
    assert refused["policy_failed"] == ["fjord-pinned-versions"]
    assert (
        "- policy pack fjord: fjord-pinned-versions (mandatory): bmc.image_url"
        in (lab.root / "out/float/comment.md").read_text()
    )
    assert (lab.root / "out/float/gate").read_text().strip() == "6"

    # The merge of the first branch: apply through the engine (the gate, locks, `fjord up --policy-pack policy`).
    lab.git("checkout", "-q", "main")
    before = lab.git("rev-parse", "HEAD")
    lab.git("merge", "-q", "--no-ff", "-m", "Merge patient-bmcs", "patient-bmcs")
    applied = lab.run("ci/gitops/apply.sh", "lab", before, "records")
    assert "no locks, no pending operations" in applied.stdout
    assert lab.checkpoint() != snapshot
    assert json.loads(lab.run("fjord", "preview", "lab", "--json").stdout)["steps"] == []

    # The drift check: clean and writing nothing; then a node powered off out of band is reported (exit 5), the
    # state still says what the apply left, and the node stays off (the check repairs nothing).
    applied_state = lab.checkpoint()
    assert lab.run("ci/gitops/drift.sh", "lab", "records").returncode == 0
    assert lab.checkpoint() == applied_state
    power_off_out_of_band(bmcs, NODES[3])
    drifted = lab.run("ci/gitops/drift.sh", "lab", "records", ok=False)
    assert drifted.returncode == 5, drifted.stderr
    assert "the machines against the state: exit 5; the spec against the state: exit 0" in drifted.stdout
    assert "lab: drift: refresh pulumi-python:dynamic/baremetal:NodePool dev-h100-su000-baremetal" in " ".join(
        drifted.stderr.split()
    )
    assert lab.checkpoint() == applied_state
    assert lab.pool_state()[NODES[3]]["power"] == "On"
    assert bmcs.system(NODES[3])["PowerState"] == "Off"
