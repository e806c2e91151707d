"""How long narvik's Slurm configuration takes to generate, beside sizing the site alone (its baseline).

Run `.venv/bin/python bench/slurm_conf.py [--stack narvik] [--repeat N] [--json]`. It prints and never asserts.

Rows, each the median of --repeat runs in this process (the stack file is read and validated once, before):
- `size_site` (baseline): sizing the whole site, which every fjord command that looks at hosts pays first;
- `slurm.conf + topology.conf`: `slurm_clusters` plus rendering slurm.conf and topology.conf of every Slurm
  cluster of the site (narvik: gb200-b, 6,300 compute trays in 350 NVL72 racks);
- `size_site + slurm`: both, what `fjord size` adds up to for the Slurm view.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fjord.hosts.slurm import slurm_clusters
from fjord.sizing.site import SiteSize, size_site
from fjord.spec.load import load_site, read_stack
from fjord.spec.models import Site

ROOT = Path(__file__).resolve().parents[1]


def generate(site: Site, size: SiteSize) -> dict[str, int]:
    """Every Slurm cluster's slurm.conf and topology.conf; returns their sizes in lines, per cluster."""
    lines: dict[str, int] = {}
    for cluster in slurm_clusters(site, size):
        text = cluster.slurm_conf() + cluster.topology_conf()
        lines[cluster.name] = text.count("\n")
    return lines


def _median_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="narvik")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = read_stack(args.stack, ROOT / "stacks")
    site = load_site(config.site, args.stack)
    size = size_site(site)
    lines = generate(site, size)
    rows: dict[str, Any] = {
        "size_site (baseline)": _median_ms(lambda: size_site(site), args.repeat),
        "slurm.conf + topology.conf": _median_ms(lambda: generate(site, size), args.repeat),
        "size_site + slurm": _median_ms(lambda: generate(site, size_site(site)), args.repeat),
    }
    if args.json:
        print(json.dumps({"stack": args.stack, "clusters": lines, "ms": rows}, indent=2))
        return
    print(f"{args.stack}: Slurm clusters {', '.join(f'{k} ({v:,} lines)' for k, v in lines.items())}")
    print(f"median of {args.repeat} runs, ms:")
    for name, ms in rows.items():
        print(f"  {name:<28} {ms:9.1f}")


if __name__ == "__main__":
    main()
