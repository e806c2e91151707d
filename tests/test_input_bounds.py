"""Every way a site reaches fjord is bounded and fails cleanly: YAML alias bombs on every loader path, endpoints
that validate but cannot be reached, and commands that would otherwise end in a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.cli.state import EXIT_STORE
from fjord.spec.errors import SiteError
from fjord.spec.load import MAX_FILE_BYTES, MAX_VALUES, bounded, default_site, read_stack

from .conftest import STACKS


def write_stack(folder: Path, name: str, site: dict[str, Any]) -> str:
    (folder / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": {"fjord:site": site}}), encoding="utf-8")
    return name


def closed_port() -> int:
    with socket.socket() as s:  # a port with nothing listening once it is closed
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_state_init_against_an_unreachable_tier_is_one_clean_line(tmp_path: Path) -> None:
    """A tier's endpoint that validates but where nothing answers: exit 3 and one line, no traceback."""
    site = default_site()
    port = closed_port()
    site["storage"].append(
        {
            "name": "objects",
            "kind": "object",
            "capacity_pb": 1.0,
            "hall": "lab",
            "racks": 1,
            "power_kw": 5.0,
            "endpoint": f"http://127.0.0.1:{port}",
        }
    )
    site["object_store"] = {"tier": "objects", "max_attempts": 1, "connect_timeout_s": 1}
    stack = write_stack(tmp_path, "lab", site)
    env = {"FJORD_S3_ACCESS_KEY_ID": "k", "FJORD_S3_SECRET_ACCESS_KEY": "s3cr3t-value", "AWS_ACCESS_KEY_ID": ""}
    result = CliRunner().invoke(app, ["state", "init", stack, "--stacks-dir", str(tmp_path)], env=env)
    assert result.exit_code == EXIT_STORE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"S3 endpoint http://127.0.0.1:{port} is unreachable" in result.stderr
    assert "Traceback" not in result.output
    assert "s3cr3t-value" not in result.output


def test_state_init_with_an_endpoint_that_is_no_url_is_rejected_before_connecting(tmp_path: Path) -> None:
    """What crashed `fjord state init` with a traceback is now a validation problem naming the field (exit 1)."""
    site = default_site()
    site["storage"].append(
        {"name": "objects", "kind": "object", "capacity_pb": 1.0, "hall": "lab", "racks": 1, "power_kw": 5.0}
    )
    site["storage"][-1]["endpoint"] = "s3 at the lab"
    stack = write_stack(tmp_path, "lab", site)
    result = CliRunner().invoke(app, ["state", "init", stack, "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "storage[1].endpoint: is empty or holds spaces" in result.stderr
    assert "Traceback" not in result.output


# --- YAML alias bombs and other oversized input, on every path that reads a site ------------------------


def alias_bomb(levels: int = 9) -> str:
    """A site whose `region` is a "billion laughs": a few hundred bytes, 9**levels strings once expanded."""
    lines = ['lol: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, levels)]
    body = "\n".join(f"    {line}" for line in lines)
    return f"config:\n  fjord:site:\n    name: bomb\n{body}\n    region: *l{levels - 1}\n"


BOMB_COMMANDS = [["validate"], ["size"], ["size", "--json"], ["render", "--out", "{out}"], ["plan"], ["plan", "--json"]]


@pytest.mark.parametrize("command", BOMB_COMMANDS, ids=lambda c: " ".join(c).replace("{out}", "out"))
def test_an_alias_bomb_is_rejected_at_once_by_every_command(command: list[str], tmp_path: Path) -> None:
    """`plan` serialised the raw site for its worker before validating it and hung; every command reads stack files
    through one loader, which refuses a document that aliases blow up before building it."""
    (tmp_path / "Pulumi.bomb.yaml").write_text(alias_bomb(), encoding="utf-8")
    args = [a.replace("{out}", str(tmp_path / "out")) for a in command]
    head, rest = args[0], args[1:]
    argv = [head, "bomb", *(["h100"] if head == "render" else []), *rest, "--stacks-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "fjord", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "holds more than 1,000,000 values once YAML aliases are expanded" in done.stderr
    assert "allowed: at most 1,000,000 values" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ("config:\n  fjord:site: &s {name: x, loop: [*s]}\n", "contains itself"),
        ("config:\n  fjord:site: " + "[" * 80 + "]" * 80 + "\n", "more than 64 deep"),
        ("s: &s " + "x" * 4096 + "\nconfig:\n  fjord:site: {region: [" + ", ".join(["*s"] * 20000) + "]}\n", "MiB"),
    ],
    ids=["self-reference", "too-deep", "too-much-text"],
)
def test_other_oversized_stack_files_are_rejected(document: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "Pulumi.big.yaml").write_text(document, encoding="utf-8")
    with pytest.raises(SiteError) as caught:
        read_stack("big", tmp_path)
    (problem,) = caught.value.problems
    assert says in problem.message
    assert "allowed: at most" in problem.message


def test_a_stack_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.huge.yaml"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SiteError) as caught:
        read_stack("huge", tmp_path)
    assert "allowed: a stack file of at most 16 MiB" in caught.value.lines()[0]


def test_the_program_bounds_the_site_pulumi_hands_it(registrations: list[Any]) -> None:
    """Under `pulumi up` the site reaches the program as JSON from the Pulumi CLI, already expanded: the program
    bounds it before validating, and registers nothing."""
    from fjord import program

    raw = default_site()
    raw["region"] = ["x"] * (MAX_VALUES + 1)
    pulumi.runtime.set_all_config({"fjord:site": json.dumps(raw)})
    try:
        with pytest.raises(SiteError) as caught:
            program.main()
    finally:
        pulumi.runtime.set_all_config({})
    assert caught.value.lines()[0].startswith("region: holds more than 1,000,000 values; allowed: at most")
    assert "(got ['x', 'x'," in caught.value.lines()[0]
    assert registrations == []


def test_bounds_leave_real_sites_alone() -> None:
    for stack in ("dev", "uk", "narvik"):
        bounded(read_stack(stack, STACKS).site)


def test_a_policy_settings_file_of_aliases_is_bounded_too(tmp_path: Path) -> None:
    """policy/config.yaml is read by the same bounded loader as the stack files."""
    path = tmp_path / "policy.yaml"
    lines = ['l0: &l0 ["a", "a", "a", "a", "a", "a", "a", "a", "a"]']
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, 9)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "dev", "--policy-config", str(path)])
    assert result.exit_code == 1
    assert "holds more than 1,000,000 values once YAML aliases are expanded" in result.stderr
