"""The benchmarks' synthetic inputs stay valid as the site model grows (a bench that crashes measures nothing)."""

from __future__ import annotations

import importlib.util
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
