"""NCCL all-reduce between node pairs (acceptance check nccl_pair): the pairing from racks and scalable units,
nccl-tests' all_reduce_perf output parsed, the verdict against the catalog's inter-node figure, and the gate's
decision from it. The test itself needs two GPU nodes with nccl-tests and MPI: on the lent GPU machine
`test_all_reduce_perf_output_of_this_machine_parses` runs all_reduce_perf for real (marker gpu)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fjord.bootstrap.gate import evaluate
from fjord.bootstrap.nccl import (
    Candidate,
    expected_text,
    inter_node_gbps,
    merge,
    node_checks,
    pair_nodes,
    pair_result,
    parse_all_reduce,
)

DATA = Path(__file__).parent / "data" / "nccl"
TWO_NODES = (DATA / "all_reduce_perf-2x8-h100.txt").read_text(encoding="utf-8")
A, B = "dev-h100-su000-n000", "dev-h100-su000-n002"
PEAK = inter_node_gbps(8, 400)  # HGX H100: 8 compute rails on NDR 400 Gb/s ports


def test_the_catalogs_inter_node_figure() -> None:
    assert PEAK == 400.0
    assert inter_node_gbps(4, 800) == 400.0  # an NVL72 tray: 4 rails of XDR


def test_two_node_output_with_mpi_tags_parses() -> None:
    run = parse_all_reduce(TWO_NODES)
    assert run.version == "2.13.9"
    assert len(run.ranks) == 16
    assert run.hosts == [A, B]
    assert run.ranks[9] == (B, 1, "NVIDIA H100 80GB HBM3")
    assert [r.size for r in run.rows] == [2**30, 2**31, 2**32, 2**33]
    peak = run.peak
    assert peak is not None
    assert (peak.size, peak.algbw, peak.busbw, peak.wrong) == (2**33, 194.07, 363.89, 0)
    assert peak.busbw_in_place == 363.82
    assert run.avg_busbw == 361.013
    assert run.out_of_bounds == 0


def test_plain_output_without_data_check_parses() -> None:
    text = "\n".join(
        [
            "# nThread 1 nGpus 8 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1"
            " validation: 0 graph: 0",
            "#  Rank  0 Group  0 Pid   1001 on     gpu01 device  0 [0x18] NVIDIA H100 80GB HBM3",
            "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw"
            "   busbw #wrong",
            "           8             2     float     sum      -1    35.21    0.00    0.00    N/A    34.72    0.00"
            "    0.00    N/A",
            "   134217728      33554432     float     sum      -1   1087.3  123.44  216.02    N/A   1085.0  123.70"
            "  216.48    N/A",
            "# Out of bounds values : 0 OK",
            "# Avg bus bandwidth    : 70.6",
        ]
    )
    run = parse_all_reduce(text)
    assert [(r.size, r.busbw, r.wrong) for r in run.rows] == [(8, 0.0, 0), (134217728, 216.02, 0)]
    assert run.hosts == ["gpu01"]
    assert run.avg_busbw == 70.6


def test_a_pair_passes_at_its_share_of_the_inter_node_figure() -> None:
    ok = pair_result((A, B), {"rc": 0, "stdout": TWO_NODES, "stderr": ""}, 8, PEAK, 0.85)
    assert ok.status == "passed"
    assert ok.expected == ">= 340 GB/s busbw between the two nodes (85% of 400 GB/s)"
    assert ok.actual == "364 GB/s busbw at 8 GiB (91%)"
    assert ok.figures["hosts"] == [A, B]
    slow = pair_result((A, B), {"rc": 0, "stdout": TWO_NODES, "stderr": ""}, 8, PEAK, 0.95)
    assert slow.status == "failed"
    assert slow.actual == "364 GB/s busbw at 8 GiB (91%)"


def test_a_pair_fails_on_wrong_values_a_lone_host_or_no_results() -> None:
    wrong = TWO_NODES.replace("363.89      0", "363.89      3")
    assert pair_result((A, B), {"rc": 1, "stdout": wrong}, 8, PEAK, 0.5).actual.endswith("; 3 wrong values; exit 1")
    one_host = TWO_NODES.replace(B, A)
    res = pair_result((A, B), {"rc": 0, "stdout": one_host}, 8, PEAK, 0.5)
    assert res.status == "failed"
    assert f"ran on {A}, not on two nodes" in res.actual
    crashed = pair_result((A, B), {"rc": 1, "stdout": "", "stderr": "ORTE was unable to reliably start"}, 8, PEAK, 0.5)
    assert crashed.status == "failed"
    assert crashed.actual == "all_reduce_perf printed no results (exit 1): ORTE was unable to reliably start"


def test_a_pair_not_run_is_skipped_with_its_reason() -> None:
    why = f"not run on {A}: no NVIDIA GPU here: nvidia-smi is not installed"
    assert pair_result((A, B), {"skipped": why}, 8, PEAK, 0.7).actual == why
    assert pair_result((A, B), None, 8, PEAK, 0.7).status == "skipped"


def _c(name: str, rack: str, unit: int = 0, cluster: str = "h100") -> Candidate:
    return Candidate(name, cluster, unit, rack)


def test_pairs_cross_racks_within_a_unit() -> None:
    nodes = [_c(f"n{i}", f"r{i // 4}") for i in range(8)]  # two racks of four
    pairs = pair_nodes(nodes)
    assert pairs == [("n0", "n4"), ("n1", "n5"), ("n2", "n6"), ("n3", "n7")]
    assert all(p[0][1] < "4" <= p[1][1] for p in pairs)  # every pair crosses from rack r0 to r1


def test_odd_nodes_pair_across_units_and_a_last_one_runs_twice() -> None:
    nodes = [_c("a0", "r0", 0), _c("a1", "r0", 0), _c("a2", "r1", 0), _c("b0", "r2", 1)]
    pairs = pair_nodes(nodes)
    assert pairs[0] == ("a0", "a2")
    assert ("a1", "b0") in pairs  # the leftovers of units 0 and 1, across the spine
    assert {n for p in pairs for n in p} == {"a0", "a1", "a2", "b0"}
    three = pair_nodes([_c("x0", "r0"), _c("x1", "r0"), _c("x2", "r1")])
    assert three == [("x0", "x2"), ("x1", "x0")]  # x1 pairs with a node of its own unit


def test_clusters_are_never_mixed_and_a_lone_node_has_no_pair() -> None:
    pairs = pair_nodes([_c("h0", "r0", cluster="h100"), _c("g0", "r1", cluster="h200"), _c("g1", "r1", cluster="h200")])
    assert pairs == [("g0", "g1")]


def test_the_gate_decides_nccl_pair_from_the_controllers_check() -> None:
    """Required: a pair skipped for want of a GPU fails both nodes with that reason; a pair that passed lets
    them through; the node script's placeholder entry is replaced and the `required` flag kept."""
    expected = expected_text(PEAK, 0.7)
    placeholder = {"check": "nccl_pair", "status": "skipped", "actual": "run by the controller", "required": True}
    report = {"checks": [{"check": "os_release", "status": "passed", "required": True}, placeholder]}
    why = f"not run on {A}: no NVIDIA GPU here: nvidia-smi is not installed"
    skipped = {(A, B): pair_result((A, B), {"skipped": why}, 8, PEAK, 0.7)}
    checks = node_checks([A, B, "lone"], [(A, B)], skipped, expected)
    verdict = evaluate(B, merge(report, checks[B]), ["os_release", "nccl_pair"])
    assert not verdict.accepted
    assert verdict.reason() == f"nccl_pair: required, but skipped: with {A}: {why}"
    assert checks["lone"]["status"] == "skipped"
    assert "no other node under acceptance" in checks["lone"]["actual"]

    passed = {(A, B): pair_result((A, B), {"rc": 0, "stdout": TWO_NODES}, 8, PEAK, 0.7)}
    checks = node_checks([A, B], [(A, B)], passed, expected)
    merged = merge(report, checks[A])
    assert [c for c in merged["checks"] if c["check"] == "nccl_pair"] == [{**checks[A], "required": True}]
    assert evaluate(A, merged, ["os_release", "nccl_pair"]).accepted
    assert checks[A]["actual"] == f"with {B}: 364 GB/s busbw at 8 GiB (91%)"
    assert checks[A]["pairs"][0]["ranks"] == 16

    failed = {
        (A, B): pair_result((A, B), {"rc": 0, "stdout": TWO_NODES}, 8, PEAK, 0.7),
        (B, "n9"): pair_result((B, "n9"), {"rc": 0, "stdout": TWO_NODES.replace(A, "n9")}, 8, PEAK, 0.95),
    }
    checks = node_checks([A, B, "n9"], [(A, B), (B, "n9")], failed, expected)
    assert checks[A]["status"] == "passed"
    assert checks[B]["status"] == "failed"  # one of its pairs was slow
    assert checks[B]["actual"].startswith("with n9: ")


@pytest.mark.gpu
def test_all_reduce_perf_output_of_this_machine_parses() -> None:
    """On a GPU machine with nccl-tests: all_reduce_perf over this node's GPUs, its real output parsed (the
    same parser reads the pair test's output, which adds ranks of a second host)."""
    exe = shutil.which("all_reduce_perf")
    if shutil.which("nvidia-smi") is None or exe is None:
        pytest.skip("needs an NVIDIA GPU and nccl-tests' all_reduce_perf (not on this machine)")
    gpus = len(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout.splitlines())
    done = subprocess.run(
        [exe, "-b", "64M", "-e", "256M", "-f", "2", "-g", str(gpus)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    run = parse_all_reduce(done.stdout)
    assert len(run.ranks) == gpus
    assert [r.size for r in run.rows] == [64 * 2**20, 128 * 2**20, 256 * 2**20]
    assert all(r.wrong == 0 for r in run.rows)
    assert run.avg_busbw is not None
    assert run.avg_busbw > 0


def test_bootstrap_pairs_the_dev_sites_nodes_and_reads_the_fetched_results(tmp_path: Path) -> None:
    """The acceptance phase's side: the dev site's four nodes paired, each pair's result read from the file the
    pair play fetches (<leader>--<partner>.json), and held to the site's own inter-node figure (the SKU's
    compute rails times its compute fabric's port speed)."""
    from types import SimpleNamespace

    from fjord.cli.bootstrap import _nccl_pair_checks, _nccl_pairs
    from fjord.sizing.site import size_site
    from fjord.spec.load import default_site, load_site

    site = load_site(default_site())
    size = size_site(site)
    hosts = size.hosts()
    run = SimpleNamespace(site=site, size=size, clusters={h.name: h.cluster for h in hosts})
    nodes = [h.name for h in hosts]
    pairs = _nccl_pairs(run, nodes)  # type: ignore[arg-type]
    assert len(pairs) == 2
    assert sorted(n for p in pairs for n in p) == sorted(nodes)
    (first, second) = pairs
    out = TWO_NODES.replace(A, first[0]).replace(B, first[1])
    (tmp_path / f"{first[0]}--{first[1]}.json").write_text(
        json.dumps({"rc": 0, "stdout": out, "stderr": ""}), encoding="utf-8"
    )
    (tmp_path / f"{second[0]}--{second[1]}.json").write_text(
        json.dumps({"skipped": f"not run on {second[0]}: not installed: mpirun"}), encoding="utf-8"
    )
    checks = _nccl_pair_checks(run, nodes, pairs, tmp_path)  # type: ignore[arg-type]
    cluster = site.cluster(hosts[0].cluster)
    peak = inter_node_gbps(cluster.gpu.compute_rails, site.fabric(cluster.compute_fabric).switch_model.port_gbps)
    assert checks[first[0]]["status"] == "passed"
    assert checks[first[0]]["expected"] == expected_text(peak, 0.7)
    assert checks[second[1]] | {"pairs": None} == {
        "check": "nccl_pair",
        "status": "skipped",
        "expected": expected_text(peak, 0.7),
        "actual": f"with {second[0]}: not run on {second[0]}: not installed: mpirun",
        "pairs": None,
    }
