"""The bootstrap's pure core: the phase DAG and its selections, the node lifecycle, resume, and the
acceptance gate's verdicts; and the spec's `acceptance` section."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fjord.bootstrap import plan
from fjord.bootstrap.gate import evaluate
from fjord.bootstrap.plan import (
    PHASES,
    BootstrapState,
    NodeState,
    Phase,
    PlanError,
    advance,
    fail,
    new_run,
    select,
    todo,
    topological,
)
from fjord.hosts.inventory import build_inventory, group_name
from fjord.sizing.site import size_site
from fjord.spec.errors import SiteError
from fjord.spec.load import default_site, load_site
from fjord.spec.models import ACCEPTANCE_CHECKS

NODES = ["n0", "n1", "n2", "n3"]


def names(phases: list[Phase]) -> list[str]:
    return [p.name for p in phases]


def by_name(name: str) -> Phase:
    return next(p for p in PHASES if p.name == name)


# --- the DAG -----------------------------------------------------------------------------------------------


def test_phases_in_dependency_order() -> None:
    assert names(select()) == ["state", "bare-metal", "hosts", "scheduler", "acceptance", "handover"]
    shuffled = list(reversed(PHASES))
    assert names(topological(shuffled)) == names(select())


def test_selections() -> None:
    assert names(select(only=["acceptance", "hosts"])) == ["hosts", "acceptance"]
    assert names(select(from_="hosts")) == ["hosts", "scheduler", "acceptance", "handover"]
    assert names(select(until="hosts")) == ["state", "bare-metal", "hosts"]
    assert names(select(from_="hosts", until="hosts")) == ["hosts"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"only": ["metal"]}, "--only: 'metal' is not a phase; allowed: state, bare-metal, hosts"),
        ({"from_": "nope"}, "--from: 'nope' is not a phase"),
        ({"from_": "acceptance", "until": "hosts"}, "--from acceptance comes after --until hosts"),
        ({"only": ["hosts"], "from_": "state"}, "--only: give it alone"),
    ],
)
def test_bad_selections_say_what_is_allowed(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("(", r"\(")):
        select(**kw)


def test_cycles_and_unknown_needs_are_rejected() -> None:
    a, b = Phase("a", "", ("b",), None), Phase("b", "", ("a",), None)
    with pytest.raises(PlanError, match="cycle: a -> b -> a"):
        topological([a, b])
    with pytest.raises(PlanError, match="needs \\['x'\\]"):
        topological([Phase("a", "", ("x",), None)])


# --- the node lifecycle ------------------------------------------------------------------------------------


def test_lifecycle_goes_one_step_at_a_time() -> None:
    node = NodeState()
    for to in plan.LIFECYCLE[1:]:
        node = advance(node, to, "p")
        assert node.status == to == node.last_good
    with pytest.raises(PlanError, match="from in_service to accepted; allowed: \\(none"):
        advance(node, "accepted", "p")
    with pytest.raises(PlanError, match="from registered to configured; allowed: inspected"):
        advance(NodeState(), "configured", "p")


def test_a_failed_node_keeps_its_reason_and_continues_from_its_last_good_state() -> None:
    node = advance(advance(NodeState(), "inspected", "bare-metal", serial="S1"), "provisioned", "bare-metal")
    failed = fail(node, "hosts", "unreachable: ssh timed out")
    assert (failed.status, failed.last_good, failed.phase, failed.reason) == (
        "failed",
        "provisioned",
        "hosts",
        "unreachable: ssh timed out",
    )
    again = advance(failed, "configured", "hosts")
    assert (again.status, again.reason, again.facts["serial"]) == ("configured", None, "S1")
    with pytest.raises(PlanError, match="needs its reason"):
        fail(node, "hosts", "")


# --- what a run has to do, and resume ----------------------------------------------------------------------


def run_with(nodes: dict[str, NodeState], phases: dict[str, plan.PhaseStatus] | None = None) -> BootstrapState:
    state = new_run("s", "r1", nodes, select())
    return BootstrapState(
        "s",
        "r1",
        "running",
        state.selected,
        {n: plan.PhaseRecord(status=(phases or {}).get(n, "pending")) for n in plan.PHASE_NAMES},
        nodes,
    )


def at(status: plan.NodeStatus) -> NodeState:
    return NodeState(status, status)


def test_todo_takes_nodes_below_the_target_and_leaves_the_rest() -> None:
    state = run_with(
        {
            "n0": at("registered"),
            "n1": at("provisioned"),
            "n2": at("in_service"),
            "n3": fail(at("inspected"), "bare-metal", "BMC refused the credentials"),
        }
    )
    assert todo(state, by_name("bare-metal")) == ["n0", "n3"]
    assert todo(state, by_name("hosts")) == ["n1"]  # n3 failed in an earlier phase: it waits for bare metal
    assert todo(state, by_name("acceptance")) == []
    assert todo(state, by_name("scheduler")) == []


def test_a_rerun_with_nothing_to_do_touches_no_node() -> None:
    done = run_with({n: at("in_service") for n in NODES}, dict.fromkeys(plan.PHASE_NAMES, "done"))
    done = BootstrapState(**{**done.__dict__, "status": "done"})
    again = new_run("s", "r2", NODES, select(), previous=done)
    assert again.run_id == "r2"
    assert again.runs == ("r1",)
    assert all(todo(again, p) == [] for p in PHASES)


def test_resume_continues_from_the_failed_phase_and_node() -> None:
    nodes = {
        "n0": at("configured"),
        "n1": at("configured"),
        "n2": at("provisioned"),
        "n3": fail(at("provisioned"), "hosts", "apt failed"),
    }
    stopped = run_with(nodes, {"state": "done", "bare-metal": "done", "hosts": "running"})
    resumed = new_run("s", "r-new", NODES, select(), previous=stopped, resume=True)
    assert resumed.run_id == "r1"  # the same run goes on
    assert {n: r.status for n, r in resumed.phases.items()} == {
        "state": "done",
        "bare-metal": "done",
        "hosts": "pending",
        "scheduler": "pending",
        "acceptance": "pending",
        "handover": "pending",
    }
    assert todo(resumed, by_name("bare-metal")) == []
    assert todo(resumed, by_name("hosts")) == ["n2", "n3"]


def test_resume_retries_a_phase_a_node_failed_in_even_when_it_is_recorded_done() -> None:
    nodes = {"n0": at("in_service"), "n1": fail(at("accepted"), "acceptance", "kubectl refused")}
    stopped = run_with(nodes, dict.fromkeys(plan.PHASE_NAMES, "done"))
    resumed = new_run("s", "r-new", ["n0", "n1"], select(), previous=stopped, resume=True)
    assert [n for n, r in resumed.phases.items() if r.status == "pending"] == ["acceptance", "handover"]
    assert todo(resumed, by_name("acceptance")) == ["n1"]


def test_an_unfinished_run_must_be_resumed_and_a_finished_one_cannot_be() -> None:
    stopped = run_with({n: at("provisioned") for n in NODES}, {"hosts": "failed"})
    with pytest.raises(PlanError, match="did not finish \\(phase hosts failed\\); allowed: --resume"):
        new_run("s", "r2", NODES, select(), previous=stopped)
    with pytest.raises(PlanError, match="no bootstrap to resume"):
        new_run("s", "r2", NODES, select(), previous=None, resume=True)
    done = BootstrapState(**{**stopped.__dict__, "status": "done"})
    with pytest.raises(PlanError, match="finished; allowed: a new run"):
        new_run("s", "r2", NODES, select(), previous=done, resume=True)


def test_state_round_trips_through_json_and_new_nodes_are_registered() -> None:
    state = run_with({"n0": fail(at("inspected"), "bare-metal", "x"), "n1": at("in_service")})
    back = BootstrapState.from_json(state.to_json())
    assert back == state
    grown = new_run("s", "r2", ["n1", "n9"], select(), previous=BootstrapState(**{**back.__dict__, "status": "done"}))
    assert grown.nodes["n1"].status == "in_service"
    assert grown.nodes["n9"].status == "registered"
    assert "n0" not in grown.nodes
    with pytest.raises(PlanError, match="schema"):
        BootstrapState.from_json({**state.to_json(), "schema": 99})


def test_run_status_from_phases_and_nodes() -> None:
    ok = run_with({"n0": at("in_service")}, dict.fromkeys(plan.PHASE_NAMES, "done"))
    assert plan.finished(ok) == "done"
    blocked = run_with({"n0": at("configured")}, {**dict.fromkeys(plan.PHASE_NAMES, "done"), "scheduler": "blocked"})
    assert plan.finished(blocked) == "failed"
    bad_node = run_with({"n0": fail(at("configured"), "acceptance", "x")}, dict.fromkeys(plan.PHASE_NAMES, "done"))
    assert plan.finished(bad_node) == "failed"


# --- the gate ----------------------------------------------------------------------------------------------


def report(**statuses: str) -> dict[str, Any]:
    return {
        "checks": [
            {"check": c, "status": s, "expected": "x", "actual": "no PyTorch" if s == "skipped" else "y"}
            for c, s in statuses.items()
        ]
    }


def test_gate_accepts_only_when_every_required_check_passed() -> None:
    verdict = evaluate("n0", report(os_release="passed", bf16_gemm="skipped"), ["os_release"])
    assert verdict.accepted
    assert verdict.reason() == ""
    assert {d.check: d.required for d in verdict.decisions} == {"os_release": True, "bf16_gemm": False}


def test_a_required_check_that_was_skipped_fails_the_node() -> None:
    verdict = evaluate("n0", report(os_release="passed", bf16_gemm="skipped"), ["os_release", "bf16_gemm"])
    assert not verdict.accepted
    assert verdict.reason() == "bf16_gemm: required, but skipped: no PyTorch"


def test_a_required_check_missing_or_failed_fails_the_node() -> None:
    verdict = evaluate("n0", report(gpu_count="failed"), ["gpu_count", "nvlink"])
    assert not verdict.accepted
    assert [d.check for d in verdict.failures] == ["gpu_count", "nvlink"]
    assert "gpu_count: failed: expected x, got y" in verdict.reason()
    assert "nvlink: required, and the report does not have it" in verdict.reason()
    garbage = evaluate("n0", "not json", ["os_release"])
    assert not garbage.accepted
    assert "not a JSON object" in garbage.reason()
    with pytest.raises(ValueError, match="not acceptance checks"):
        evaluate("n0", report(), ["burn_in"])


# --- the spec's acceptance section -------------------------------------------------------------------------


def site_with(acceptance: dict[str, Any] | None = None, **cluster: Any) -> dict[str, Any]:
    raw = copy.deepcopy(default_site())
    if acceptance is not None:
        raw["clusters"][0]["acceptance"] = acceptance
    raw["clusters"][0] |= cluster
    return raw


def test_acceptance_defaults_require_the_node_checks_and_the_benchmarks() -> None:
    site = load_site(site_with())
    required = site.clusters[0].acceptance.required()
    assert "bf16_gemm" in required
    assert "hbm_bandwidth" in required
    assert "dcgm_diag" in required
    assert "nccl_pair" not in required
    assert "ib_bandwidth" not in required
    assert set(required) <= set(ACCEPTANCE_CHECKS)


def test_gpu_checks_can_be_taken_out_explicitly() -> None:
    gpu_less = {
        "gpu_inventory": False,
        "ecc": False,
        "nvlink": False,
        "pcie": False,
        "dcgm_level": 0,
        "gemm_min_fraction": None,
        "hbm_min_fraction": None,
    }
    site = load_site(site_with(gpu_less))
    assert site.clusters[0].acceptance.required() == ("os_release",)
    inv = build_inventory(site, size_site(site))
    group = inv.data["all"]["children"][group_name("cluster", "h100")]["vars"]
    assert group["gpu_validate_required"] == ["os_release"]
    assert group["gpu_validate_os"] == "ubuntu-22.04"


@pytest.mark.parametrize(
    ("acceptance", "path", "message"),
    [
        (
            {
                "os": False,
                "gpu_inventory": False,
                "ecc": False,
                "nvlink": False,
                "pcie": False,
                "dcgm_level": 0,
                "gemm_min_fraction": None,
                "hbm_min_fraction": None,
            },
            "clusters[0].acceptance.os",
            "requires no check at all",
        ),
        ({"dcgm_level": 5}, "clusters[0].acceptance.dcgm_level", "less than or equal to 4"),
        ({"gemm_min_fraction": 1.5}, "clusters[0].acceptance.gemm_min_fraction", "less than or equal to 1"),
        ({"nccl_pair_min_fraction": 0.8}, "clusters[0].acceptance.nccl_pair_min_fraction", None),
        ({"burn_in": True}, "clusters[0].acceptance.burn_in", "unknown key; allowed keys: dcgm_level"),
    ],
)
def test_bad_acceptance_is_rejected_naming_the_field(
    acceptance: dict[str, Any], path: str, message: str | None
) -> None:
    raw = site_with(acceptance, gpus=8) if "nccl_pair_min_fraction" in acceptance else site_with(acceptance)
    with pytest.raises(SiteError) as exc:
        load_site(raw)
    text = "\n".join(exc.value.lines())
    assert path in text, text
    if message:
        assert message in text, text
    if "nccl_pair_min_fraction" in acceptance:
        assert "the cluster has 1 node" in text
        assert "allowed: null" in text


def test_validation_is_now_acceptance() -> None:
    raw = site_with()
    raw["clusters"][0]["validation"] = {"dcgm_level": 2}
    with pytest.raises(SiteError) as exc:
        load_site(raw)
    assert "clusters[0].validation" in "\n".join(exc.value.lines())
    assert "allowed: acceptance" in "\n".join(exc.value.lines())


# --- the node's script and the gate together (the script really runs, here on a host without a GPU) ----------

SCRIPT = Path(__file__).resolve().parents[1] / "playbooks/roles/gpu_validate/files/fjord_gpu_validate.py"


def run_script(tmp_path: Path, required: tuple[str, ...], os_release: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "report.json"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--expected-model",
        "H100",
        "--expected-count",
        "8",
        "--driver-branch",
        "570",
        "--bf16-peak-tflops",
        "989",
        "--hbm-peak-tbps",
        "3.35",
        "--os",
        os_release,
        "--required",
        ",".join(required),
        "--out",
        str(out),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    return done.returncode, json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has a GPU: the gpu-marked tests cover it")
def test_the_default_gate_fails_a_node_without_a_gpu_and_says_why(tmp_path: Path) -> None:
    """Before the gate, a benchmark skipped for want of PyTorch (or a GPU) counted as passed."""
    required = load_site(site_with()).clusters[0].acceptance.required()
    rc, report = run_script(tmp_path, required, "debian-12")
    assert rc == 1
    assert report["status"] == "failed"
    assert "bf16_gemm" in report["blocking"]
    assert "gpu_count" in report["blocking"]
    assert {"python", "kernel", "os", "torch"} <= set(report["tools"])
    verdict = evaluate("n0", report, required)
    assert not verdict.accepted
    assert "bf16_gemm: required, but skipped: no NVIDIA GPU here: nvidia-smi is not installed" in verdict.reason()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has a GPU: the gpu-marked tests cover it")
def test_a_gate_without_gpu_checks_accepts_a_host_on_the_specs_os(tmp_path: Path) -> None:
    os_id, version = _os_release()
    here = f"{os_id}-{version}"
    rc, report = run_script(tmp_path, ("os_release",), here)
    assert rc == 0
    assert report["status"] == "passed"
    assert evaluate("n0", report, ("os_release",)).accepted
    rc, report = run_script(tmp_path, ("os_release",), "ubuntu-99.04")
    assert rc == 1
    assert evaluate("n0", report, ("os_release",)).reason() == f"os_release: failed: expected ubuntu-99.04, got {here}"


def _os_release() -> tuple[str, str]:
    fields = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines() if "=" in line
    )
    return fields.get("ID", "").strip('"'), fields.get("VERSION_ID", "").strip('"')


# --- the command's rejections, before anything is touched --------------------------------------------------


def test_bootstrap_rejects_a_bad_selection_and_a_site_without_object_store() -> None:
    from typer.testing import CliRunner

    from fjord.cli.main import EXIT_REJECTED, app

    runner = CliRunner()
    bad = runner.invoke(app, ["bootstrap", "dev", "--from", "acceptance", "--until", "hosts"])
    assert bad.exit_code == EXIT_REJECTED
    assert "--from acceptance comes after --until hosts" in bad.stderr
    unknown = runner.invoke(app, ["bootstrap", "dev", "--only", "metal"])
    assert unknown.exit_code == EXIT_REJECTED
    assert "allowed: state, bare-metal, hosts, scheduler, acceptance, handover" in unknown.stderr
    no_store = runner.invoke(app, ["bootstrap", "dev"])
    assert no_store.exit_code == EXIT_REJECTED
    assert "the site has no object store" in no_store.stderr
