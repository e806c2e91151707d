"""Components under Pulumi's mock runtime: tree shape, unique URNs, inventory outputs, nothing on bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pulumi
import pytest

from fjord.components.site import Site, SiteArgs
from fjord.plan.mocks import Registration
from fjord.sizing.site import SiteSize, size_site
from fjord.spec.errors import SiteError
from fjord.spec.load import load_site
from fjord.spec.models import Site as SiteSpec

from .conftest import stack_site

HOST_KEYS = {"name", "role", "cluster", "scalable_unit", "rack", "bmc_address", "management_address"}


def _by_name(regs: list[Registration]) -> dict[str, Registration]:
    return {r.name: r for r in regs}


def build(stack: str) -> tuple[Site, SiteSpec, SiteSize]:
    """Build the stack's Site under the mocks and wait until every registration has completed."""
    spec = load_site(stack_site(stack))
    size = size_site(spec)
    built: list[Site] = []

    @pulumi.runtime.test
    def run() -> Any:
        built.append(Site(stack, SiteArgs(spec=spec, size=size)))
        return built[0].summary

    run()
    return built[0], spec, size


def test_site_tree_shape(registrations: list[Registration]) -> None:
    _, spec, size = build("uk")
    regs = _by_name(registrations)
    types = Counter(r.type for r in registrations)
    assert types["fjord:components:Site"] == 1
    assert types["fjord:components:Network"] == 1
    assert types["fjord:components:Storage"] == 1
    assert types["fjord:components:GpuCluster"] == len(spec.clusters)
    assert types["fjord:components:ScalableUnit"] == sum(c.scalable_units for c in size.clusters)
    assert types["fjord:network:Fabric"] == len(size.fabrics)
    assert types["fjord:network:AddressPool"] == 4
    assert types["fjord:storage:Tier"] == len(spec.storage)
    root = regs["uk"]
    for child in ("uk-network", "uk-storage", "uk-h200", "uk-b200"):
        assert regs[child].parent == root.urn, child
    assert regs["uk-b200-su015"].parent == regs["uk-b200"].urn
    assert regs["uk-network-fabric-b200-compute"].parent == regs["uk-network"].urn
    assert regs["uk-storage-vast"].parent == regs["uk-storage"].urn
    by_urn = {r.urn: r for r in registrations}
    for r in registrations:  # every child is named after its parent
        parent = by_urn.get(r.parent)
        if parent is not None and parent.type != "pulumi:pulumi:Stack":
            assert r.name.startswith(parent.name + "-"), (parent.name, r.name)


def test_urns_are_unique(registrations: list[Registration]) -> None:
    build("narvik")
    urns = [r.urn for r in registrations]
    assert len(urns) == len(set(urns))
    assert 150 < len(urns) < 2000


def test_monitor_catches_duplicate_urns(registrations: list[Registration]) -> None:
    """The stock mocks accept a resource registered twice; fjord's recording monitor reports it."""
    from fjord.plan.mocks import RecordingMonitor

    del registrations  # requested for its reset of the record only
    build("dev")
    build("dev")
    from .conftest import MONITOR

    assert isinstance(MONITOR, RecordingMonitor)
    assert any(u.endswith("$fjord:components:Site::dev") for u in MONITOR.duplicates)
    assert any(u.endswith("::dev-h100-su000") for u in MONITOR.duplicates)


@pulumi.runtime.test
def test_inventory_outputs(registrations: list[Registration]) -> Any:
    spec = load_site(stack_site("uk"))
    size = size_site(spec)
    site = Site("uk", SiteArgs(spec=spec, size=size))
    unit = site.clusters["h200"].units[0]

    def check(args: list[Any]) -> None:
        inventory, unit_hosts, summary = args
        assert len(inventory) == size.nodes == 639
        assert all(set(h) >= HOST_KEYS for h in inventory)
        assert len({h["name"] for h in inventory}) == len(inventory)
        assert len({h["bmc_address"] for h in inventory}) == len(inventory)
        assert {h["cluster"] for h in inventory} == {"h200", "b200"}
        first_unit = [h for h in inventory if h["cluster"] == "h200" and h["scalable_unit"] == 0]
        assert [{k: h[k] for k in first_unit[0]} for h in unit_hosts] == first_unit
        assert len(unit_hosts) == 32
        # The unit's own hosts carry every interface, inside the subnets the unit registers.
        assert all(len(h["compute_addresses"]) == 8 for h in unit_hosts)
        assert summary["gpus"] == 127 * 8 + 4096
        json.dumps(inventory)  # plain data, ready for Ansible and Redfish

    return pulumi.Output.all(site.inventory, unit.hosts, site.summary).apply(check)


def test_program_rejects_bad_site_before_registering(registrations: list[Registration]) -> None:
    """A rejected site registers nothing: validation and sizing run before the first resource."""
    from fjord import program

    raw = stack_site("uk")
    raw["power"]["grid_budget_mw"] = 5
    pulumi.runtime.set_all_config({"fjord:site": json.dumps(raw)})
    try:
        with pytest.raises(SiteError) as info:
            program.main()
    finally:
        pulumi.runtime.set_all_config({})
    assert [p.path for p in info.value.problems] == ["power.grid_budget_mw"]
    assert registrations == []


def test_pulumi_entry_point_runs_the_program(
    registrations: list[Registration], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pulumi up` runs the root __main__.py with the stack's config: the same program the plan runs. It reads
    the stack's allocation record from the stacks folder as `fjord` finds it ($FJORD_STACKS_DIR here)."""
    import runpy
    import shutil

    from .conftest import REPO, STACKS

    shutil.copy(STACKS / "Pulumi.uk.alloc.yaml", tmp_path / "Pulumi.test.alloc.yaml")  # the mocks' stack: test
    monkeypatch.setenv("FJORD_STACKS_DIR", str(tmp_path))
    pulumi.runtime.set_all_config({"fjord:site": json.dumps(stack_site("uk"))})
    try:

        @pulumi.runtime.test
        def run() -> None:
            runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")

        run()
    finally:
        pulumi.runtime.set_all_config({})
    types = Counter(r.type for r in registrations)
    assert types["fjord:components:Site"] == 1
    assert types["fjord:components:ScalableUnit"] == 20


def test_pulumi_project_file() -> None:
    """Pulumi.yaml names the project, the Python runtime with the project's venv, and stacks/ for config."""
    import yaml

    from .conftest import REPO, STACKS

    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["name"] == "fjord"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    assert project["stackConfigDir"] == "stacks"
    for path in STACKS.glob("Pulumi.*.yaml"):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        assert all(key.startswith("fjord:") for key in config), path


def test_scalable_unit_registers_its_address_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit registers racks, subnets and node count as its outputs, and its Output attributes carry the same."""
    from google.protobuf import json_format

    from .conftest import MONITOR

    registered: dict[str, dict[str, Any]] = {}
    original = MONITOR.RegisterResourceOutputs

    def capture(request: Any) -> Any:
        registered[request.urn] = json_format.MessageToDict(request.outputs)
        return original(request)

    monkeypatch.setattr(MONITOR, "RegisterResourceOutputs", capture)
    spec = load_site(stack_site("uk"))
    size = size_site(spec)
    sized = size.clusters[1].units[-1]
    assert sized.cluster == "b200"
    expected = {"racks": list(sized.racks), "subnets": dict(sized.subnets), "node_count": sized.node_count}
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def build() -> Any:
        unit = Site("uk", SiteArgs(spec=spec, size=size)).clusters["b200"].units[-1]

        def check(args: list[Any]) -> None:
            seen["urn"], racks, subnets, node_count = args
            assert {"racks": racks, "subnets": subnets, "node_count": node_count} == expected

        return pulumi.Output.all(unit.urn, unit.racks, unit.subnets, unit.node_count).apply(check)

    build()  # returns once every registration, outputs included, has reached the monitor
    outputs = registered[seen["urn"]]
    assert {k: outputs[k] for k in expected} == expected
    assert outputs["first_node"] == sized.first_node
    assert len(expected["subnets"]) == 3 + len(sized.rails)  # bmc, management, storage and one per compute rail
