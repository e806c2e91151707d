"""The `fjord` command line: output, JSON, exit codes, one-line reasons, and secrets never printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fjord.cli.main import EXIT_OVER_BUDGET, EXIT_REJECTED, app

from .conftest import STACKS, stack_site

runner = CliRunner()
CIPHERTEXT = "v1:Q2lwaGVydGV4dE5ldmVyVG9CZVByaW50ZWQ="


def fjord(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fjord", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=300,
    )


def write_stack(folder: Path, name: str, site: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> None:
    config: dict[str, Any] = dict(extra or {})
    if site is not None:
        config["fjord:site"] = site
    (folder / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}), encoding="utf-8")
    write_record(folder, name, site)


def write_record(folder: Path, name: str, site: dict[str, Any] | None) -> None:
    """The stack's allocation record, as `fjord alloc` writes it (none for a site that cannot be sized)."""
    from fjord.sizing.alloc import alloc_path, dump
    from fjord.sizing.site import size_site
    from fjord.spec.errors import SiteError
    from fjord.spec.load import default_site, load_site

    try:
        size = size_site(load_site(site if site is not None else default_site()))
    except SiteError:
        return
    alloc_path(name, folder).write_text(dump(size.alloc, name), encoding="utf-8")


def test_validate_ok() -> None:
    result = runner.invoke(app, ["validate", "narvik", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.output
    assert "site narvik" in result.stdout
    assert "100,800 GPUs" in result.stdout


def test_validate_embedded_dev_without_a_stacks_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "dev", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "embedded default site" in result.stdout


def test_validate_bad_input_one_line_reason(tmp_path: Path) -> None:
    site = stack_site("uk")
    site["clusters"][1]["gpus"] = 4100
    write_stack(tmp_path, "bad", site)
    result = runner.invoke(app, ["validate", "bad", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == EXIT_REJECTED
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "clusters[1].gpus" in lines[0]
    assert "4100" in lines[0]
    assert "allowed: a multiple of 8" in lines[0]


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    site = stack_site("uk")
    site["clusters"][1]["gpus"] = 4100
    site["power"]["pue"] = 0.5
    site["halls"][0]["cooling"] = "water"
    write_stack(tmp_path, "bad", site)
    result = runner.invoke(app, ["validate", "bad", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == EXIT_REJECTED
    err = result.stderr
    assert "3 problems" in err.splitlines()[0]
    for path in ("clusters[1].gpus", "power.pue", "halls[0].cooling"):
        assert path in err


def test_unknown_stack(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "nowhere", "--stacks-dir", str(STACKS)])
    assert result.exit_code == EXIT_REJECTED
    assert "allowed stacks: dev, narvik, uk" in result.stderr


def test_size_json_report() -> None:
    result = runner.invoke(app, ["size", "uk", "--json", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["totals"]["gpus"] == 5112
    assert {f["name"] for f in report["fabrics"]} == {"h200-compute", "b200-compute", "storage", "oob"}
    assert report["power"]["headroom_kw"] == pytest.approx(
        report["power"]["budget_kw"] - report["power"]["facility_kw"], abs=0.2
    )
    assert {h["name"] for h in report["halls"]} == {"hall-1", "hall-2"}
    assert report["placement"][0] == {
        "hall": "hall-1",
        "racks": "hall-1-r0001..r0032",
        "kind": "compute",
        "owner": "h200",
        "count": 32,
    }
    assert sum(r["count"] for r in report["placement"]) == report["totals"]["racks"]


def test_size_tables() -> None:
    result = runner.invoke(app, ["size", "dev", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.output
    for title in ("Clusters", "Fabrics", "Halls", "Rack placement", "IP plan", "Power (kW)"):
        assert title in result.stdout
    assert "headroom" in result.stdout


@pytest.mark.slow
def test_plan_every_stack_json() -> None:
    proc = fjord("plan", "--json", "--stacks-dir", str(STACKS))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc["stacks"]) == {"dev", "narvik", "uk"}
    assert all(0 < n <= doc["max_resources_per_stack"] == 2000 for n in doc["stacks"].values())
    narvik = next(p for p in doc["plans"] if p["stack"] == "narvik")
    assert narvik["duplicates"] == []
    assert narvik["summary"]["gpus"] >= 100_000
    assert narvik["inventory_hosts"] == narvik["summary"]["nodes"]
    assert narvik["by_type"]["fjord:components:ScalableUnit"] == 176
    assert narvik["by_type"]["pulumi-python:dynamic/baremetal:NodePool"] == 176
    assert narvik["by_component"]["narvik"] == narvik["resources"] - 2  # all but the stack and the site


def test_plan_dev_tree_from_the_repo_root() -> None:
    proc = fjord("plan", "dev", cwd=STACKS.parent)
    assert proc.returncode == 0, proc.stderr
    assert "fjord:components:GpuCluster dev-h100" in proc.stdout
    assert "fjord:components:ScalableUnit dev-h100-su000 (1 below)" in proc.stdout
    assert "1 x pulumi-python:dynamic/baremetal:NodePool" in proc.stdout
    assert "resources by type" in proc.stdout


def test_plan_bad_site_exit_code(tmp_path: Path) -> None:
    site = stack_site("uk")
    site["ip_plan"]["compute"] = "10.21.0.0/24"
    write_stack(tmp_path, "tight", site)
    proc = fjord("plan", "tight", "--stacks-dir", str(tmp_path))
    assert proc.returncode == EXIT_REJECTED
    assert "ip_plan.compute" in proc.stderr
    assert "allowed: a supernet of /18 or larger" in proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("stack tight") == 1


def test_plan_over_budget_exit_code(tmp_path: Path) -> None:
    """A stack past 2,000 resources fails the plan: 2,048 scalable units of one node each."""
    site = stack_site("uk")
    site["clusters"][0].pop("slurm")  # its controllers are nodes of h200, which the copies below are not
    site["clusters"] = [dict(site["clusters"][0], name="wide", scalable_units=None, gpus=8)]
    site["clusters"] = [dict(site["clusters"][0], name=f"c{i:04d}", compute_fabric="ndr") for i in range(2000)]
    site["halls"][0].update(rack_positions=20000)
    site["power"]["grid_budget_mw"] = 500
    site["ip_plan"].update(bmc="10.0.0.0/12", management="10.16.0.0/12", storage="10.32.0.0/12", compute="10.64.0.0/10")
    site["ip_plan"].pop("kubernetes_pods")
    site["ip_plan"].pop("kubernetes_services")
    site.pop("tenants")
    write_stack(tmp_path, "huge", site)
    proc = fjord("plan", "huge", "--json", "--stacks-dir", str(tmp_path))
    assert proc.returncode == EXIT_OVER_BUDGET, proc.stderr
    assert "over the budget of 2,000 per stack" in proc.stderr
    assert json.loads(proc.stdout)["stacks"]["huge"] > 2000


def test_secrets_never_printed(tmp_path: Path) -> None:
    """Secret config (`secure:` ciphertext written by the Pulumi CLI) never reaches any output."""
    write_stack(
        tmp_path,
        "dev",
        None,
        {"fjord:bmcPassword": {"secure": CIPHERTEXT}, "fjord:s3SecretAccessKey": {"secure": CIPHERTEXT}},
    )
    outputs = []
    for args in (["plan", "dev"], ["plan", "dev", "--json"], ["validate", "dev"], ["size", "dev", "--json"]):
        proc = fjord(*args, "--stacks-dir", str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    for text in outputs:
        assert CIPHERTEXT not in text
        assert "Q2lwaGVydGV4dE5ldmVyVG9CZVByaW50ZWQ" not in text


def test_secret_config_is_handed_on_as_a_secret_key(tmp_path: Path) -> None:
    """The plan hands an encrypted value to the program under its key, named secret, never decrypted.
    (What the program then sends the engine: tests/test_secrets.py.)"""
    from fjord.plan.worker import pulumi_config
    from fjord.spec.load import SECRET_PLACEHOLDER, read_stack

    write_stack(tmp_path, "dev", None, {"fjord:bmcPassword": {"secure": CIPHERTEXT}})
    cfg = read_stack("dev", tmp_path)
    assert cfg.secret_keys == ("fjord:bmcPassword",)
    assert pulumi_config(cfg) == {"fjord:bmcPassword": SECRET_PLACEHOLDER}
    assert cfg.embedded_default


GC_PROBE = """
import contextlib, gc, io, json, sys
from pathlib import Path
from fjord.plan import worker
from fjord.spec.load import read_stack
if sys.argv[1] == "collect_young_only":
    worker.collect_young_only()
else:
    with contextlib.redirect_stdout(io.StringIO()):
        worker.run(read_stack(sys.argv[2], Path(sys.argv[3])))
full = gc.get_stats()[2]["collections"]
print(json.dumps({"threshold": gc.get_threshold(), "enabled": gc.isenabled(), "full": full}))
"""


def _gc_probe(entry: str) -> dict[str, Any]:
    args = [sys.executable, "-c", GC_PROBE, entry, "narvik", str(STACKS)]
    proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_plan_worker_collects_young_generations_only() -> None:
    """The worker process (one plan, then exit) skips full collections, which walk the whole sized site;
    the same plan with the interpreter's defaults makes several."""
    default, tuned = _gc_probe("run"), _gc_probe("collect_young_only")
    assert default["full"] > 0
    assert tuned["enabled"]
    assert tuned["threshold"][:2] == default["threshold"][:2]  # young generations as by default
    assert tuned["threshold"][2] > default["threshold"][2]
    done = subprocess.run(
        [sys.executable, "-m", "fjord.plan.worker", "narvik", str(STACKS)], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout)["gc"]["full"] == 0


def test_plan_worker_collects_nothing_while_importing() -> None:
    """Run as the runner runs it, the worker turns the collector off for its imports and freezes what they
    made; the same imports with the collector on collect many times, finding nothing to free."""
    done = subprocess.run(
        [sys.executable, "-m", "fjord.plan.worker", "dev", str(STACKS)], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)["gc"]
    probe = "import gc\nfrom fjord.plan import worker\nprint(sum(s['collections'] for s in gc.get_stats()))"
    with_collector = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout)
    assert report["while_importing"] * 3 < with_collector, (report, with_collector)
    assert report["frozen"] > 50_000  # the modules' objects, out of every later collection
    assert report["full"] == 0


OUTPUTS_PROBE = """
import json
import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await
from fjord.plan import worker
from fjord.plan.mocks import PlanMocks

async def ready(value):
    return value

pulumi.runtime.set_mocks(PlanMocks(), project="fjord", stack="probe", preview=True)

def program():
    pulumi.export("plain", {"hosts": [{"name": "n0"}, {"name": "n1"}]})
    pulumi.export("known", pulumi.Output.from_input(0).apply(lambda _: [1, 2]))
    pulumi.export("unknown", pulumi.Output(set(), ready(None), ready(False)))
    pulumi.export("unknown_inside", pulumi.Output(set(), ready({"a": [1, pulumi.UNKNOWN]}), ready(True)))

_sync_await(run_pulumi_func(program))
print(json.dumps(worker.stack_outputs(), sort_keys=True))
"""


def test_plan_worker_resolves_unknown_exports_to_none() -> None:
    """The worker reads each export's known flag instead of walking its value again: a known export comes back
    as it is, one that is unknown, or holds an unknown anywhere inside, as None (what `future()` gives)."""
    proc = subprocess.run(
        [sys.executable, "-c", OUTPUTS_PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "known": [1, 2],
        "plain": {"hosts": [{"name": "n0"}, {"name": "n1"}]},
        "unknown": None,
        "unknown_inside": None,
    }
