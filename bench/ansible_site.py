"""site.yml on the testbed with fjord's Ansible settings against ansible-core's stock settings.

Run as root: `.venv/bin/python bench/ansible_site.py [--hosts 4] [--repeat 3] [--json]`. It prints and never
asserts. With --repeat, the rounds alternate which profile goes first and the figures are medians.

Same hosts, same run: the testbed (tests/testbed.py) boots N fresh Debian 12 hosts once; each settings
profile gets freshly reset hosts (their overlay thrown away) and its own empty fact cache, then runs
site.yml twice: the first run (installs and configures everything from the local mirror) and a no-change
rerun. fjord: `AnsibleSettings()` (forks 50, pipelining, Mitogen's free strategy without its CPU pinning, JSON
fact cache with gathering smart, ControlPersist 600 s, strategy loop polling every 5 ms). Stock:
`AnsibleSettings.stock()` (forks 5, no pipelining, linear, facts gathered every play, ControlPersist 60 s,
polling every 1 ms).
Targets (information only): fjord's first run at least 2x faster than stock's, and its rerun under 40 % of
its first run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import testbed as tb  # noqa: E402
from tests.test_hosts_testbed import TESTBED_VARS, air_gapped_site  # noqa: E402

from fjord.adapters.ansible import AnsibleSettings, run_playbook  # noqa: E402
from fjord.hosts import build_inventory  # noqa: E402
from fjord.sizing.site import size_site  # noqa: E402
from fjord.spec.load import load_site  # noqa: E402


def _site(mirror_url: str, hosts: int) -> dict[str, Any]:
    """The testbed's air-gapped dev site, sized to `hosts` nodes (8 GPUs each)."""
    raw = air_gapped_site(mirror_url)
    raw["clusters"][0]["gpus"] = 8 * hosts
    return raw


def _profile(bed: tb.Testbed, settings: AnsibleSettings, playbook: str, hosts: int) -> dict[str, Any]:
    site = load_site(_site(bed.mirror_url, hosts))
    hv = {h: v | TESTBED_VARS for h, v in bed.host_vars().items()}
    inventory = build_inventory(site, size_site(site), host_vars=hv).data
    for host in bed.hosts:
        bed.reset(host)
    runs = [run_playbook(playbook, inventory, site="bench", settings=settings) for _ in range(2)]
    return {
        "first_s": runs[0].elapsed_s,
        "rerun_s": runs[1].elapsed_s,
        "first_ok": runs[0].ok,
        "rerun_changed": runs[1].changed,
        "problems": sorted(set(runs[0].failed_hosts + runs[0].unreachable_hosts + runs[1].failed_hosts)),
        "error": runs[0].error or runs[1].error,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4, help="testbed hosts (default 4)")
    parser.add_argument("--playbook", default="site.yml")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of both profiles, order alternating (medians)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = tb.unavailable_reason()
    if reason:
        print(f"ansible_site: cannot build the testbed here: {reason}", file=sys.stderr)
        return 1
    rounds: dict[str, list[dict[str, Any]]] = {"fjord": [], "stock": []}
    names = [n.name for n in size_site(load_site(_site("http://mirror.invalid/", args.hosts))).hosts()]
    with tempfile.TemporaryDirectory(prefix="fj3-bench-") as tmp, tb.testbed(names) as bed:
        for round_ in range(args.repeat):
            # A fresh state folder per round: a first run on fresh hosts starts with an empty fact cache.
            profiles = [
                ("fjord", AnsibleSettings(state_dir=Path(tmp) / f"fjord-{round_}")),
                ("stock", AnsibleSettings.stock()),
            ]
            for name, settings in profiles if round_ % 2 == 0 else profiles[::-1]:
                rounds[name].append(_profile(bed, settings, args.playbook, args.hosts))
    results = {
        name: {
            "first_s": statistics.median([r["first_s"] for r in runs]),
            "rerun_s": statistics.median([r["rerun_s"] for r in runs]),
            "rerun_changed": max(r["rerun_changed"] for r in runs),
            "problems": sorted({p for r in runs for p in r["problems"]}),
            "error": next((r["error"] for r in runs if r["error"]), ""),
            "rounds": [{"first_s": r["first_s"], "rerun_s": r["rerun_s"]} for r in runs],
        }
        for name, runs in rounds.items()
    }
    if args.json:
        print(json.dumps({"hosts": args.hosts, "cpus": os.cpu_count(), "results": results}, indent=2))
        return 0
    fj, st = results["fjord"], results["stock"]
    print(
        f"ansible_site: {args.playbook} on {args.hosts} testbed hosts, {os.cpu_count()} CPUs, same run, "
        f"{args.repeat} round(s), medians"
    )
    print(
        f"{'settings':<8}  {'first run s':>11}  {'rerun s':>8}  {'rerun/first':>11}  {'rerun changed':>13}  "
        "rounds (first/rerun s)"
    )
    for name, r in results.items():
        each = ", ".join(f"{x['first_s']:.1f}/{x['rerun_s']:.1f}" for x in r["rounds"])
        print(
            f"{name:<8}  {r['first_s']:>11.1f}  {r['rerun_s']:>8.1f}  {r['rerun_s'] / r['first_s']:>10.0%}  "
            f"{r['rerun_changed']:>13}  {each}  {', '.join(r['problems'])}"
        )
    first_x, rerun_x = st["first_s"] / fj["first_s"], st["rerun_s"] / fj["rerun_s"]
    share = fj["rerun_s"] / fj["first_s"]
    print(f"stock/fjord: first run {first_x:.2f}x, rerun {rerun_x:.2f}x  (target >= 2x: {_meets(first_x >= 2)})")
    print(f"fjord rerun / first run: {share:.0%}  (target < 40 %: {_meets(share < 0.4)})")
    for r in results.values():
        if r["error"]:
            print(f"error: {r['error']}", file=sys.stderr)
    return 0


def _meets(ok: bool) -> str:
    return "meets" if ok else "misses"


if __name__ == "__main__":
    sys.exit(main())
