"""`fjord validate` and the plan agree: every rule lives in spec or sizing and `validate` runs all of them.

A site used to pass `validate` and then be rejected by `plan` or `render` (an operator-owned GPU driver of a branch
with no pinned release was checked only when the platform was built). Here every input of the rejection table
(tests/test_spec_rejects.py), and a set of sites that reach the plan-only code (platforms, storage, air gap,
tenants), goes through both: what `fjord validate` runs (`validate_site`) and the real Pulumi program under the
plan's mocks. For every input the plan rejects, validate rejects it too, with the same problems; every input
validate accepts, the plan plans. A structural check keeps new rules out of the layers validate does not run.
"""

from __future__ import annotations

import ast
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest

from fjord.plan.mocks import Registration
from fjord.sizing.site import validate_site
from fjord.spec.errors import SiteError

from .conftest import REPO
from .test_spec_rejects import BASES, CASES, Raw, append, both, put

Outcome = tuple[str, ...] | None
"""None: accepted; else the problem lines."""


def validate(raw: Raw) -> Outcome:
    try:
        validate_site(raw)
    except SiteError as exc:
        return tuple(exc.lines())
    return None


def plan(raw: Raw) -> Outcome:
    """The Pulumi program, as `fjord plan` and `pulumi up` run it, on this site; its problems if it rejects it."""
    from fjord import program
    from fjord.sizing.alloc import alloc_path, dump

    pulumi.runtime.set_all_config({"fjord:site": json.dumps(raw)})
    with tempfile.TemporaryDirectory() as folder:
        # The stack's allocation record, as `fjord alloc` writes it for a site validate accepts (the program
        # requires one; docs/safe-change.md). A rejected site has none: the program rejects it first.
        try:
            _, size = validate_site(raw)
            alloc_path(pulumi.get_stack(), Path(folder)).write_text(dump(size.alloc, "test"), encoding="utf-8")
        except SiteError:
            pass
        try:

            @pulumi.runtime.test
            def run() -> None:
                program.main(Path(folder))

            run()
        except SiteError as exc:
            return tuple(exc.lines())
        finally:
            pulumi.runtime.set_all_config({})
    return None


# Sites validate accepts that take the plan down its other branches: each must plan.
ACCEPTED: dict[str, tuple[str, Callable[[Raw], None]]] = {
    "dev": ("dev", lambda raw: None),
    "operator-driver-570": (
        "dev",
        put("clusters[0].gpu_stack", {"driver": "operator", "container_toolkit": "operator"}),
    ),
    "operator-driver-580": (
        "dev",
        both(
            put("clusters[0].gpu_stack", {"driver": "operator"}),
            put("software.driver_branch", 580),
            put("software.cuda", "13.0"),
        ),
    ),
    "host-driver-575": ("dev", both(put("software.driver_branch", 575), put("software.cuda", "12.9"))),
    "operator-driver-air-gapped": (
        "dev",
        both(
            put("clusters[0].gpu_stack", {"driver": "operator"}),
            put("software.driver_source", "mirror"),
            put(
                "air_gap",
                {"packages": "http://10.0.0.9:8080/apt", "registry": "10.0.0.9:5000", "charts": "oci://10.0.0.9/c"},
            ),
        ),
    ),
    "slurm": ("dev", both(put("clusters[0].scheduler", "slurm"), put("tenants[0].gpu_quotas", []))),
    "object-tier-on-a-port": (
        "dev",
        append(
            "storage",
            {
                "name": "objects",
                "kind": "object",
                "capacity_pb": 1.0,
                "hall": "lab",
                "racks": 1,
                "power_kw": 5.0,
                "endpoint": "https://[fd00::9]:7480/",
            },
        ),
    ),
    "nfs-file-system": ("dev", put("storage[0].endpoint", "nfs://10.0.8.9")),
    "uk": ("uk", lambda raw: None),
}


def _accepted(name: str) -> Raw:
    base, mutate = ACCEPTED[name]
    raw = BASES[base]()
    mutate(raw)
    return raw


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_validate_accepts_the_plan_plans(name: str, registrations: list[Registration]) -> None:
    raw = _accepted(name)
    assert validate(raw) is None
    assert plan(raw) is None
    assert any(r.type == "fjord:components:Site" for r in registrations)


def test_what_the_plan_rejects_validate_rejects_with_the_same_problems(registrations: list[Registration]) -> None:
    """Over the whole rejection table: the plan's problems are exactly validate's, and it registers nothing."""
    disagree = []
    for case in CASES:
        raw = BASES[case.base]()
        case.mutate(raw)
        planned = plan(raw)
        if planned is not None and validate(raw) != planned:
            disagree.append(f"{case.id}: plan {planned} / validate {validate(raw)}")
        assert planned is not None, f"{case.id}: the plan accepted a site validate rejects"
    assert disagree == []
    assert registrations == []


# Layers `fjord validate` does not run: a rule there would reject a site only at plan, render or `pulumi up`.
UNVALIDATED = ("components", "platform", "providers", "hosts", "program.py", "plan")
# Modules of those layers that `fjord validate` does run (fjord.cli.common.check_stack_hosts).
VALIDATED_TOO = ("hosts/stack_config.py",)


def test_no_site_rule_lives_outside_spec_and_sizing() -> None:
    """No module that validate does not run makes a site Problem or raises SiteError of its own making (the program
    only re-raises those of `validate_site` and the stack-file helpers of `fjord.spec.load`)."""
    root = REPO / "components" / "fjord"
    found: list[str] = []
    for top in UNVALIDATED:
        paths = [root / top] if top.endswith(".py") else sorted((root / top).rglob("*.py"))
        for path in paths:
            if str(path.relative_to(root)) in VALIDATED_TOO:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Problem":
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []


def test_validate_fails_a_mandatory_policy_rule_as_the_plan_does(tmp_path: Path) -> None:
    """A site valid to the model but against a mandatory policy rule (a public BMC network) passed `fjord validate`
    and failed `fjord plan` (exit 6): validate runs the policy rules too, with the same settings and exit code."""
    import subprocess
    import sys

    import yaml

    from fjord.cli.common import EXIT_POLICY

    from .test_spec_rejects import dev_raw

    raw = dev_raw()
    raw["ip_plan"]["bmc"] = "8.20.0.0/22"
    (tmp_path / "Pulumi.pub.yaml").write_text(yaml.safe_dump({"config": {"fjord:site": raw}}), encoding="utf-8")
    assert validate(raw) is None  # valid to the model and sizing
    codes = []
    for command in (["alloc", "pub"], ["validate", "pub"], ["plan", "pub"]):
        done = subprocess.run(
            [sys.executable, "-m", "fjord", *command, "--stacks-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        codes.append(done.returncode)
        if command[0] != "alloc":
            assert "policy no-bmc-exposure (mandatory): ip_plan.bmc" in done.stderr, done.stderr
    assert codes == [0, EXIT_POLICY, EXIT_POLICY]
