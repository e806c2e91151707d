"""A Redfish lab on 127.0.0.1 for tests and benchmarks: sushy-emulator processes with many fake systems,
HTTP basic auth, a fresh state dir per run, a fault-injecting proxy and a server for OS images.

Everything picks a free port (bind to port 0) and lives in its own temp dir, so runs in parallel and
leftovers of an interrupted run do not collide. `Emulator.stop()` ends the process group it started.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
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
from typing import IO, Any, Literal

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

    def resume(self, timeout_s: float = 30.0) -> Emulator:
        """Start again on the same port with the same state, after `stop(keep_workdir=True)`: a BMC service
        back from a crash, at the address the site still points at."""
        with (self.workdir / "emulator.log").open("ab") as log:
            self.process = self._spawn(self.workdir / "emulator.conf", log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if requests.get(f"{self.url}/redfish/v1/", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"sushy-emulator did not come back on port {self.port}; see {self.workdir}")

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


@dataclass(frozen=True)
class Answer:
    """A canned answer the proxy gives instead of forwarding: any status, content type and body (a BMC whose
    web server answers an HTML error page, plain text, JSON that is no Redfish error, or truncated JSON)."""

    status: int
    body: bytes
    content_type: str = "application/json"


HTML_500 = Answer(500, b"<html><body><h1>500 Internal Server Error</h1>nginx</body></html>", "text/html")
PLAIN_503 = Answer(503, b"Service Unavailable: BMC web server restarting", "text/plain")
JSON_NOT_REDFISH = Answer(500, b'{"error": "internal failure"}')
JSON_LIST_500 = Answer(500, b'["oops"]')
EMPTY_200 = Answer(200, b"")


@dataclass
class Faults:
    """What the proxy does to requests whose path contains a key of a table (or '*' for all).

    Per request, in this order: `delays`; a dropped connection (`drops`, `drop_rate`); a canned `answers` entry or an
    `errors` status (each limited by `error_budget` where set); else the request is forwarded, and its answer
    may be cut (`truncate`)."""

    errors: dict[str, int] = field(default_factory=dict)
    """path fragment -> HTTP status answered (with a Redfish error body) instead of forwarding."""
    answers: dict[str, Answer] = field(default_factory=dict)
    """path fragment -> a canned answer instead of forwarding."""
    error_budget: dict[str, int] = field(default_factory=dict)
    """path fragment -> how many requests get the error or answer before the proxy forwards again (absent:
    always)."""
    delays: dict[str, float] = field(default_factory=dict)
    """path fragment -> seconds to wait before forwarding."""
    drops: dict[str, Literal["before", "after"]] = field(default_factory=dict)
    """path fragment -> close the connection without an answer, before forwarding or after the BMC carried the
    request out (limited by `error_budget` where set)."""
    truncate: dict[str, Literal["json", "wire"]] = field(default_factory=dict)
    """path fragment -> forward, then answer half of the BMC's body: 'json' with a matching Content-Length (valid
    HTTP, broken JSON), 'wire' announcing the full length and closing early (the connection dies mid-body)."""
    drop_rate: float = 0.0
    """Fraction of requests (any path) whose connection is closed without an answer."""
    drop_after_forward: float = 0.5
    """Of the dropped requests, the fraction dropped after the BMC got and carried out the request (the answer
    is lost); the others are dropped before forwarding (the BMC never sees them)."""
    rng: random.Random = field(default_factory=lambda: random.Random(25))
    dropped: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, path, 'before' or 'after') of every dropped request."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def match(self, table: dict[str, Any], path: str) -> str | None:
        return next((k for k in table if k == "*" or k in path), None)

    def _spend(self, key: str) -> bool:
        left = self.error_budget.get(key)
        if left is None:
            return True
        if left <= 0:
            return False
        self.error_budget[key] = left - 1
        return True

    def error_for(self, path: str) -> int | None:
        with self.lock:
            key = self.match(self.errors, path)
            if key is None or not self._spend(key):
                return None
            return self.errors[key]

    def answer_for(self, path: str) -> Answer | None:
        with self.lock:
            key = self.match(self.answers, path)
            if key is None or not self._spend(key):
                return None
            return self.answers[key]

    def drop_for(self, method: str, path: str) -> str | None:
        """'before', 'after' or None: whether (and when) to drop this request's connection."""
        with self.lock:
            key = self.match(self.drops, path)
            if key is not None and self._spend(key):
                self.dropped.append((method, path, self.drops[key]))
                return self.drops[key]
            if self.drop_rate <= 0 or self.rng.random() >= self.drop_rate:
                return None
            when = "after" if self.rng.random() < self.drop_after_forward else "before"
            self.dropped.append((method, path, when))
            return when


class FaultProxy:
    """An HTTP proxy in front of an emulator that drops connections, answers errors or garbage, cuts answers
    or delays them, for chosen paths (see `Faults`)."""

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
                faults = proxy.faults
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delay = faults.match(faults.delays, self.path)
                if delay is not None:
                    time.sleep(faults.delays[delay])
                drop = faults.drop_for(self.command, self.path)
                if drop == "before":
                    self._drop()
                    return
                answer = faults.answer_for(self.path)
                if answer is not None:
                    self._reply(answer.status, answer.body, {"Content-Type": answer.content_type})
                    return
                status = faults.error_for(self.path)
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
                if drop == "after":
                    self._drop()
                    return
                keep = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "location", "etag")}
                cut = faults.match(faults.truncate, self.path)
                if cut is not None and len(r.content) > 1:
                    half = r.content[: len(r.content) // 2]
                    self._reply(
                        r.status_code, half, keep, length=len(r.content) if faults.truncate[cut] == "wire" else None
                    )
                    return
                self._reply(r.status_code, r.content, keep)

            def _drop(self) -> None:
                """Close the connection without a word (as a dead link or a crashing BMC web server does)."""
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _reply(self, status: int, payload: bytes, headers: dict[str, str], length: int | None = None) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload) if length is None else length))
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
