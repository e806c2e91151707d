"""`fjord site new`: a new stack from flags (pipelines) or from answers to prompts, validated and sized before
anything is written, and never over an existing stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fjord.cli.main import EXIT_REJECTED, app
from fjord.sizing.alloc import read as read_alloc
from fjord.sizing.site import size_site
from fjord.spec.load import load_site, read_stack

FLAGS = [
    "--country",
    "NO",
    "--jurisdiction",
    "EEA",
    "--grid-mw",
    "6",
    "--pue",
    "1.15",
    "--halls",
    "2",
    "--rack-positions",
    "40",
    "--rack-power-kw",
    "45",
    "--cluster",
    "h100:H100-SXM:256:slurm:research",
    "--cluster",
    "h200:H200-SXM:128:kubernetes:platform:hall-2",
    "--s3-endpoint",
    "http://127.0.0.1:7480",
]


def run(tmp_path: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["site", "new", *args, "--stacks-dir", str(tmp_path)], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_no_input_writes_a_stack_that_validates_and_sizes(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "oslo", "--no-input", *FLAGS)
    assert code == 0, err
    path = tmp_path / "Pulumi.oslo.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# oslo: written by `fjord site new` (384 GPUs, 48 nodes")
    assert "    # Data halls: rack positions" in text  # commented sections
    site = load_site(read_stack("oslo", tmp_path).site)
    assert [(c.name, c.sku, c.gpus, c.scheduler, c.tenant, c.hall) for c in site.clusters] == [
        ("h100", "H100-SXM", 256, "slurm", "research", "hall-1"),
        ("h200", "H200-SXM", 128, "kubernetes", "platform", "hall-2"),
    ]
    assert [t.name for t in site.tenants] == ["research", "platform"]
    assert site.tenants[1].gpu_quotas[0].gpus == 128
    assert site.power.grid_budget_mw == 6
    assert site.power.pue == 1.15
    assert len(site.halls) == 2
    store = site.store()
    assert store is not None
    assert store.endpoint == "http://127.0.0.1:7480"
    assert store.jurisdiction == "EEA"
    assert size_site(site).gpus == 384
    # Its allocation record beside it, current: the program plans the new site as it is.
    record = read_alloc("oslo", tmp_path)
    assert record is not None
    assert size_site(site, record, require_current=True).alloc == record
    # the size report follows, as `fjord size` shows it
    assert "Written" not in out
    assert "written" in out
    assert "oslo: 384 GPUs, 48 nodes" in out
    assert "Rack placement" in out
    assert "IP plan" in out
    lint = subprocess.run([".venv/bin/yamllint", "--strict", str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout


def test_prompts_ask_for_what_flags_do_not_give(tmp_path: Path) -> None:
    answers = "\n".join(
        [
            "GB",  # country
            "XX",  # jurisdiction: not allowed, asked again
            "UK",
            "3",  # grid MW
            "",  # PUE: default 1.2
            "1",  # halls
            "30",  # rack positions
            "60",  # rack kW (a rack of 4 B200 nodes draws 57 kW)
            "1",  # clusters
            "b200",  # name
            "B200",  # SKU
            "64",  # GPUs
            "slurm",  # scheduler
            "science",  # tenant
            "",  # S3 endpoint: none yet
        ]
    )
    code, out, err = run(tmp_path, "leeds", input=answers + "\n")
    assert code == 0, out + err
    site = load_site(read_stack("leeds", tmp_path).site)
    assert (site.country, site.jurisdiction, site.power.pue) == ("GB", "UK", 1.2)
    assert [(c.sku, c.gpus, c.scheduler, c.tenant) for c in site.clusters] == [("B200", 64, "slurm", "science")]
    assert site.object_store is None
    assert "'XX' is not one of EU, EEA, UK, CH" in err + out


def test_an_invalid_site_writes_nothing(tmp_path: Path) -> None:
    args = [a if a != "6" else "0.1" for a in FLAGS]  # 0.1 MW cannot power 384 GPUs
    code, _, err = run(tmp_path, "oslo", "--no-input", *args)
    assert code == EXIT_REJECTED
    assert "power" in err
    assert "nothing written to" in err
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(tmp_path, "oslo", "--no-input", *[a.replace("H100-SXM", "H900") for a in FLAGS])
    assert code == EXIT_REJECTED
    assert "clusters[0].sku" in err
    assert "allowed: H100-SXM" in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_stack_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.oslo.yaml").write_text("config: {}\n", encoding="utf-8")
    code, _, err = run(tmp_path, "oslo", "--no-input", *FLAGS)
    assert code == EXIT_REJECTED
    assert "exists already" in err
    assert (tmp_path / "Pulumi.oslo.yaml").read_text(encoding="utf-8") == "config: {}\n"


@pytest.mark.parametrize(
    ("drop", "message"),
    [("--country", "--country is required with --no-input"), ("--cluster", "at least one --cluster")],
)
def test_no_input_names_a_missing_flag(tmp_path: Path, drop: str, message: str) -> None:
    args: list[str] = []
    skip = False
    for a in FLAGS:
        if skip:
            skip = False
            continue
        if a == drop:
            skip = True
            continue
        args.append(a)
    code, _, err = run(tmp_path, "oslo", "--no-input", *args)
    assert code == 2
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_cluster_flag_says_the_format(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, "oslo", "--no-input", *FLAGS[:-6], "--cluster", "h100:H100-SXM")
    assert code == 2
    assert "NAME:SKU:GPUS:SCHEDULER:TENANT[:HALL]" in err
