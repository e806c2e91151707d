"""Roles declare their variables in `meta/argument_specs.yml`, which Ansible checks before a role runs: every
default is declared, and what fjord's inventory hands the roles for the three stacks passes the specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from fjord.hosts import build_inventory
from fjord.sizing.site import size_site
from fjord.spec.load import load_site, read_stack

REPO = Path(__file__).resolve().parents[1]
ROLES = REPO / "playbooks" / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())


def _options(role: str) -> dict[str, Any]:
    path = ROLES / role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"{role}: no meta/argument_specs.yml (declare the role's variables there)"
    return dict(yaml.safe_load(path.read_text())["argument_specs"]["main"].get("options") or {})


def _validator(options: dict[str, Any]) -> ArgumentSpecValidator:
    """Ansible's own validator, as the role's argument check runs it (the spec's `description` is documentation)."""
    spec = {
        name: {k: v for k, v in opt.items() if k not in ("description", "version_added")}
        for name, opt in options.items()
    }
    return ArgumentSpecValidator(spec)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_declared_with_its_default(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    options = _options(role)
    assert sorted(options) == sorted(defaults), f"{role}: argument_specs.yml and defaults/main.yml differ"
    for name, opt in options.items():
        assert opt.get("description"), f"{role}: {name} has no description"
        value = defaults[name]
        if isinstance(value, str) and "{{" in value:
            continue  # a template: its value is known only on the host
        assert opt.get("default") == value, f"{role}: {name}: spec default {opt.get('default')!r} != {value!r}"
        result = _validator({name: opt}).validate({name: value})
        assert not result.error_messages, (role, name, result.error_messages)


@pytest.mark.parametrize("stack", ["dev", "uk", "narvik"])
def test_the_inventory_fjord_writes_passes_every_role_spec(stack: str) -> None:
    """The variables fjord puts on the site and cluster groups have the types and values the roles declare."""
    site = load_site(read_stack(stack, REPO / "stacks").site)
    data = build_inventory(site, size_site(site)).data
    group_vars: list[dict[str, Any]] = []

    def walk(group: dict[str, Any]) -> None:
        group_vars.append(group.get("vars", {}))
        for child in (group.get("children") or {}).values():
            if isinstance(child, dict):
                walk(child)

    walk(data["all"])
    specs = {role: _options(role) for role in ROLE_NAMES}
    checked = 0
    for variables in group_vars:
        for role, options in specs.items():
            given = {k: v for k, v in variables.items() if k in options}
            if given:
                result = _validator({k: options[k] for k in given}).validate(given)
                assert not result.error_messages, (stack, role, result.error_messages)
                checked += len(given)
    assert checked > 0


def test_a_wrong_value_is_refused_naming_the_variable() -> None:
    options = _options("nvidia_driver")
    result = _validator(options).validate({"nvidia_driver_source": "internet", "nvidia_driver_upgrade": "maybe"})
    messages = " ".join(result.error_messages)
    assert "nvidia_driver_source" in messages
    assert "internet" in messages
    assert "nvidia_driver_upgrade" in messages


def test_each_role_of_site_yml_has_a_tag_of_its_own_name() -> None:
    """`fjord configure <stack> --tags <role>` runs one role (fjord_facts, every role's dependency, is `always`)."""
    import subprocess
    import sys

    playbook = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(playbook), "-i", "localhost,", str(REPO / "playbooks" / "site.yml"), "--list-tags"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    tags = {
        t.strip()
        for line in proc.stdout.splitlines()
        if "TASK TAGS:" in line
        for t in line.split("[", 1)[1].rstrip("]").split(",")
    }
    applied = {
        "base",
        "doca_ofed",
        "k8s_node",
        "nvidia_driver",
        "fabric_manager",
        "cuda_toolkit",
        "nvidia_container_toolkit",
        "dcgm",
        "gpu_validate",
        "munge",
        "slurm",
        "imex",
    }
    assert applied <= tags, applied - tags
