"""The CrossGuard pack in `policy/`: every fjord.policy rule as a Pulumi stack validation policy with its severity
as the enforcement level, reading the stack named by the resources' URNs, and reporting what the same function
finds in `fjord plan`."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from pulumi_policy import EnforcementLevel, PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions
from pulumi_policy import StackValidationArgs as Args

from fjord.policy import RULES

REPO = Path(__file__).resolve().parents[1]


def load_pack(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fjord_pack_{abs(hash(folder))}", folder / "fjord_pack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resource(stack: str, typ: str, name: str) -> PolicyResource:
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    return PolicyResource(typ, {}, f"urn:pulumi:{stack}::fjord::{typ}::{name}", name, opts, None, None, [], {})


def args(stack: str, config: dict[str, str] | None = None) -> Args:
    return Args(
        [resource(stack, "pulumi:pulumi:Stack", f"fjord-{stack}"), resource(stack, "fjord:components:Site", stack)],
        config,
    )


def violations(policy: object, a: Args) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    policy.validate(a, lambda message, urn=None: found.append((message, urn)))  # type: ignore[attr-defined]
    return found


@pytest.fixture
def pack_repo(tmp_path: Path) -> Path:
    """A copy of the repository's policy folder and stacks, whose uk keeps its objects in Frankfurt."""
    shutil.copytree(REPO / "policy", tmp_path / "policy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "stacks", tmp_path / "stacks")
    path = tmp_path / "stacks" / "Pulumi.uk.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["fjord:site"]["storage"][1]["endpoint"] = "https://s3.frankfurt.fjord.example"
    path.write_text(yaml.safe_dump(doc))
    return tmp_path


def test_every_rule_is_a_policy_with_its_severity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FJORD_STACKS_DIR", raising=False)
    pack = load_pack(REPO / "policy")
    policies = {p.name: p for p in pack.policies()}
    assert set(policies) == {f"fjord-{r.name}" for r in RULES}
    for r in RULES:
        level = EnforcementLevel.MANDATORY if r.severity == "mandatory" else EnforcementLevel.ADVISORY
        assert policies[f"fjord-{r.name}"].enforcement_level == level
    assert pack.stack_of("urn:pulumi:narvik::fjord::fjord:components:Site::narvik") == "narvik"
    # The repository's stacks pass every mandatory policy.
    for stack in ("dev", "uk", "narvik"):
        for name, policy in policies.items():
            if policy.enforcement_level == EnforcementLevel.MANDATORY and name != "fjord-blast-radius":
                assert violations(policy, args(stack)) == [], (stack, name)


def test_the_pack_fails_residency_naming_the_field_on_the_root_stack(
    pack_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FJORD_STACKS_DIR", raising=False)
    pack = load_pack(pack_repo / "policy")
    policies = {p.name: p for p in pack.policies()}
    found = violations(policies["fjord-data-residency"], args("uk"))
    assert [m.split(" at ")[0] for m, _ in found] == [
        "object_store.tier (objects): state and artifacts",
        "object_store.tier (objects): tenant buckets",
        "storage[1].endpoint: storage tier objects",
    ]
    assert all("allowed: a host in UK" in m for m, _ in found)
    assert {u for _, u in found} == {"urn:pulumi:uk::fjord::pulumi:pulumi:Stack::fjord-uk"}
    assert violations(policies["fjord-pinned-versions"], args("uk")) == []


def test_blast_radius_needs_the_diff_and_fails_moves(pack_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FJORD_DIFF_JSON", raising=False)
    pack = load_pack(pack_repo / "policy")
    policy = next(p for p in pack.policies() if p.name == "fjord-blast-radius")
    # pulumi-policy's "not applicable": an exception with an empty message and the reason as an attribute.
    with pytest.raises(Exception, match=r"^$") as not_applicable:
        violations(policy, args("uk"))
    assert "fjord diff --json" in str(getattr(not_applicable.value, "reason", ""))
    diff = pack_repo / "diff.json"
    moves = [{"node": "uk-b200-su000-n001", "field": "rack", "before": "hall-2-r001", "after": "hall-2-r009"}]
    diff.write_text(json.dumps({"totals": {"moved": 1}, "clusters": [{"nodes_before": 639}], "moves": moves}))
    found = violations(policy, args("uk", {"diff": str(diff)}))
    assert [m for m, _ in found] == [
        "node uk-b200-su000-n001.rack: an existing node would move; allowed: no change to an allocated address or"
        " rack (got hall-2-r001 -> hall-2-r009)"
    ]


def test_settings_disable_a_rule_in_the_pack(pack_repo: Path) -> None:
    config = pack_repo / "policy" / "config.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["enforcement"] = {"bmc-tls": "mandatory", "driver-branch-floats": "disabled"}
    config.write_text(yaml.safe_dump(doc))
    policies = {p.name: p for p in load_pack(pack_repo / "policy").policies()}
    assert "fjord-driver-branch-floats" not in policies
    assert policies["fjord-bmc-tls"].enforcement_level == EnforcementLevel.MANDATORY


def test_the_pack_file_is_what_pulumi_runs() -> None:
    meta = yaml.safe_load((REPO / "policy" / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python"
    # No virtualenv: the pack runs in the interpreter that runs fjord (PULUMI_PYTHON_CMD), with or without a .venv.
    assert "virtualenv" not in meta["runtime"].get("options", {})
    main = (REPO / "policy" / "__main__.py").read_text()
    assert "PolicyPack(" in main
    assert "policies()" in main
    assert str(REPO / "policy") not in sys.path  # the tests load the pack by path, as Pulumi runs it from its folder
