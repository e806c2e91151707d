"""A Redfish lab on 127.0.0.1 for tests and benchmarks: sushy-emulator processes with many fake systems,
HTTP basic auth, a fresh state dir per run, a fault-injecting proxy and a server for OS images.

Everything picks a free port (bind to port 0) and lives in its own temp dir, so runs in parallel and
leftovers of an interrupted run do not collide. `Emulator.stop()` ends the process group it started.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import bcrypt
import requests

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "redfish_emulator.py"
USERNAME = "fjord-admin"
PASSWORD = "s3cr3t-Bmc-Passw0rd-i4"
"""The test BMC password: tests assert it never appears in outputs, logs or errors."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_system(name: str, index: int, power: str = "Off") -> dict[str, Any]:
    """A fake-driver system whose id (the driver's 'uuid') is the node's name."""
    return {
        "uuid": name,
        "name": name,
        "power_state": power,
        "external_notifier": False,
        "nics": [{"mac": f"52:54:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"}],
        "bios_version": f"2.{index % 7}.1",
    }


@dataclass
class Emulator:
    """One sushy-emulator process (fake driver) serving `systems`, with basic auth."""

    systems: list[dict[str, Any]]
    username: str = USERNAME
    password: str = PASSWORD
    port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fjord-i4-redfish-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> Emulator:
        auth = self.workdir / "htpasswd"
        digest = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        auth.write_text(f"{self.username}:{digest}\n", encoding="utf-8")
        state = self.workdir / "state"
        state.mkdir(exist_ok=True)
        config = self.workdir / "emulator.conf"
        config.write_text(
            f"SUSHY_EMULATOR_FAKE_SYSTEMS = {self.systems!r}\n"
            f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}\n"
            f"SUSHY_EMULATOR_AUTH_FILE = {str(auth)!r}\n"
            "SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False\n",
            encoding="utf-8",
        )
        for _ in range(5):
            self.port = free_port()
            with (self.workdir / "emulator.log").open("ab") as log:
                self.process = self._spawn(config, log)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if requests.get(f"{self.url}/redfish/v1/", timeout=1).status_code == 200:
                        return self
                except requests.RequestException:
                    time.sleep(0.1)
            self.stop(keep_workdir=True)
        raise RuntimeError(f"sushy-emulator did not start; see {self.workdir / 'emulator.log'}")

    def _spawn(self, config: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                str(LAUNCHER),
                "--fake",
                "--config",
                str(config),
                "-i",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def stop(self, keep_workdir: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        if not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def system(self, system_id: str) -> dict[str, Any]:
        """The emulator's view of one system (GET, authenticated)."""
        r = requests.get(f"{self.url}/redfish/v1/Systems/{system_id}", auth=(self.username, self.password), timeout=10)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def wait_power(self, system_id: str, want: str, timeout_s: float = 30.0) -> str:
        """Poll until a system's power is `want` (the fake driver applies changes after 1-11 s)."""
        deadline = time.monotonic() + timeout_s
        state = str(self.system(system_id).get("PowerState"))
        while state != want and time.monotonic() < deadline:
            time.sleep(0.3)
            state = str(self.system(system_id).get("PowerState"))
        return state


@dataclass
class Faults:
    """What the proxy does to requests whose path contains a key of `errors`/`delays` (or '*' for all)."""

    errors: dict[str, int] = field(default_factory=dict)
    """path fragment -> HTTP status answered instead of forwarding."""
    error_budget: dict[str, int] = field(default_factory=dict)
    """path fragment -> how many requests get the error before the proxy forwards again (absent: always)."""
    delays: dict[str, float] = field(default_factory=dict)
    """path fragment -> seconds to wait before forwarding."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def match(self, table: dict[str, Any], path: str) -> str | None:
        return next((k for k in table if k == "*" or k in path), None)

    def error_for(self, path: str) -> int | None:
        with self.lock:
            key = self.match(self.errors, path)
            if key is None:
                return None
            left = self.error_budget.get(key)
            if left is not None:
                if left <= 0:
                    return None
                self.error_budget[key] = left - 1
            return self.errors[key]


class FaultProxy:
    """An HTTP proxy in front of an emulator that answers errors or delays for chosen paths."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.requests = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                proxy.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delay = proxy.faults.match(proxy.faults.delays, self.path)
                if delay is not None:
                    time.sleep(proxy.faults.delays[delay])
                status = proxy.faults.error_for(self.path)
                if status is not None:
                    payload = json.dumps({"error": {"code": "Base.1.0.GeneralError", "message": "injected"}}).encode()
                    self._reply(status, payload, {"Content-Type": "application/json"})
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body or None,
                    headers=headers,
                    allow_redirects=False,
                    timeout=60,
                )
                keep = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "location", "etag")}
                self._reply(r.status_code, r.content, keep)

            def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fjord-i4-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ImageServer:
    """Serves a small OS image file over HTTP (the emulator downloads virtual media when inserted)."""

    def __init__(self, folder: Path) -> None:
        (folder / "installer.iso").write_bytes(b"\0" * 4096)
        handler = _quiet_handler(folder)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fjord-i4-images", daemon=True)
        self.thread.start()

    @property
    def image_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/installer.iso"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _quiet_handler(folder: Path) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (a BMC that is down)."""
    return f"http://127.0.0.1:{free_port()}"
