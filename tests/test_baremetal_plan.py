"""The bare-metal layer in the program: one NodePool per scalable unit, nodes from the inventory, the BMC
password a Pulumi secret from the stack config that no plan output, state output or error shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from fjord.components.site import Site, SiteArgs
from fjord.plan.mocks import Registration
from fjord.providers.baremetal import NodePool
from fjord.sizing.site import size_site
from fjord.spec.load import load_site

from .conftest import stack_site
from .test_cli import CIPHERTEXT, fjord, write_stack

POOL = "pulumi-python:dynamic/baremetal:NodePool"
SECRET = "pw-never-shown-4711"


def test_one_node_pool_per_unit_with_the_units_nodes(registrations: list[Registration]) -> None:
    raw = stack_site("uk")
    raw["bmc"] = {"port": 8443, "concurrency": 64, "bios": {"SriovGlobalEnable": "Enabled"}}
    spec = load_site(raw)
    size = size_site(spec)
    pools: list[NodePool] = []

    @pulumi.runtime.test
    def run() -> Any:
        site = Site("uk", SiteArgs(spec=spec, size=size, bmc_password=pulumi.Output.secret(SECRET)))
        pools.extend(u.bare_metal for c in site.clusters.values() for u in c.units if u.bare_metal is not None)
        first = pools[0]
        checks = pulumi.Output.all(
            first.nodes,  # type: ignore[attr-defined]
            first.password,  # type: ignore[attr-defined]
            first.concurrency,  # type: ignore[attr-defined]
            first.bios,  # type: ignore[attr-defined]
        )

        def check(values: list[Any]) -> None:
            nodes, password, concurrency, bios = values
            unit = size.clusters[0].units[0]
            assert nodes == {n.name: f"https://{n.bmc}:8443" for n in unit.nodes()}
            assert password == SECRET
            assert concurrency == 64
            assert bios == {"SriovGlobalEnable": "Enabled"}

        secret = first.password.is_secret()  # type: ignore[attr-defined]
        plain = first.nodes.is_secret()  # type: ignore[attr-defined]
        return pulumi.Output.all(checks.apply(check), pulumi.Output.from_input(secret), pulumi.Output.from_input(plain))

    run()
    units = [r for r in registrations if r.type == "fjord:components:ScalableUnit"]
    by_urn = {r.urn: r for r in registrations}
    pool_regs = [r for r in registrations if r.type == POOL]
    assert len(pool_regs) == len(units) == sum(c.scalable_units for c in size.clusters)
    assert {by_urn[r.parent].name for r in pool_regs} == {u.name for u in units}
    assert all(r.name == f"{by_urn[r.parent].name}-baremetal" for r in pool_regs)


def test_password_output_is_secret() -> None:
    spec = load_site(stack_site("dev"))
    size = size_site(spec)
    seen: dict[str, bool] = {}

    @pulumi.runtime.test
    def run() -> Any:
        site = Site("dev", SiteArgs(spec=spec, size=size, bmc_password=pulumi.Output.secret(SECRET)))
        pool = site.clusters["h100"].units[0].bare_metal
        assert pool is not None

        async def record() -> None:
            seen["password"] = await pool.password.is_secret()  # type: ignore[attr-defined]
            seen["nodes"] = await pool.nodes.is_secret()  # type: ignore[attr-defined]

        return pulumi.Output.from_input(record())

    run()
    assert seen == {"password": True, "nodes": False}


@pytest.mark.slow
def test_bmc_password_never_in_plan_output(tmp_path: Path) -> None:
    site = stack_site("uk")
    site["bmc"] = {"username": "ops", "endpoint": "https://bmc-lab.example:8000"}
    write_stack(tmp_path, "lab", site, {"fjord:bmcPassword": {"secure": CIPHERTEXT}})
    for args in (["plan", "lab"], ["plan", "lab", "--json"], ["validate", "lab"], ["size", "lab", "--json"]):
        proc = fjord(*args, "--stacks-dir", str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        shown = proc.stdout + proc.stderr
        assert CIPHERTEXT not in shown
        assert "[secret]" not in shown
    doc = json.loads(fjord("plan", "lab", "--json", "--stacks-dir", str(tmp_path)).stdout)
    by_type = doc["plans"][0]["by_type"]
    assert by_type[POOL] == by_type["fjord:components:ScalableUnit"] == 20
