"""A throwaway single-node Ceph with an S3 gateway (RGW), for tests and benchmarks.

1 mon, 1 mgr, 1 memstore OSD and 1 radosgw, all on 127.0.0.1 with free ports, `auth none`, pool size 1,
from Debian's packages (`.ci/setup-ceph.sh`). Everything lives in one temp dir named
`fjord-i5-ceph-<random>` with its own fsid, so several clusters (other test runs, other worktrees) can
run side by side. Daemons run in the foreground as children in their own process group and are killed
on `stop()`; a cluster left behind by a killed run is found by its `owner.pid` file (a dead pid) and
removed by the next `start()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

PREFIX = "fjord-i5-ceph-"
BINARIES = ("ceph-mon", "ceph-mgr", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool")


class CephUnavailable(RuntimeError):
    """The Ceph binaries are not installed (run .ci/setup-ceph.sh)."""


@dataclass(frozen=True)
class S3User:
    uid: str
    access_key: str
    secret_key: str


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def reap_leftovers(base: Path | None = None) -> list[Path]:
    """Kill the daemons of clusters whose owning process is gone, and remove their dirs."""
    root = base or Path(tempfile.gettempdir())
    removed: list[Path] = []
    for d in root.glob(PREFIX + "*"):
        owner = d / "owner.pid"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            pid = 0
            if time.time() - d.stat().st_mtime < 60:
                continue  # just created by another process, which has not written its owner.pid yet
        if pid and _alive(pid):
            continue
        for pidfile in d.glob("pgid.*"):
            with contextlib.suppress(OSError, ValueError):
                _kill_group(int(pidfile.read_text()))
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class CephCluster:
    """Start with `start()`, stop with `stop()` (idempotent); `endpoint` is the RGW's S3 URL."""

    def __init__(self, memstore_gib: int = 4) -> None:
        self.memstore_bytes = memstore_gib << 30
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        self.fsid = str(uuid.uuid4())
        self.mon_port = _free_port()
        self.rgw_port = _free_port()
        self.conf = self.dir / "ceph.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> CephCluster:
        missing = missing_binaries()
        if missing:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise CephUnavailable(f"not installed: {', '.join(missing)} (run .ci/setup-ceph.sh as root)")
        reap_leftovers(self.dir.parent)
        try:
            self._bootstrap(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for name in list(self.procs):
            self._stop_daemon(name)
        for pidfile in self.dir.glob("pgid.*"):
            with contextlib.suppress(OSError, ValueError):
                _kill_group(int(pidfile.read_text()))
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> CephCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the RGW, for fault tests -----------------------------------------------------------------------

    def stop_rgw(self) -> None:
        self._stop_daemon("rgw")

    def start_rgw(self, timeout: float = 60) -> None:
        self._daemon("rgw", ["radosgw", "-f", "-n", "client.rgw.i5", "-c", str(self.conf)])
        self._wait_http(timeout)

    def restart_rgw(self, timeout: float = 60) -> None:
        self.stop_rgw()
        self.start_rgw(timeout)

    # --- users --------------------------------------------------------------------------------------------

    def create_user(self, uid: str) -> S3User:
        access = "FJ" + secrets.token_hex(9).upper()
        secret = secrets.token_urlsafe(30)
        self.admin(
            "user", "create", f"--uid={uid}", f"--display-name={uid}", f"--access-key={access}", f"--secret={secret}"
        )
        return S3User(uid, access, secret)

    def admin(self, *args: str) -> str:
        """Run radosgw-admin against this cluster and return its stdout."""
        return self._run(["radosgw-admin", "-c", str(self.conf), "-n", "client.rgw.i5", *args])

    def ceph(self, *args: str) -> str:
        return self._run(["ceph", "-c", str(self.conf), *args])

    # --- internals ------------------------------------------------------------------------------------

    def _run(self, cmd: list[str], timeout: float = 60) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({done.returncode}): {done.stderr.strip()[-800:]}")
        return done.stdout

    def _write_conf(self) -> None:
        d = self.dir
        self.conf.write_text(
            f"""[global]
fsid = {self.fsid}
mon_host = v2:127.0.0.1:{self.mon_port}
public_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
osd_objectstore = memstore
memstore_device_bytes = {self.memstore_bytes}
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
osd_crush_chooseleaf_type = 0
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
pid_file = {d}/run/$name.pid
log_file = {d}/log/$name.log
mon_data = {d}/mon/$id
mgr_data = {d}/mgr/$id
osd_data = {d}/osd/$id
mgr_initial_modules =
[client.rgw.i5]
rgw_frontends = beast endpoint=127.0.0.1:{self.rgw_port}
ms_mon_client_mode = crc
rgw_data = {d}/rgw
rgw_enable_usage_log = false
# Free deleted and overwritten objects' data within seconds (default: 2 h), as memstore keeps it all in RAM.
rgw_gc_obj_min_wait = 5
rgw_gc_processor_period = 5
""",
            encoding="utf-8",
        )

    def _daemon(self, name: str, cmd: list[str]) -> None:
        log = (self.dir / "log" / f"{name}.out").open("ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        (self.dir / f"pgid.{name}").write_text(str(proc.pid))

    def _stop_daemon(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        _kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        (self.dir / f"pgid.{name}").unlink(missing_ok=True)

    def _wait(self, what: str, check: object, timeout: float) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = (self.dir / "log" / f"{name}.out").read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"ceph {name} exited ({proc.returncode}) while waiting for {what}: {log}")
            try:
                if check():
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"ceph: {what} not ready after {timeout:.0f} s ({last})")

    def _wait_http(self, timeout: float) -> None:
        def up() -> bool:
            with urllib.request.urlopen(self.endpoint, timeout=2) as resp:
                return int(resp.status) == 200

        self._wait("the RGW endpoint", up, timeout)

    def _bootstrap(self, timeout: float) -> None:
        d = self.dir
        for sub in ("run", "log", "mon/a", "mgr/x", "osd/0", "rgw"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        monmap = d / "monmap"
        mon_addr = f"[v2:127.0.0.1:{self.mon_port}]"
        self._run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", mon_addr, str(monmap)])
        self._run(["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap)])
        self._daemon("mon", ["ceph-mon", "-f", "-c", str(self.conf), "-i", "a"])
        self._wait("the monitor", lambda: bool(self.ceph("mon", "stat")), timeout)
        self._daemon("mgr", ["ceph-mgr", "-f", "-c", str(self.conf), "-i", "x"])
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        self._run(["ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid])
        self._daemon("osd", ["ceph-osd", "-f", "-c", str(self.conf), "-i", osd_id])

        def osd_up() -> bool:
            return int(json.loads(self.ceph("osd", "stat", "--format=json")).get("num_up_osds", 0)) >= 1

        self._wait("the OSD", osd_up, timeout)
        self.start_rgw(timeout)
