"""fjord's checks through the real Pulumi engine (the CLI built by .ci/setup-pulumi.sh):

- `fjord preview|up --policy-pack policy`: fjord's CrossGuard pack run by the engine (through Pulumi's policy shim
  `pulumi-analyzer-policy-python`, docs/policy.md): a mandatory violation fails the preview naming the rule (exit
  6), and `up` changes nothing; advisory ones are reported and pass;
- the drift check: `fjord refresh --preview-only` reads a node powered off out of band on the sushy emulator and
  reports it (exit 5) without writing the state; `fjord preview --expect-no-changes` reports a spec that differs
  from the state (exit 5), and both are clean (exit 0) right after an up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .engine_env import REPO, Project, make_project
from .redfish_lab import PASSWORD as BMC_PASSWORD
from .redfish_lab import Emulator
from .test_engine import NODES, POOL, power_off_out_of_band, slurm_site, wait_on

FLOATING_IMAGE = "http://127.0.0.1:9/images/ubuntu-latest.iso"


def with_pack(project: Project) -> Path:
    """fjord's policy pack (PulumiPolicy.yaml, the policies, config.yaml) beside the project's stacks folder."""
    pack = project.root / "policy"
    shutil.copytree(REPO / "policy", pack, ignore=shutil.ignore_patterns("__pycache__"))
    return pack


def checkpoint(project: Project) -> Path:
    return Path(project.backend.removeprefix("file://")) / ".pulumi" / "stacks" / "fjord" / f"{project.stack}.json"


def state_files(project: Project) -> dict[str, bytes]:
    """Every file of the file:// backend but the locks a running command holds: what a run could have written."""
    root = Path(project.backend.removeprefix("file://")) / ".pulumi"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_policy_pack_folder_must_be_one(tmp_path: Path) -> None:
    """Checked before the engine starts: exit 1, naming the flag and the folder."""
    project = Project(tmp_path, "lab", f"file://{tmp_path / 'state'}", tmp_path)
    (tmp_path / "stacks").mkdir()
    done = project.fjord("preview", "--policy-pack", str(tmp_path / "nothing-here"))
    assert done.returncode == 1, done.stderr
    assert "--policy-pack: no PulumiPolicy.yaml in" in done.stderr
    assert "nothing-here" in done.stderr


@pytest.mark.engine
@pytest.mark.usefixtures("engine")
def test_the_policy_pack_through_the_engine_mandatory_fails_advisory_reports(tmp_path: Path) -> None:
    project = make_project(tmp_path, "lab")
    pack = with_pack(project)
    # A floating OS image (with virtual media, which uses it) breaks the mandatory pinned-versions rule; the
    # dev site's repository-installed drivers are reported by the advisory driver-branch-floats rule.
    project.write_stack(
        slurm_site("http://127.0.0.1:9", boot="virtual-media", image_url=FLOATING_IMAGE), configureHosts=False
    )
    project.init(bmc_password=BMC_PASSWORD)

    refused = project.report("preview", "--policy-pack", str(pack), expect_rc=6)
    assert refused["ok"] is False
    assert refused["policy_failed"] == ["fjord-pinned-versions"]
    by_policy = {v["policy"]: v for v in refused["policy"]}
    assert by_policy["fjord-pinned-versions"]["level"] == "mandatory"
    assert by_policy["fjord-pinned-versions"]["pack"] == "fjord"
    assert "bmc.image_url: the OS image floats" in by_policy["fjord-pinned-versions"]["message"]
    assert FLOATING_IMAGE in by_policy["fjord-pinned-versions"]["message"]
    assert by_policy["fjord-driver-branch-floats"]["level"] == "advisory"
    assert "policy fjord-pinned-versions (mandatory, pack fjord): bmc.image_url" in refused["stderr"]

    # up with the pack previews with it first and stops there: nothing reaches the state (or a BMC).
    stopped = project.report("up", "--policy-pack", str(pack), expect_rc=6)
    assert stopped["policy_failed"] == ["fjord-pinned-versions"]
    assert "nothing was changed: mandatory policy failed: fjord-pinned-versions" in stopped["stderr"]
    assert not [r for r in project.state()["deployment"].get("resources") or [] if r["type"] == POOL]

    # A pinned image: the mandatory rules pass, the advisory finding is reported, and the preview passes.
    project.write_stack(
        slurm_site(
            "http://127.0.0.1:9", boot="virtual-media", image_url="http://127.0.0.1:9/images/ubuntu-24.04.2.iso"
        ),
        configureHosts=False,
    )
    passed = project.report("preview", "--policy-pack", str(pack))
    assert passed["ok"] is True
    assert passed["policy_failed"] == []
    assert [(v["policy"], v["level"]) for v in passed["policy"]] == [("fjord-driver-branch-floats", "advisory")]
    assert "software.driver_source" in passed["policy"][0]["message"]
    human = project.fjord_raw("preview", "--project", str(project.root), "--policy-pack", str(pack))
    assert human.returncode == 0, human.stderr
    assert "warning: lab: policy fjord-driver-branch-floats (advisory, pack fjord): software.driver_source" in " ".join(
        human.stderr.split()
    )

    # The pack's settings apply through the engine too: the advisory rule made mandatory fails the preview.
    config = pack / "config.yaml"
    config.write_text(config.read_text().replace("enforcement: {}", "enforcement: {driver-branch-floats: mandatory}"))
    strict = project.report("preview", "--policy-pack", str(pack), expect_rc=6)
    assert strict["policy_failed"] == ["fjord-driver-branch-floats"]


@pytest.mark.engine
@pytest.mark.bmc
@pytest.mark.usefixtures("engine")
def test_the_drift_check_reads_the_bmcs_reports_drift_and_writes_nothing(tmp_path: Path, dev_bmcs: Emulator) -> None:
    bmcs = dev_bmcs
    project = make_project(tmp_path, "drift")
    project.write_stack(slurm_site(bmcs.url), configureHosts=False)
    project.init(bmc_password=BMC_PASSWORD)
    assert project.report("up")["ok"] is True
    wait_on(bmcs, NODES)

    # Right after an up: both checks are clean, and neither writes anything.
    before = state_files(project)
    assert checkpoint(project).name in {Path(k).name for k in before}
    clean = project.report("refresh", "--preview-only")
    assert clean["preview_only"] is True
    assert clean["drift"] == []
    assert project.report("preview", "--expect-no-changes")["drift"] == []
    assert state_files(project) == before

    # A node powered off behind fjord's back: the refresh preview reads it from the BMC and reports it (exit 5).
    power_off_out_of_band(bmcs, NODES[2])
    drifted = project.report("refresh", "--preview-only", expect_rc=5)
    assert drifted["ok"] is True
    pool = [s for s in drifted["steps"] if s["type"] == POOL]
    assert pool, drifted["steps"]
    assert any(line.startswith(f"refresh {POOL} dev-h100-su000-baremetal") for line in drifted["drift"])
    assert "drift: refresh pulumi-python:dynamic/baremetal:NodePool" in " ".join(drifted["stderr"].split())
    # ... and writes nothing: the checkpoint (still saying the node is on) and every other state file as they were,
    # and the node is left off (the check repairs nothing; `fjord up` would).
    assert state_files(project) == before
    pools = [r for r in project.state()["deployment"]["resources"] if r["type"] == POOL]
    assert pools[0]["outputs"]["state"][NODES[2]]["power"] == "On"
    assert bmcs.system(NODES[2])["PowerState"] == "Off"
    # The spec still matches the state: the plain preview sees no drift; it cannot see the machines.
    assert project.report("preview", "--expect-no-changes")["drift"] == []

    # A spec that differs from the state (a merge never applied): `preview --expect-no-changes` exits 5.
    project.write_stack(slurm_site(bmcs.url, timeout_s=6), configureHosts=False)
    unapplied = project.report("preview", "--expect-no-changes", expect_rc=5)
    assert unapplied["drift"] == [f"update {POOL} dev-h100-su000-baremetal (timeout_s)"]
    assert state_files(project) == before
