"""Status of many BMCs: fjord's bounded concurrency versus one BMC at a time, in the same run.

Run `.venv/bin/python bench/bmc_status.py [--sizes 32,256] [--emulators 4] [--concurrency 32] [--json]`.
It prints and never asserts. BMCs are fake systems of sushy-emulator processes on 127.0.0.1 (the tests'
lab: basic auth, fresh state per run), spread evenly over --emulators processes; every node's status is
what `fjord bmc <stack> status` reads (connect, find the system, system + NICs), through
`fjord.adapters.redfish.run_bulk`. Rows: the same nodes read with `concurrency` = 1 (the baseline) and with
fjord's default concurrency (`bmc.concurrency`, 32): wall time, nodes per second, and the median time of
one node's status read once connected ("read p50 ms", which grows under concurrency as requests queue at
the emulators).

On a real site each BMC is its own slow little computer (hundreds of ms per request), so concurrency
pays off far more than here, where a few emulator processes on a 2-core machine serve every BMC.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.redfish_lab import PASSWORD, USERNAME, Emulator, fake_system

from fjord.adapters.redfish import Credentials, Options, RedfishNode, Target, run_bulk
from fjord.spec.models import Bmc


def measure(targets: list[Target], concurrency: int) -> dict[str, Any]:
    options = Options(retries=1, backoff_s=0.1, timeout_s=30, concurrency=concurrency)
    creds = Credentials(USERNAME, PASSWORD)
    per_node: list[float] = []

    def timed(node: RedfishNode) -> str | None:
        t = time.perf_counter()
        power = node.info().power
        per_node.append(time.perf_counter() - t)
        return power

    t0 = time.perf_counter()
    results = run_bulk(targets, creds, options, timed)
    wall = time.perf_counter() - t0
    failed = sum(not o.ok for o in results.values())
    per_node.sort()
    return {
        "nodes": len(targets),
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "nodes_per_s": round(len(targets) / wall, 1),
        "read_p50_ms": round(1000 * statistics.median(per_node), 1) if per_node else None,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,256", help="BMC counts to measure, comma-separated.")
    parser.add_argument("--emulators", type=int, default=4, help="sushy-emulator processes serving them.")
    parser.add_argument("--concurrency", type=int, default=Bmc().concurrency, help="fjord's concurrency.")
    parser.add_argument("--json", action="store_true", help="Print JSON rows.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    total = max(sizes)
    names = [f"b-su{i // 32:03d}-n{i % 32:03d}" for i in range(total)]
    groups = [names[k :: args.emulators] for k in range(args.emulators)]
    emulators = [Emulator([fake_system(n, names.index(n)) for n in g]) for g in groups if g]
    rows: list[dict[str, Any]] = []
    try:
        for em in emulators:
            em.start()
        where = {n: em for em in emulators for n in (s["name"] for s in em.systems)}
        # Warm up: each emulator's first requests (templates, state db) are not part of either figure.
        measure([Target(str(em.systems[0]["name"]), em.url, str(em.systems[0]["name"])) for em in emulators], 1)
        for size in sizes:
            targets = [Target(n, where[n].url, n) for n in names[:size]]
            used = len({where[n].url for n in names[:size]})
            for concurrency in (1, args.concurrency):
                row = measure(targets, concurrency)
                row["emulators"] = used
                row["mode"] = "one at a time (baseline)" if concurrency == 1 else "fjord"
                rows.append(row)
    finally:
        for em in emulators:
            em.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"fjord bmc_status: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, {len(emulators)} sushy-emulators")
    cols = ("nodes", "emulators", "mode", "concurrency", "wall_s", "nodes_per_s", "read_p50_ms", "failed")
    heads = ("BMCs", "emulators", "mode", "concurrency", "wall s", "nodes/s", "read p50 ms", "failed")
    widths = [max(len(h), *(len(str(r[c])) for r in rows)) for h, c in zip(heads, cols, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    for size in sizes:
        base, fast = (r for r in rows if r["nodes"] == size)
        print(f"  {size} BMCs: fjord x{base['wall_s'] / fast['wall_s']:.1f} faster than one at a time")


if __name__ == "__main__":
    main()
