"""Every way a site reaches fjord is bounded and fails cleanly: YAML alias bombs on every loader path, endpoints
that validate but cannot be reached, and commands that would otherwise end in a traceback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.cli.state import EXIT_STORE
from fjord.spec.load import default_site


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
