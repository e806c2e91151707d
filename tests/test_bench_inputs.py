"""The benchmarks' synthetic inputs stay valid as the site model grows (a bench that crashes measures nothing)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from fjord.sizing.site import size_site
from fjord.spec.load import load_site

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("gpus", [1_000, 10_000])
def test_plan_scale_synthetic_sites_validate_and_size(gpus: int) -> None:
    raw = _bench("plan_scale").synthetic_site(gpus)
    size = size_site(load_site(raw, f"{gpus}"))
    assert abs(size.gpus - gpus) <= 72


@pytest.mark.parametrize("stack", ["dev", "uk"])
def test_plan_scale_floor_builds_what_the_program_registers(stack: str) -> None:
    """The floor row measures real work: every host the stack's plan exports, with its per-unit values."""
    from fjord.spec.load import read_stack

    bench = _bench("plan_scale")
    cfg = read_stack(stack, bench.STACKS)
    hosts = size_site(load_site(cfg.site, stack)).hosts()
    own = bench.floor(stack)
    assert own["inventory_hosts"] == len(hosts) > 0
    assert own["values"] > len(hosts)  # BMC endpoints and inventory JSON of every unit, platform objects
    assert own["seconds"] > 0


def test_plan_scale_same_resources_baseline_replays_what_fjord_registers(tmp_path: Path) -> None:
    """The "vs bare, same resources" row: bare Pulumi registers exactly the resources of fjord's plan, without
    importing fjord, so the ratio measures fjord's own cost and nothing else."""

    def child(*args: str) -> dict[str, object]:
        cmd = [sys.executable, str(BENCH / "plan_scale.py"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
        result: dict[str, object] = json.loads(proc.stdout)
        return result

    recorded = tmp_path / "dev.json"
    fjord_plan = child("--record", "dev", str(recorded))
    replayed = child("--replay", str(recorded))
    records = json.loads(recorded.read_text())["records"]
    assert replayed["resources"] == fjord_plan["resources"] == len(records) + 1  # + the root stack
    assert replayed["by_type"] == dict(Counter(r["type"] for r in records))
    assert "pulumi-python:dynamic/baremetal:NodePool" in replayed["by_type"]
    assert any(r["custom"] and r["inputs"] for r in records)  # inputs are replayed, not empty shells
    assert replayed["fjord_modules"] == []
    # The same tree: each resource under the same chain of parent types, with the same name.
    assert replayed["tree"] == sorted(r["urn"].split("::", 2)[2] for r in records)
    assert replayed["libraries"] == []
    tuned = child("--replay", str(recorded), "--young-gc-only", "--libraries")
    assert tuned["tree"] == replayed["tree"]
    assert tuned["libraries"] == ["pulumi_kubernetes", "pydantic"]
    # pydantic is used, not only imported: one model built and one value validated through it.
    assert tuned["validated"] == {"name": "replay"}
    assert replayed["validated"] is None
    assert tuned["fjord_modules"] == []


def test_plan_scale_quick_run_prints_every_plan_row() -> None:
    """The whole plan bench end to end (--quick: dev only, one round): every row is there with its figures."""
    cmd = [sys.executable, str(BENCH / "plan_scale.py"), "--quick", "--repeat", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    rows = json.loads(proc.stdout[proc.stdout.index("\n[") + 1 :])
    cases = [r["case"] for r in rows]
    assert cases[cases.index("plan dev") :] == [
        "plan dev",
        "  vs bare + 4-host export",
        "  vs bare, same resources",
        "    and fjord's GC setting",
        "    + pydantic, pulumi-kubernetes",
        "  bare + fjord's own work",
        "  bare, same res. + libraries",
        "bare baseline",
    ]
    plan = rows[cases.index("plan dev")]
    assert plan["count"] == "38 res"  # dev: 37 resources and, since the per-cluster rollout, one ClusterRollout
    assert min(plan[k] for k in ("fjord_s", "base_s", "same_inproc_s", "own_work_s")) > 0
    assert all(r["base_s"] > 0 for r in rows[cases.index("plan dev") :])
    libs = rows[cases.index("  bare, same res. + libraries")]
    replay = rows[cases.index("    + pydantic, pulumi-kubernetes")]
    # The libraries' floor is that replay's wall time, set against the empty-components baseline.
    assert libs["fjord_s"] == replay["base_s"]
    assert libs["base_s"] == plan["base_s"]
    assert libs["target"].endswith(("meets 1.3x", "misses 1.3x"))


def test_cli_start_runs_every_command_and_baseline() -> None:
    """The command-line bench end to end, one round: each command and its baseline exit 0 and are timed."""
    cmd = [sys.executable, str(BENCH / "cli_start.py"), "--repeat", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    rows = json.loads(proc.stdout[proc.stdout.index("\n[") + 1 :])
    assert [r["command"] for r in rows] == [
        "fjord --help",
        "fjord stacks",
        "fjord validate dev",
        "fjord size dev --json",
        "fjord plan dev --json",
    ]
    assert all(r["fjord_s"] > 0 and r["baseline_s"] > 0 for r in rows)
    assert rows[-1]["baseline"] == "plan worker alone"
