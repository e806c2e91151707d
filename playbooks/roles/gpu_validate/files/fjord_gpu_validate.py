#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""fjord node acceptance: check a GPU node against the site spec and write one JSON report.

Shipped and run by the gpu_validate role (python3, standard library only). Checks:
- inventory: GPU model and count, driver branch, persistence mode, ECC errors, PCIe link (current vs max),
  NVLink link state, all from `nvidia-smi` queries;
- DCGM diagnostics at the requested level when `dcgmi` is present;
- micro-benchmarks per GPU against the catalog's peaks: device-to-device copy bandwidth (bytes read plus
  written, as HBM bandwidth is quoted) and dense BF16 GEMM throughput. They need PyTorch with CUDA on the
  host (`import torch`); without it they are reported as skipped with that reason;
- NCCL all-reduce across the node's GPUs (nccl-tests `all_reduce_perf`) against the NVLink bandwidth, and
  RDMA write bandwidth per compute NIC (perftest `ib_write_bw`, loopback) against the fabric's port speed,
  where those tools are installed; the pair test between nodes is run by the controller, not here;
- the node's OS release against the spec's.
The gate: `--required` lists the checks that must pass. A required check that failed, or that was skipped
(no GPU, no PyTorch, a tool missing), fails the node; the others are recorded and do not decide.
Exit status: 0 when every required check passed, 1 when one did not, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

QUERY = [
    "index",
    "name",
    "pci.bus_id",
    "driver_version",
    "persistence_mode",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.volatile.total",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
    "memory.total",
]


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def as_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def check(name: str, ok: bool | None, expected: object, actual: object, detail: str = "") -> dict[str, Any]:
    status = "skipped" if ok is None else ("passed" if ok else "failed")
    return {"check": name, "status": status, "expected": expected, "actual": actual, "detail": detail}


NO_GPU = "no NVIDIA GPU here: nvidia-smi is not installed"
GPU_CHECKS = (
    "gpu_count",
    "gpu_model",
    "driver_branch",
    "persistence_mode",
    "ecc_uncorrected",
    "pcie_link_width",
    "nvlink",
    "dcgm_diag",
    "hbm_bandwidth",
    "bf16_gemm",
    "nccl_node",
)


DEFAULT_REQUIRED = (
    "gpu_count",
    "gpu_model",
    "driver_branch",
    "persistence_mode",
    "ecc_uncorrected",
    "nvlink",
    "pcie_link_width",
    "dcgm_diag",
    "bf16_gemm",
    "hbm_bandwidth",
)
"""The spec's default gate (clusters[].acceptance), less os_release, which needs --os."""


def os_release() -> str:
    """The node's OS as the spec names it: `<ID>-<VERSION_ID>`, e.g. debian-12 or ubuntu-22.04."""
    fields: dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                fields[key] = value.strip('"')
    except OSError:
        return "unknown"
    return f"{fields.get('ID', 'unknown')}-{fields.get('VERSION_ID', '')}"


def tool_versions() -> dict[str, Any]:
    """The versions of what measured the node: evidence for the acceptance record."""
    versions: dict[str, Any] = {"python": sys.version.split()[0], "kernel": os.uname().release, "os": os_release()}
    if shutil.which("nvidia-smi"):
        out = run(["nvidia-smi", "--query-gpu=driver_version,vbios_version", "--format=csv,noheader"], 60)
        rows = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
        versions["nvidia_driver_vbios"] = rows
    if shutil.which("dcgmi"):
        versions["dcgmi"] = run(["dcgmi", "--version"], 60).stdout.strip().splitlines()[:2]
    for tool in ("all_reduce_perf", "ib_write_bw"):
        versions[tool] = shutil.which(tool)
    try:
        import torch  # type: ignore[import-not-found]

        versions["torch"] = torch.__version__
        versions["cuda"] = torch.version.cuda
    except ImportError:
        versions["torch"] = None
    return versions


def nccl_check(args: argparse.Namespace, count: int) -> dict[str, Any]:
    """NCCL all-reduce over the node's GPUs: the bus bandwidth of 1 GiB against NVLink per direction."""
    peak = args.nvlink_peak_gbps / 2
    want = peak * args.nccl_node_min_fraction
    expected = f">= {want:.0f} GB/s busbw ({args.nccl_node_min_fraction:.0%} of {peak:g} GB/s per direction)"
    exe = shutil.which("all_reduce_perf")
    if exe is None:
        return check("nccl_node", None, expected, "nccl-tests all_reduce_perf is not installed")
    out = run([exe, "-b", "1G", "-e", "1G", "-f", "2", "-g", str(count)], 600)
    busbw = None
    for line in out.stdout.splitlines():
        if "Avg bus bandwidth" in line:
            busbw = float(line.rsplit(":", 1)[1])
    if out.returncode != 0 or busbw is None:
        return check("nccl_node", False, expected, (out.stderr or out.stdout).strip()[-400:])
    return check("nccl_node", busbw >= want, expected, f"{busbw:.0f} GB/s ({busbw / peak:.0%})")


def ib_check(args: argparse.Namespace) -> dict[str, Any]:
    """RDMA write bandwidth of every InfiniBand/RoCE device, loopback, against the fabric's port speed."""
    peak = args.ib_port_gbps / 8
    want = peak * args.ib_min_fraction
    expected = f">= {want:.1f} GB/s per NIC ({args.ib_min_fraction:.0%} of {peak:g} GB/s)"
    exe = shutil.which("ib_write_bw")
    devices = sorted(os.listdir("/sys/class/infiniband")) if os.path.isdir("/sys/class/infiniband") else []
    if exe is None or not devices:
        what = "perftest ib_write_bw is not installed" if exe is None else "no RDMA device in /sys/class/infiniband"
        return check("ib_bandwidth", None, expected, what)
    figures: dict[str, float | str] = {}
    for dev in devices:
        server = subprocess.Popen([exe, "-d", dev, "--report_gbits", "-F"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        client = run([exe, "-d", dev, "--report_gbits", "-F", "localhost"], 120)
        server.wait(timeout=60)
        rows = [line.split() for line in client.stdout.splitlines() if line.strip()[:1].isdigit()]
        figures[dev] = round(float(rows[-1][3]) / 8, 2) if rows and len(rows[-1]) > 3 else client.stderr.strip()[-200:]
    numbers = [v for v in figures.values() if isinstance(v, float)]
    ok = len(numbers) == len(devices) and min(numbers) >= want
    return check("ib_bandwidth", ok, expected, figures, "loopback through each HCA; the link is the pair test's")


def query_gpus() -> list[dict[str, str]]:
    out = run(["nvidia-smi", f"--query-gpu={','.join(QUERY)}", "--format=csv,noheader,nounits"], 60)
    if out.returncode != 0:
        raise RuntimeError(f"nvidia-smi failed: {out.stderr.strip() or out.stdout.strip()}")
    return [dict(zip(QUERY, (c.strip() for c in line.split(",")), strict=True)) for line in out.stdout.splitlines()]


def nvlink_state() -> dict[int, dict[str, int]]:
    """Active and inactive NVLink links per GPU index, from `nvidia-smi nvlink --status`."""
    out = run(["nvidia-smi", "nvlink", "--status"], 60)
    links: dict[int, dict[str, int]] = {}
    gpu = -1
    for line in out.stdout.splitlines():
        text = line.strip()
        if text.startswith("GPU "):
            gpu = int(text.split()[1].rstrip(":"))
            links[gpu] = {"active": 0, "inactive": 0}
        elif text.startswith("Link ") and gpu >= 0:
            links[gpu]["inactive" if "inactive" in text.lower() else "active"] += 1
    return links


def inventory_checks(args: argparse.Namespace, gpus: list[dict[str, str]]) -> list[dict[str, Any]]:
    checks = [
        check("gpu_count", len(gpus) == args.expected_count, args.expected_count, len(gpus)),
        check(
            "gpu_model",
            all(args.expected_model.lower() in g["name"].lower() for g in gpus) if gpus else False,
            f"name contains {args.expected_model!r}",
            sorted({g["name"] for g in gpus}),
        ),
    ]
    drivers = sorted({g["driver_version"] for g in gpus})
    checks.append(
        check(
            "driver_branch",
            bool(drivers) and all(d.split(".")[0] == str(args.driver_branch) for d in drivers),
            f"{args.driver_branch}.x",
            drivers,
        )
    )
    not_persistent = [g["index"] for g in gpus if g["persistence_mode"].lower() != "enabled"]
    checks.append(check("persistence_mode", not not_persistent, "Enabled on every GPU", {"off": not_persistent}))
    ecc_bad = {
        g["index"]: g["ecc.errors.uncorrected.volatile.total"]
        for g in gpus
        if (as_int(g["ecc.errors.uncorrected.volatile.total"]) or 0) > 0
    }
    checks.append(check("ecc_uncorrected", not ecc_bad, 0, ecc_bad or 0, "volatile uncorrected ECC errors"))
    degraded = {
        g["index"]: f"gen {g['pcie.link.gen.current']}/{g['pcie.link.gen.max']} x{g['pcie.link.width.current']}"
        f"/x{g['pcie.link.width.max']}"
        for g in gpus
        if g["pcie.link.width.current"] != g["pcie.link.width.max"]
    }
    # An idle GPU drops its PCIe generation to save power, so only the link width is held to its maximum.
    checks.append(check("pcie_link_width", not degraded, "current width = max width", degraded or "all at max"))
    links = nvlink_state()
    if not any(v["active"] + v["inactive"] for v in links.values()):
        checks.append(check("nvlink", None, "all links active", "no NVLink on this system"))
    else:
        down = {i: v["inactive"] for i, v in links.items() if v["inactive"]}
        counts = sorted({v["active"] for v in links.values()})
        checks.append(
            check(
                "nvlink",
                not down and len(counts) == 1,
                "all links active, same count per GPU",
                {"active_per_gpu": counts, "inactive": down},
            )
        )
    return checks


def failed_tests(node: object, name: str = "") -> set[str]:
    """Names of the tests with a 'Fail' status anywhere in dcgmi's JSON (its layout differs between releases)."""
    found: set[str] = set()
    if isinstance(node, dict):
        name = str(node.get("name") or node.get("test_name") or name)
        if str(node.get("status", "")).lower() == "fail":
            found.add(name or "?")
        for value in node.values():
            found |= failed_tests(value, name)
    elif isinstance(node, list):
        for value in node:
            found |= failed_tests(value, name)
    return found


def dcgm_check(level: int) -> dict[str, Any]:
    if level == 0:
        return check("dcgm_diag", None, "level 0", "not requested")
    if shutil.which("dcgmi") is None:
        return check("dcgm_diag", None, f"level {level}", "dcgmi not installed")
    started = time.monotonic()
    out = run(["dcgmi", "diag", "-r", str(level), "-j"], 3600)
    try:
        result = json.loads(out.stdout)
    except json.JSONDecodeError:
        return check("dcgm_diag", False, f"level {level} passes", out.stdout.strip()[-400:] or out.stderr.strip())
    failures = sorted(failed_tests(result))
    ok = out.returncode == 0 and not failures
    return check(
        "dcgm_diag",
        ok,
        f"level {level} passes",
        {"failed_tests": failures, "rc": out.returncode},
        f"{time.monotonic() - started:.0f} s",
    )


def benchmarks(args: argparse.Namespace, count: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        reason = "PyTorch is not installed on the host (python3 -c 'import torch' fails)"
        return [check("hbm_bandwidth", None, "", reason), check("bf16_gemm", None, "", reason)], {}
    if not torch.cuda.is_available():
        reason = "PyTorch has no CUDA device"
        return [check("hbm_bandwidth", None, "", reason), check("bf16_gemm", None, "", reason)], {}
    figures: dict[str, Any] = {"per_gpu": []}
    for index in range(count):
        device = torch.device("cuda", index)
        figures["per_gpu"].append({"gpu": index, "hbm_tbps": hbm(torch, device), "bf16_tflops": gemm(torch, device)})
    hbm_min = args.hbm_peak_tbps * args.hbm_min_fraction
    gemm_min = args.bf16_peak_tflops * args.gemm_min_fraction
    worst_hbm = min(g["hbm_tbps"] for g in figures["per_gpu"])
    worst_gemm = min(g["bf16_tflops"] for g in figures["per_gpu"])
    figures.update(
        {"hbm_peak_tbps": args.hbm_peak_tbps, "bf16_peak_tflops": args.bf16_peak_tflops, "torch": torch.__version__}
    )
    return [
        check(
            "hbm_bandwidth",
            worst_hbm >= hbm_min,
            f">= {hbm_min:.2f} TB/s ({args.hbm_min_fraction:.0%} of {args.hbm_peak_tbps} TB/s)",
            f"{worst_hbm:.2f} TB/s (worst GPU, {worst_hbm / args.hbm_peak_tbps:.0%})",
        ),
        check(
            "bf16_gemm",
            worst_gemm >= gemm_min,
            f">= {gemm_min:.0f} TFLOP/s ({args.gemm_min_fraction:.0%} of {args.bf16_peak_tflops} TFLOP/s)",
            f"{worst_gemm:.0f} TFLOP/s (worst GPU, {worst_gemm / args.bf16_peak_tflops:.0%})",
        ),
    ], figures


def timed(torch: Any, device: Any, work: Any, repeats: int) -> float:
    """Seconds per call of work() on device, from CUDA events, after a warm-up."""
    with torch.cuda.device(device):
        for _ in range(3):
            work()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeats):
            work()
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end)) / 1000 / repeats


def hbm(torch: Any, device: Any) -> float:
    """Device-to-device copy of 2 GiB: TB/s counting bytes read plus bytes written."""
    size = 2 << 30
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = timed(torch, device, lambda: dst.copy_(src), 20)
    return round(2 * size / seconds / 1e12, 3)


def gemm(torch: Any, device: Any) -> float:
    """Dense BF16 matrix multiply, 8192^3: TFLOP/s at 2*n^3 operations per multiply."""
    n = 8192
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    c = torch.empty(n, n, dtype=torch.bfloat16, device=device)
    seconds = timed(torch, device, lambda: torch.matmul(a, b, out=c), 50)
    return round(2 * n**3 / seconds / 1e12, 1)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--expected-model", required=True)
    p.add_argument("--expected-count", type=int, required=True)
    p.add_argument("--driver-branch", type=int, required=True)
    p.add_argument("--dcgm-level", type=int, choices=range(5), default=1)
    p.add_argument("--bf16-peak-tflops", type=float, required=True)
    p.add_argument("--hbm-peak-tbps", type=float, required=True)
    p.add_argument("--gemm-min-fraction", type=float, default=0.7)
    p.add_argument("--hbm-min-fraction", type=float, default=0.8)
    p.add_argument("--nvlink-peak-gbps", type=float, default=900)
    p.add_argument("--nccl-node-min-fraction", type=float, default=0.7)
    p.add_argument("--ib-port-gbps", type=float, default=400)
    p.add_argument("--ib-min-fraction", type=float, default=0.9)
    p.add_argument("--os", default="", help="the OS release the spec names, e.g. debian-12")
    p.add_argument(
        "--required",
        default=",".join(DEFAULT_REQUIRED),
        help="comma-separated checks that must pass (the acceptance gate); default: the spec's default gate",
    )
    p.add_argument("--no-benchmarks", action="store_true")
    p.add_argument("--labels", default="{}", help="JSON object copied into the report (site, cluster, rack, ...)")
    p.add_argument("--out", required=True, help="where the JSON report is written")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    required = [c for c in args.required.split(",") if c]
    report: dict[str, Any] = {
        "node": socket.gethostname(),
        "labels": json.loads(args.labels),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "required": required,
        "tools": tool_versions(),
        "catalog": {
            "bf16_peak_tflops": args.bf16_peak_tflops,
            "hbm_peak_tbps": args.hbm_peak_tbps,
            "nvlink_peak_gbps": args.nvlink_peak_gbps,
            "ib_port_gbps": args.ib_port_gbps,
        },
    }
    checks: list[dict[str, Any]] = []
    if args.os:
        actual = os_release()
        checks.append(check("os_release", actual == args.os, args.os, actual))
    gpus: list[dict[str, str]] = []
    if shutil.which("nvidia-smi") is None:
        checks += [check(name, None, "", NO_GPU) for name in GPU_CHECKS]
    else:
        try:
            gpus = query_gpus()
            checks += inventory_checks(args, gpus)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            checks.append(check("nvidia_smi", False, "nvidia-smi answers", str(exc)))
            checks += [check(name, None, "", f"nvidia-smi failed: {exc}") for name in GPU_CHECKS]
    report["gpus"] = gpus
    if gpus:
        checks.append(dcgm_check(args.dcgm_level))
        if args.no_benchmarks:
            checks += [check(n, None, "", "benchmarks switched off") for n in ("hbm_bandwidth", "bf16_gemm")]
        else:
            bench_checks, figures = benchmarks(args, len(gpus))
            checks += bench_checks
            report["benchmarks"] = figures
        checks.append(nccl_check(args, len(gpus)))
    checks.append(ib_check(args))
    checks.append(check("nccl_pair", None, "", "run by the controller across node pairs, not on one node"))
    for c in checks:
        c["required"] = c["check"] in required
    present = {c["check"] for c in checks}
    checks += [
        {**check(name, None, "", "this script has no such check"), "required": True}
        for name in required
        if name not in present
    ]
    report["checks"] = checks
    blocking = [c["check"] for c in checks if c["required"] and c["status"] != "passed"]
    failed = [c["check"] for c in checks if c["status"] == "failed"]
    report["status"] = "failed" if blocking or (not required and failed) else "passed"
    report["blocking"] = blocking
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(json.dumps({"status": report["status"], "blocking": blocking, "failed": failed}))
    return 0 if report["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
