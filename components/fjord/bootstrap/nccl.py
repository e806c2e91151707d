"""NCCL all-reduce between node pairs (acceptance check `nccl_pair`). Pure: which nodes are paired, the
nccl-tests output parsed, and each node's check from its pairs' results.

- Pairing (`pair_nodes`): within a cluster, nodes of one scalable unit are paired first. In a rail-optimised
  fabric a unit's nodes share its leaf switches, so a pair's all-reduce crosses every rail of both nodes (each
  NIC, cable and leaf port) but no spine. Within a unit the nodes are ordered by rack and folded (the first
  half against the second), so that a pair crosses racks where the unit has more than one. Nodes left over
  (a unit with an odd count) are paired across units (through the spines); a last odd node is paired with a
  node that already has a partner (it runs twice). A node alone in its cluster has no pair.
- The test (`playbooks/roles/gpu_validate/tasks/nccl_pair.yml`): nccl-tests `all_reduce_perf` over the two
  nodes' GPUs, one rank per GPU, started by `mpirun` on the pair's first node.
- The verdict (`pair_result`): the bus bandwidth at the largest message size against the catalog's
  inter-node figure, the node's compute rails times the fabric's port speed (8 x 400 Gb/s = 400 GB/s for an
  HGX H100 on NDR), times the spec's `nccl_pair_min_fraction`; any wrong value fails it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CHECK = "nccl_pair"
_PREFIX = re.compile(r"^\[\d+,\d+\]<std(?:out|err)>:")
"""OpenMPI's --tag-output prefix ([job,rank]<stdout>:), taken off each line before parsing."""
_RANK = re.compile(r"^#\s*Rank\s+(\d+)\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)\s+device\s+(\d+)\s+\[([^\]]*)\]\s*(.*)$")
_NUMBER = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Candidate:
    """A node that may be paired: the nodes under acceptance, with where they stand."""

    name: str
    cluster: str
    unit: int
    rack: str


def _fold(names: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    half = len(names) // 2
    pairs = [(names[i], names[i + half + len(names) % 2]) for i in range(half)]
    left = [names[half]] if len(names) % 2 else []
    return pairs, left


def pair_nodes(nodes: Iterable[Candidate]) -> list[tuple[str, str]]:
    """The pairs to test (see the module docstring): every node of a cluster with two or more candidates is
    in at least one pair; nodes of different clusters are never paired."""
    by_cluster: dict[str, dict[int, list[Candidate]]] = {}
    for n in nodes:
        by_cluster.setdefault(n.cluster, {}).setdefault(n.unit, []).append(n)
    pairs: list[tuple[str, str]] = []
    for units in by_cluster.values():
        leftovers: list[str] = []
        cluster_pairs: list[tuple[str, str]] = []
        for unit in sorted(units):
            ordered = [c.name for c in sorted(units[unit], key=lambda c: (c.rack, c.name))]
            got, left = _fold(ordered)
            cluster_pairs += got
            leftovers += left
        got, left = _fold(leftovers)
        cluster_pairs += got
        if left and (cluster_pairs or len(leftovers) > 1):
            lone = left[0]
            # A partner in the node's own unit if it has one (no spine in the way), else any paired node.
            home = next(u for u in units.values() if any(c.name == lone for c in u))
            same_unit = sorted(c.name for c in home if c.name != lone)
            partner = same_unit[0] if same_unit else cluster_pairs[0][0]
            cluster_pairs.append((lone, partner))
        pairs += cluster_pairs
    return pairs


@dataclass(frozen=True)
class Row:
    """One message size of all_reduce_perf's table (out-of-place figures, then in-place)."""

    size: int
    algbw: float
    busbw: float
    wrong: int
    busbw_in_place: float | None = None
    wrong_in_place: int | None = None


@dataclass
class AllReduce:
    """What one all_reduce_perf run printed."""

    version: str | None = None
    ranks: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    """rank -> (host, CUDA device, GPU name) from the "Using devices" lines."""
    rows: list[Row] = field(default_factory=list)
    avg_busbw: float | None = None
    out_of_bounds: int | None = None

    @property
    def hosts(self) -> list[str]:
        return sorted({h for h, _, _ in self.ranks.values()})

    @property
    def peak(self) -> Row | None:
        """The largest message size's row: the bandwidth the links sustain."""
        return max(self.rows, key=lambda r: r.size) if self.rows else None


def _wrong(token: str) -> int:
    return int(token) if _NUMBER.match(token) else 0  # 'N/A' when the data check is off (-c 0)


def parse_all_reduce(text: str) -> AllReduce:
    """Parse nccl-tests all_reduce_perf's output (plain or with mpirun's --tag-output prefixes)."""
    out = AllReduce()
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw).strip()
        if not line:
            continue
        if line.startswith("# nccl-tests version"):
            out.version = line.split("version", 1)[1].split()[0]
            continue
        m = _RANK.match(line)
        if m:
            out.ranks[int(m.group(1))] = (m.group(2), int(m.group(3)), m.group(5).strip())
            continue
        if line.startswith("# Avg bus bandwidth"):
            with contextlib.suppress(IndexError, ValueError):
                out.avg_busbw = float(line.split(":", 1)[1].split()[0])
            continue
        if line.startswith("# Out of bounds values"):
            with contextlib.suppress(IndexError, ValueError):
                out.out_of_bounds = int(line.split(":", 1)[1].split()[0])
            continue
        tokens = line.split()
        # size count type redop root time algbw busbw #wrong [time algbw busbw #wrong]
        if len(tokens) >= 9 and _NUMBER.match(tokens[0]) and _NUMBER.match(tokens[1]):
            try:
                row = Row(int(tokens[0]), float(tokens[6]), float(tokens[7]), _wrong(tokens[8]))
                if len(tokens) >= 13:
                    row = Row(row.size, row.algbw, row.busbw, row.wrong, float(tokens[11]), _wrong(tokens[12]))
            except ValueError:
                continue
            out.rows.append(row)
    return out


def inter_node_gbps(compute_rails: int, port_gbps: float) -> float:
    """The catalog's inter-node figure in GB/s: the node's compute NICs (one per rail) at the fabric's port
    speed, per direction."""
    return compute_rails * port_gbps / 8


@dataclass(frozen=True)
class PairResult:
    pair: tuple[str, str]
    status: str
    """passed | failed | skipped"""
    expected: str
    actual: str
    figures: dict[str, Any] = field(default_factory=dict)


def expected_text(peak_gbps: float, min_fraction: float) -> str:
    return (
        f">= {peak_gbps * min_fraction:.0f} GB/s busbw between the two nodes ({min_fraction:.0%} of {peak_gbps:g} GB/s)"
    )


def pair_result(
    pair: tuple[str, str],
    outcome: Mapping[str, Any] | None,
    gpus_per_node: int,
    peak_gbps: float,
    min_fraction: float,
) -> PairResult:
    """One pair's verdict from what the pair task recorded (`outcome`: {"skipped": reason} or {"rc", "stdout",
    "stderr"}; None when the task did not run)."""
    expected = expected_text(peak_gbps, min_fraction)
    if outcome is None:
        return PairResult(pair, "skipped", expected, f"the pair test did not run on {pair[0]} (no result)")
    if outcome.get("skipped"):
        return PairResult(pair, "skipped", expected, str(outcome["skipped"]))
    run = parse_all_reduce(str(outcome.get("stdout") or ""))
    peak = run.peak
    figures: dict[str, Any] = {
        "nccl_tests": run.version,
        "ranks": len(run.ranks),
        "hosts": run.hosts,
        "avg_busbw_gbps": run.avg_busbw,
        "sizes": [{"bytes": r.size, "busbw_gbps": r.busbw, "wrong": r.wrong} for r in run.rows],
    }
    tail = (str(outcome.get("stderr") or "") or str(outcome.get("stdout") or "")).strip()[-300:]
    if peak is None:
        rc = outcome.get("rc")
        return PairResult(pair, "failed", expected, f"all_reduce_perf printed no results (exit {rc}): {tail}", figures)
    problems: list[str] = []
    want_ranks = 2 * gpus_per_node
    if len(run.ranks) != want_ranks:
        problems.append(f"{len(run.ranks)} ranks, not {want_ranks}")
    if len(run.hosts) != 2:
        problems.append(f"ran on {', '.join(run.hosts) or 'no host'}, not on two nodes")
    wrong = sum(r.wrong + (r.wrong_in_place or 0) for r in run.rows) + (run.out_of_bounds or 0)
    if wrong:
        problems.append(f"{wrong} wrong values")
    if outcome.get("rc") not in (0, None):
        problems.append(f"exit {outcome.get('rc')}")
    figure = f"{peak.busbw:.0f} GB/s busbw at {peak.size / 2**30:g} GiB ({peak.busbw / peak_gbps:.0%})"
    ok = not problems and peak.busbw >= peak_gbps * min_fraction
    actual = figure if not problems else f"{figure}; " + "; ".join(problems)
    return PairResult(pair, "passed" if ok else "failed", expected, actual, figures)


def node_checks(
    candidates: Iterable[str],
    pairs: Sequence[tuple[str, str]],
    results: Mapping[tuple[str, str], PairResult],
    expected: str,
) -> dict[str, dict[str, Any]]:
    """Each node's `nccl_pair` check (the node script's report format) from its pairs: passed when every pair
    it is in passed; failed when one failed (naming the partner: the test cannot tell which node is slow);
    skipped when a pair was skipped, or the node has no partner."""
    checks: dict[str, dict[str, Any]] = {}
    for node in candidates:
        mine = [results[p] for p in pairs if node in p and p in results]
        if not mine:
            actual = "no other node under acceptance in its cluster to pair with (nodes in service are not borrowed)"
            checks[node] = {"check": CHECK, "status": "skipped", "expected": expected, "actual": actual}
            continue
        failed = [r for r in mine if r.status == "failed"]
        skipped = [r for r in mine if r.status == "skipped"]
        worst = failed or skipped or mine
        status = "failed" if failed else "skipped" if skipped else "passed"
        partner = next(x for x in worst[0].pair if x != node)
        checks[node] = {
            "check": CHECK,
            "status": status,
            "expected": worst[0].expected,
            "actual": f"with {partner}: {worst[0].actual}",
            "pairs": [{"pair": list(r.pair), "status": r.status, "actual": r.actual, **r.figures} for r in mine],
        }
    return checks


def merge(report: Any, check: Mapping[str, Any]) -> Any:
    """The node's report with its `nccl_pair` entry replaced by the controller's check (`required` kept)."""
    if not isinstance(report, dict) or not isinstance(report.get("checks"), list):
        return report
    entries = report["checks"]
    required = next(
        (bool(c.get("required")) for c in entries if isinstance(c, dict) and c.get("check") == CHECK), False
    )
    others = [c for c in entries if not (isinstance(c, dict) and c.get("check") == CHECK)]
    return {**report, "checks": [*others, {**check, "required": required}]}
