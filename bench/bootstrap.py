"""`fjord bootstrap` of the dev site: wall time per phase, beside a rerun that has nothing to do.

Run as root: `.venv/bin/python bench/bootstrap.py [--batch-size 64] [--json]`. It prints and never asserts.

Same run, same machine: a throwaway Ceph RGW (tests/ceph_cluster.py), sushy-emulator BMCs with the dev site's
four nodes powered off (tests/redfish_lab.py) and four fresh testbed hosts (tests/testbed.py). The first
`fjord bootstrap` takes them from powered off to in service (GPU checks not required: the hosts have no GPU);
the second is a new run over the same site, which finds every node in service and has nothing to do (the
baseline: what the phases cost with no node to work on). Target (information only): the first run under 5
minutes on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import testbed as tb  # noqa: E402
from tests.ceph_cluster import CephCluster, missing_binaries  # noqa: E402
from tests.redfish_lab import PASSWORD, USERNAME, Emulator, fake_system  # noqa: E402
from tests.test_bootstrap_e2e import GPU_CHECKS_OFF, PASSPHRASE, write_project  # noqa: E402
from tests.test_hosts_testbed import TESTBED_VARS, air_gapped_site  # noqa: E402

from fjord.bootstrap.plan import PHASE_NAMES  # noqa: E402
from fjord.engine import EngineUnavailable, engine_bin  # noqa: E402
from fjord.sizing.site import size_site  # noqa: E402
from fjord.spec.load import default_site, load_site  # noqa: E402

TARGET_S = 300.0


def _bootstrap(
    folder: Path, env: dict[str, str], host_vars: Path, batch: int, engine: bool = True
) -> tuple[float, dict[str, Any]]:
    argv = [
        str(Path(sys.executable).parent / "fjord"),
        "bootstrap",
        "lab",
        "--stacks-dir",
        str(folder / "stacks"),
        "--host-vars",
        str(host_vars),
        "--batch-size",
        str(batch),
        "--json",
        *([] if engine else ["--no-engine"]),
    ]
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"fjord bootstrap exited {done.returncode}:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return wall, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch-size", type=int, default=64, help="nodes per site.yml run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--no-engine", action="store_true", help="bare metal without the Pulumi engine (fjord bootstrap --no-engine)"
    )
    args = parser.parse_args()
    reason = tb.unavailable_reason() or (
        f"Ceph is not installed ({', '.join(missing_binaries())})" if missing_binaries() else None
    )
    try:
        if not args.no_engine:
            engine_bin()
    except EngineUnavailable as exc:
        reason = reason or str(exc)
    if reason:
        print(f"bootstrap: cannot run here: {reason}", file=sys.stderr)
        return 1
    nodes = [n.name for n in size_site(load_site(default_site())).hosts()]
    with tempfile.TemporaryDirectory(prefix="fjord-bench-bootstrap-") as tmp, CephCluster(memstore_gib=2) as ceph:
        folder = Path(tmp)
        emulator = Emulator([fake_system(n, i, power="Off") for i, n in enumerate(nodes)]).start()
        try:
            user = ceph.create_user("fjord-admin")
            with tb.testbed(nodes) as bed:
                site = air_gapped_site(bed.mirror_url)
                site["bmc"] = {"scheme": "http", "endpoint": emulator.url, "username": USERNAME, "power_timeout_s": 60}
                site["object_store"] = {"endpoint": ceph.endpoint, "jurisdiction": "EEA"}
                site["clusters"][0]["acceptance"] = GPU_CHECKS_OFF
                write_project(folder, site)  # Pulumi.yaml, stacks/Pulumi.lab.yaml and its allocation record
                hv = folder / "host-vars.json"
                hv.write_text(json.dumps({h: v | TESTBED_VARS for h, v in bed.host_vars().items()}))
                env = {
                    **os.environ,
                    "FJORD_S3_ACCESS_KEY_ID": user.access_key,
                    "FJORD_S3_SECRET_ACCESS_KEY": user.secret_key,
                    "FJORD_BMC_PASSWORD": PASSWORD,
                    # the bare-metal phase's engine: its home here, the stack's secrets passphrase
                    "PULUMI_HOME": str(folder / ".pulumi-home"),
                    "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                    "PULUMI_SKIP_UPDATE_CHECK": "true",
                }
                env.pop("PULUMI_BACKEND_URL", None)
                first_wall, first = _bootstrap(folder, env, hv, args.batch_size, not args.no_engine)
                rerun_wall, rerun = _bootstrap(folder, env, hv, args.batch_size, not args.no_engine)
        finally:
            emulator.stop()
    rows = [
        (p, first["phases"][p]["seconds"] or 0.0, rerun["phases"][p]["seconds"] or 0.0, rerun["phases"][p]["detail"])
        for p in PHASE_NAMES
    ]
    if args.json:
        doc = {
            "cpus": os.cpu_count(),
            "nodes": len(nodes),
            "first": {"wall_s": first_wall, **{p: f for p, f, _, _ in rows}},
            "rerun": {"wall_s": rerun_wall, **{p: r for p, _, r, _ in rows}},
        }
        print(json.dumps(doc, indent=2))
        return 0
    how = "directly (--no-engine)" if args.no_engine else "through the Pulumi engine"
    print(f"bootstrap: dev site, {len(nodes)} nodes, {os.cpu_count()} CPUs, bare metal {how}; seconds per phase")
    print(f"{'phase':<12}{'first run':>11}{'rerun':>9}  rerun's detail")
    for p, f, r, detail in rows:
        print(f"{p:<12}{f:>11.1f}{r:>9.1f}  {detail[:70]}")
    print(f"{'wall':<12}{first_wall:>11.1f}{rerun_wall:>9.1f}  (the fjord process, start to exit)")
    verdict = "meets" if first_wall < TARGET_S else "misses"
    print(f"first run {first_wall:.0f} s against the target of {TARGET_S:.0f} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
