"""`fjord schema`: the JSON Schema editors validate stack files with, generated from the models."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.spec.load import CONFIG_KEYS, SECRET_CONFIG_PREFIXES
from fjord.spec.schema import site_schema, stack_schema

REPO = Path(__file__).resolve().parents[1]
STACKS = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))


def _errors(doc: Any) -> list[tuple[list[Any], str]]:
    validator = jsonschema.Draft202012Validator(stack_schema())
    return [(list(e.absolute_path), e.message) for e in validator.iter_errors(doc)]


def test_the_schema_is_valid_json_schema_and_the_cli_prints_it() -> None:
    jsonschema.Draft202012Validator.check_schema(stack_schema())
    jsonschema.Draft202012Validator.check_schema(site_schema())
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == stack_schema()
    site_only = CliRunner().invoke(app, ["schema", "--site"])
    assert json.loads(site_only.stdout)["title"] == "Site"


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_every_stack_in_the_repository_validates(path: Path) -> None:
    assert _errors(yaml.safe_load(path.read_text())) == []


def test_every_config_key_fjord_reads_is_described() -> None:
    config = stack_schema()["properties"]["config"]
    assert set(CONFIG_KEYS) <= set(config["properties"])
    for prefix in SECRET_CONFIG_PREFIXES:
        assert _errors({"config": {f"{prefix}b200": {"secure": "v1:abc"}}}) == []


def test_the_schema_flags_what_fjord_validate_rejects() -> None:
    """Typos, wrong types, values off the list and plain-text credentials, each at its path."""
    uk = yaml.safe_load((REPO / "stacks" / "Pulumi.uk.yaml").read_text())
    cases: list[tuple[str, Any, list[Any]]] = [
        ("halls.0.rack_positons", 12, ["config", "fjord:site", "halls", 0]),  # unknown key (typo)
        ("halls.0.rack_positions", "twelve", ["config", "fjord:site", "halls", 0, "rack_positions"]),
        ("power.energy_source", "coal", ["config", "fjord:site", "power", "energy_source"]),
        ("name", "UK_Site", ["config", "fjord:site", "name"]),  # not a DNS label: the pattern
        ("software.kubernetes", "1.24", ["config", "fjord:site", "software", "kubernetes"]),
    ]
    for dotted, value, where in cases:
        doc = copy.deepcopy(uk)
        node: Any = doc["config"]["fjord:site"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
        errors = _errors(doc)
        assert [path for path, _ in errors] == [where], (dotted, errors)
    assert _errors({"config": {"fjord:bmcPassword": "hunter2"}})  # a credential in plain text
    assert _errors({"config": {"fjord:sites": {}}})  # an unknown key of fjord's namespace
    assert _errors({"config": {"kubernetes:context": "lab"}}) == []  # other namespaces are Pulumi's
