"""Upload and download throughput of artifact-sized objects against a local Ceph RGW, fjord vs boto3 defaults.

Run `.venv/bin/python bench/s3_transfer.py [--sizes 1,16,128,1024] [--repeat N] [--json]` (sizes in MiB).
It starts a throwaway single-node Ceph (tests/ceph_cluster.py: memstore OSD, so every object lives in RAM)
and stops it at the end; it prints and never asserts.

Each row is one object size and direction, median MB/s (10^6 bytes/s) of --repeat runs (one run for 512 MiB
and over), both clients in
the same run against the same RGW, alternating:
- fjord: `ObjectStore.put_file` / `get_file` with fjord's `TransferSettings` (16 MiB parts, 4 threads,
  Content-MD5 on every request, checked by RGW), plus the content SHA-256 computed before the upload (stored
  as metadata) and checked after the download.
- fjord settings only: s3transfer with fjord's part size, threads and retries but boto3's default CRC32
  instead of fjord's checksums: what the transfer settings alone give, and what fjord's integrity costs.
- boto3 defaults: `client.upload_file` / `download_file` with boto3's defaults (8 MiB parts, 10 threads,
  CRC32 flexible checksums, which this RGW release ignores), path-style addressing.
Every object is deleted after its measurement (memstore holds them in RAM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from tests.ceph_cluster import CephCluster  # noqa: E402

from fjord.adapters.s3 import ObjectStore, S3Credentials, TransferSettings  # noqa: E402

MiB = 1 << 20


def timed(fn: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(sizes_mib: list[int], repeat: int) -> dict[str, Any]:
    biggest = max(sizes_mib)
    # Room for a few objects of the largest size in memstore (deleted data is freed after seconds), plus RGW's pools.
    cluster = CephCluster(memstore_gib=max(2, 3 * biggest // 1024 + 2))
    rows: list[dict[str, Any]] = []
    with cluster, tempfile.TemporaryDirectory(prefix="fjord-i5-bench-") as tmp:
        user = cluster.create_user("bench")
        creds = S3Credentials(user.access_key, user.secret_key)
        fjord = ObjectStore(cluster.endpoint, creds, settings=TransferSettings())
        crc = TransferSettings(checksum="crc32")
        settings_only: Any = ObjectStore(cluster.endpoint, creds, settings=crc).client
        plain: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=cluster.endpoint,
            aws_access_key_id=user.access_key,
            aws_secret_access_key=user.secret_key,
            region_name="default",
            config=Config(s3={"addressing_style": "path"}),
        )
        bucket = "bench-transfer"
        fjord.ensure_bucket(bucket)
        # Warm-up, not measured: RGW creates its data pools on the first write and first multipart upload.
        warm = Path(tmp, "warm")
        warm.write_bytes(os.urandom(40 * MiB))
        for key, path in (("warm-small", Path(__file__)), ("warm-multipart", warm)):
            fjord.put_file(bucket, key, path)
            plain.upload_file(str(path), bucket, key)
            fjord.client.delete_object(Bucket=bucket, Key=key)
        warm.unlink()
        for size in sizes_mib:
            src, back = Path(tmp, f"obj-{size}"), Path(tmp, f"back-{size}")
            with src.open("wb") as f:
                for _ in range(size):
                    f.write(os.urandom(MiB))
            times: dict[str, list[float]] = {
                f"{c} {d}": [] for c in ("fjord", "settings", "boto3") for d in ("up", "down")
            }
            for _ in range(1 if size >= 512 else repeat):
                times["fjord up"].append(timed(fjord.put_file, bucket, "f", src))
                times["fjord down"].append(timed(fjord.get_file, bucket, "f", back))
                fjord.client.delete_object(Bucket=bucket, Key="f")
                times["settings up"].append(
                    timed(settings_only.upload_file, str(src), bucket, "s", None, None, crc.transfer_config())
                )
                times["settings down"].append(
                    timed(settings_only.download_file, bucket, "s", str(back), None, None, crc.transfer_config())
                )
                settings_only.delete_object(Bucket=bucket, Key="s")
                times["boto3 up"].append(timed(plain.upload_file, str(src), bucket, "b"))
                times["boto3 down"].append(timed(plain.download_file, bucket, "b", str(back)))
                plain.delete_object(Bucket=bucket, Key="b")
                back.unlink()
            src.unlink()
            for direction in ("up", "down"):
                f_s = statistics.median(times[f"fjord {direction}"])
                s_s = statistics.median(times[f"settings {direction}"])
                b_s = statistics.median(times[f"boto3 {direction}"])
                rows.append(
                    {
                        "size_mib": size,
                        "direction": "upload" if direction == "up" else "download",
                        "fjord_mb_s": round(size * MiB / f_s / 1e6, 1),
                        "settings_only_mb_s": round(size * MiB / s_s / 1e6, 1),
                        "boto3_mb_s": round(size * MiB / b_s / 1e6, 1),
                        "ratio": round(b_s / f_s, 2),
                    }
                )
        fjord.delete_all(bucket)
    return {
        "machine": f"{os.cpu_count()} CPUs, python {platform.python_version()}, boto3 {boto3.__version__}",
        "repeat": repeat,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,16,128,1024", help="object sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (512 MiB and over: once)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result = run(sizes, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"fjord s3_transfer: local Ceph RGW (memstore), {result['machine']}, median of {result['repeat']} runs")
    head = (
        f"{'object':>8}  {'direction':<9}  {'fjord MB/s':>10}  {'fjord settings only':>19}  {'boto3 defaults MB/s':>19}"
        f"  {'fjord/boto3':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        size = f"{r['size_mib']} MiB" if r["size_mib"] < 1024 else f"{r['size_mib'] // 1024} GiB"
        print(
            f"{size:>8}  {r['direction']:<9}  {r['fjord_mb_s']:>10.1f}  {r['settings_only_mb_s']:>19.1f}"
            f"  {r['boto3_mb_s']:>19.1f}  {r['ratio']:>11.2f}"
        )


if __name__ == "__main__":
    main()
