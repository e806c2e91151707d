"""`fjord diff`: what a change of the spec does to the site, against the stack at a git ref.

Each test makes a git repository holding the uk stack and its allocation record, changes the working tree as an
operator would, and reads the diff as JSON (the form pipelines read), Markdown and the exit code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fjord.change.diff import Side, diff_sites, to_json
from fjord.cli.main import app
from fjord.sizing.alloc import read as read_alloc
from fjord.spec.load import load_site

from .conftest import STACKS, stack_site

runner = CliRunner()


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True, capture_output=True
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for name in ("Pulumi.uk.yaml", "Pulumi.uk.alloc.yaml"):
        shutil.copy(STACKS / name, stacks / name)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "uk")
    return stacks


def write(stacks: Path, site: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    doc = {"config": {"fjord:site": site, **(extra or {})}}
    (stacks / "Pulumi.uk.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def diff(stacks: Path, *args: str) -> tuple[int, Any]:
    result = runner.invoke(app, ["diff", "uk", "--stacks-dir", str(stacks), *args])
    if "--markdown" in args:
        return result.exit_code, result.stdout
    assert result.stdout.startswith("{"), result.output
    return result.exit_code, json.loads(result.stdout)


def alloc(stacks: Path) -> None:
    result = runner.invoke(app, ["alloc", "uk", "--stacks-dir", str(stacks)])
    assert result.exit_code == 0, result.output


def cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["clusters"] if c["name"] == name)


def test_no_change_is_safe(repo: Path) -> None:
    code, doc = diff(repo, "--json")
    assert code == 0
    assert doc["verdict"] == "safe"
    assert (doc["base"], doc["head"]) == ("HEAD:stacks/Pulumi.uk.yaml", "stacks/Pulumi.uk.yaml")  # any checkout
    assert doc["totals"] == {"added": 0, "removed": 0, "restarted": 0, "moved": 0}
    assert [c["change"] for c in doc["clusters"]] == ["unchanged", "unchanged"]
    assert list(doc) == [
        "schema_version",
        "stack",
        "base",
        "head",
        "verdict",
        "exit_code",
        "totals",
        "clusters",
        "moves",
        "problems",
        "changes",
        "notes",
    ]


def test_growing_a_cluster_adds_nodes_and_moves_none(repo: Path) -> None:
    site = stack_site("uk")
    site["clusters"][0]["scalable_units"] += 1
    write(repo, site)
    code, doc = diff(repo, "--json")
    assert code == 1  # the record was not updated: the program would refuse to run
    assert "fjord alloc uk" in doc["problems"][0]
    alloc(repo)
    code, doc = diff(repo, "--json")
    assert code == 0, doc
    h200 = cluster(doc, "h200")
    assert (h200["nodes_before"], h200["nodes_after"], h200["added"], h200["moved"]) == (127, 159, 32, 0)
    assert h200["added_nodes"][0]["first"] == "uk-h200-su003-n031"  # the former UFM slot, then a new unit
    assert cluster(doc, "b200")["change"] == "unchanged"
    assert doc["moves"] == []
    assert {"path": "clusters[h200].scalable_units", "before": 4, "after": 5} in doc["changes"]


def test_a_version_bump_is_disruptive_and_batched(repo: Path) -> None:
    site = stack_site("uk")
    site["software"]["kubernetes"] = "1.33"
    write(repo, site)
    code, doc = diff(repo, "--json")
    assert code == 3
    assert doc["verdict"] == "disruptive"
    b200 = cluster(doc, "b200")
    assert b200["restarted"] == 512
    assert (b200["batch_percent"], b200["batch_nodes"], b200["max_fail_percentage"]) == (5, 26, 1)
    assert b200["reasons"] == ["software.kubernetes: Kubernetes release"]
    assert cluster(doc, "h200")["batch_nodes"] == 13  # the default 10 % of 127
    code, text = diff(repo, "--markdown")
    assert code == 3
    assert "### fjord diff `uk`: disruptive" in text
    assert "| b200 | changed | 512 -> 512 | 0 | 0 | 512 | 0 | 26 (5 %), stop past 1 % failed |" in text


def test_a_moved_address_is_rejected(repo: Path) -> None:
    record = (repo / "Pulumi.uk.alloc.yaml").read_text(encoding="utf-8")
    # A hand edit that swaps two units' BMC subnets: every node of both would be renumbered.
    first, second = "bmc: 10.20.1.0/26", "bmc: 10.20.1.64/26"
    assert first in record
    assert second in record
    edited = record.replace(first, "bmc: SWAP").replace(second, first).replace("bmc: SWAP", second)
    (repo / "Pulumi.uk.alloc.yaml").write_text(edited, encoding="utf-8")
    code, doc = diff(repo, "--json")
    assert code == 1
    assert doc["totals"]["moved"] == 64
    assert doc["moves"][0] == {
        "node": "uk-b200-su000-n000",
        "field": "bmc",
        "before": "10.20.1.2",
        "after": "10.20.1.66",
    }


def test_removing_a_cluster_needs_allow_remove(repo: Path) -> None:
    site = stack_site("uk")
    site["clusters"] = [c for c in site["clusters"] if c["name"] != "h200"]
    write(repo, site)
    code, doc = diff(repo, "--json")
    assert code == 1
    assert any("cluster 'h200' is removed" in p for p in doc["problems"])
    write(repo, site, {"fjord:allowRemove": ["h200"]})
    alloc(repo)
    code, doc = diff(repo, "--json")
    assert code == 3, doc["problems"]
    h200 = cluster(doc, "h200")
    assert (h200["change"], h200["removed"], h200["nodes_after"]) == ("removed", 127, 0)


def test_changing_the_boot_method_reboots_nothing() -> None:
    site = stack_site("uk")
    record = read_alloc("uk", STACKS)
    changed = stack_site("uk")
    changed["bmc"] = {"boot": "disk"}
    result = diff_sites("uk", Side("a", load_site(site), record), Side("b", load_site(changed), record))
    doc = to_json(result)
    assert doc["verdict"] == "safe"
    assert doc["totals"]["restarted"] == 0
    assert any(n.startswith("bmc.boot: pxe -> disk applies to nodes added from now on") for n in doc["notes"])


def test_bad_base_ref_is_rejected(repo: Path) -> None:
    result = runner.invoke(app, ["diff", "uk", "--stacks-dir", str(repo), "--base", "no-such-ref"])
    assert result.exit_code == 1
    assert "no such commit" in result.output


def test_a_power_change_is_a_drained_rollout_in_batches() -> None:
    """`bmc.power` goes through the cluster's drained rollout (fjord.providers.rollout): the diff says so, per
    cluster, with its batches, in the direction of the change."""
    site = stack_site("uk")
    record = read_alloc("uk", STACKS)
    off = stack_site("uk")
    off["bmc"] = {**off.get("bmc", {}), "power": "off"}
    doc = to_json(diff_sites("uk", Side("a", load_site(site), record), Side("b", load_site(off), record)))
    assert (doc["verdict"], doc["exit_code"]) == ("disruptive", 3)
    b200 = cluster(doc, "b200")
    assert (b200["restarted"], b200["batch_nodes"], b200["max_fail_percentage"]) == (512, 26, 1)
    assert b200["reasons"] == [
        "bmc.power: power off: each node in service drained, then powered off, in batches (a node that cannot be"
        " drained stays on)"
    ]
    back = to_json(diff_sites("uk", Side("a", load_site(off), record), Side("b", load_site(site), record)))
    assert back["verdict"] == "disruptive"
    assert cluster(back, "h200")["reasons"] == [
        "bmc.power: power on: the nodes the rollout powered off are powered on, validated and returned, in batches"
    ]
