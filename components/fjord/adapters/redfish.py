"""Redfish BMCs behind a small typed interface, on top of sushy (OpenStack's Redfish client).

Why sushy: it is the Redfish client OpenStack Ironic drives fleets of bare metal with, released with every
OpenStack cycle, and it already knows the quirks of real BMCs (iDRAC/iLO retry conditions, settings
objects for BIOS and boot, session or basic auth, virtual media under Systems or Managers). The DMTF's
python-redfish-library is a thin HTTP wrapper: every resource path, enum and quirk would be ours to write.

Everything here is per node and synchronous: `RedfishNode` opens one connection for one node's system and
closes it again, `run_bulk` runs an operation on many nodes with bounded concurrency and retries. Errors
are `RedfishError`s naming the node and what went wrong in one line; the password never appears in them
(`scrub` removes it from anything a library put in a message).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import sushy
from sushy import exceptions as sx
from sushy.auth import BasicAuth

Power = Literal["on", "off", "restart"]
BootTarget = Literal["pxe", "cd", "hdd", "none"]
ErrorKind = Literal["unreachable", "timeout", "auth", "server", "not-found", "rejected", "unsupported"]

_BOOT = {"pxe": sushy.BootSource.PXE, "cd": sushy.BootSource.CD, "hdd": sushy.BootSource.HDD, "none": None}
_RESET = {
    "on": sushy.ResetType.ON,
    "off": sushy.ResetType.FORCE_OFF,
    "restart": sushy.ResetType.FORCE_RESTART,
}
RETRYABLE: frozenset[ErrorKind] = frozenset({"unreachable", "timeout", "server"})
"""Error kinds worth another try: the BMC may be busy or rebooting. Wrong credentials or a rejected
request will fail the same way again."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Options:
    """How to talk to BMCs: TLS, per-request timeout, retries with exponential backoff, concurrency."""

    verify_tls: bool = True
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 1.0
    concurrency: int = 32


@dataclass(frozen=True)
class Target:
    """Where a node's BMC is: the Redfish service URL and, where one service serves several systems (a lab
    or an emulator), the system id; None means the service's only system."""

    node: str
    url: str
    system_id: str | None = None


@dataclass(frozen=True)
class SystemInfo:
    """What a BMC says about its system."""

    system_id: str
    power: str | None
    boot_target: str | None
    boot_enabled: str | None
    health: str | None
    model: str | None
    manufacturer: str | None
    serial: str | None
    bios_version: str | None
    macs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "system_id": self.system_id,
            "power": self.power,
            "boot_target": self.boot_target,
            "boot_enabled": self.boot_enabled,
            "health": self.health,
            "model": self.model,
            "manufacturer": self.manufacturer,
            "serial": self.serial,
            "bios_version": self.bios_version,
            "macs": list(self.macs),
        }


class RedfishError(Exception):
    """One node's BMC operation failed; `kind` says whether trying again can help."""

    def __init__(self, node: str, kind: ErrorKind, message: str) -> None:
        self.node = node
        self.kind = kind
        self.message = message
        super().__init__(f"{node}: {kind}: {message}")

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def scrub(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` masked (library messages are not trusted to omit it)."""
    return text.replace(secret, "********") if secret else text


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _classify(exc: Exception) -> tuple[ErrorKind, str]:
    if isinstance(exc, sx.AccessError):
        return "auth", f"the BMC refused the credentials (HTTP {exc.status_code})"
    if isinstance(exc, sx.ServerSideError):
        return "server", f"the BMC answered HTTP {exc.status_code}: {_first_line(exc)}"
    if isinstance(exc, sx.ResourceNotFoundError):
        return "not-found", f"no such Redfish resource: {_first_line(exc)}"
    if isinstance(exc, sx.HTTPError):
        return "rejected", f"the BMC rejected the request (HTTP {exc.status_code}): {_first_line(exc)}"
    if isinstance(exc, sx.ConnectionError):
        text = str(exc)
        if "timed out" in text.lower() or "timeout" in text.lower():
            return "timeout", "no answer from the BMC within the timeout"
        return "unreachable", "cannot connect to the BMC (refused, unroutable or TLS failure)"
    if isinstance(exc, sx.MissingAttributeError | sx.MissingActionError):
        return "unsupported", f"the BMC does not expose it: {exc}"
    if isinstance(exc, sx.InvalidParameterValueError):
        return "rejected", str(exc)
    return "server", f"{type(exc).__name__}: {exc}"


def _connect(url: str, creds: Credentials, options: Options) -> sushy.Sushy:
    return sushy.Sushy(
        url,
        auth=BasicAuth(creds.username, creds.password),
        verify=options.verify_tls,
        read_timeout=options.timeout_s,
        connect_timeout=min(options.timeout_s, 10.0),
        # fjord retries whole operations with backoff (with_retries); sushy itself tries a 5xx GET once more.
        server_side_retries=1,
        server_side_retries_delay=0,
    )


class RedfishNode:
    """One node's system on its BMC. Use `RedfishNode.open(...)` as a context manager."""

    def __init__(self, target: Target, root: sushy.Sushy, system: Any) -> None:
        self.target = target
        self._root = root
        self._system = system

    @classmethod
    @contextmanager
    def open(cls, target: Target, creds: Credentials, options: Options) -> Iterator[RedfishNode]:
        """Connect to the node's BMC and find its system; errors become `RedfishError`s naming the node."""
        root: sushy.Sushy | None = None
        try:
            try:
                root = _connect(target.url, creds, options)
                if target.system_id is not None:
                    path = f"{root.get_system_collection().path.rstrip('/')}/{target.system_id}"
                else:
                    members = sorted(root.get_system_collection().members_identities)
                    if len(members) != 1:
                        raise RedfishError(
                            target.node,
                            "rejected",
                            f"the BMC serves {len(members)} systems; set bmc.systems to say which is this node",
                        )
                    path = members[0]
                system = root.get_system(path)
            except sx.SushyError as exc:
                kind, message = _classify(exc)
                raise RedfishError(target.node, kind, scrub(message, creds.password)) from None
            node = cls(target, root, system)
            try:
                yield node
            except sx.SushyError as exc:
                kind, message = _classify(exc)
                raise RedfishError(target.node, kind, scrub(message, creds.password)) from None
        finally:
            if root is not None:
                root._conn.close()

    def info(self) -> SystemInfo:
        s = self._system
        s.refresh(force=True)
        try:
            macs = tuple(sorted(e.mac_address for e in s.ethernet_interfaces.get_members() if e.mac_address))
        except (sx.MissingAttributeError, sx.ResourceNotFoundError):
            macs = ()
        return SystemInfo(
            system_id=s.identity,
            power=s.power_state.value if s.power_state else None,
            boot_target=s.boot.target.value if s.boot and s.boot.target else None,
            boot_enabled=s.boot.enabled.value if s.boot and s.boot.enabled else None,
            health=s.status.health.value if s.status and s.status.health else None,
            model=s.model,
            manufacturer=s.manufacturer,
            serial=s.serial_number,
            bios_version=s.bios_version,
            macs=macs,
        )

    def power(self) -> str | None:
        self._system.refresh(force=True)
        state = self._system.power_state
        return state.value if state else None

    def set_power(self, action: Power) -> None:
        self._system.reset_system(_RESET[action])

    def wait_power(self, want: Literal["On", "Off"], timeout_s: float, poll_s: float = 0.5) -> str | None:
        """Poll until the power state is `want` (BMCs apply power changes after seconds); return the last
        state seen, which is not `want` when the timeout ran out."""
        deadline = time.monotonic() + timeout_s
        state = self.power()
        while state != want and time.monotonic() < deadline:
            time.sleep(poll_s)
            state = self.power()
        return state

    def set_boot(self, target: BootTarget, once: bool = True) -> None:
        """Boot override for the next boot (`once`) or every boot; 'none' clears the override."""
        source = _BOOT[target]
        if source is None:
            self._system.set_system_boot_options(
                target=sushy.BootSource.NONE, enabled=sushy.BootSourceOverrideEnabled.DISABLED
            )
            return
        enabled = sushy.BootSourceOverrideEnabled.ONCE if once else sushy.BootSourceOverrideEnabled.CONTINUOUS
        self._system.set_system_boot_options(target=source, enabled=enabled)

    def virtual_media(self) -> dict[str, str | None]:
        """Image per virtual media device that takes a CD/DVD (None where nothing is inserted)."""
        return {
            m.identity: (m.image or None) if m.inserted else None
            for m in self._system.virtual_media.get_members()
            if any(t.value in ("CD", "DVD") for t in (m.media_types or []))
        }

    def insert_image(self, image_url: str) -> None:
        """Insert the OS image into the first CD/DVD virtual media device (ejecting another image first)."""
        members = [
            m
            for m in self._system.virtual_media.get_members()
            if any(t.value in ("CD", "DVD") for t in (m.media_types or []))
        ]
        if not members:
            raise sx.MissingAttributeError(attribute="VirtualMedia (CD/DVD)", resource=self._system.path)
        media = members[0]
        if media.inserted and media.image == image_url:
            return
        if media.inserted:
            media.eject_media()
        media.insert_media(image_url, inserted=True, write_protected=True)

    def bios(self) -> dict[str, Any] | None:
        """Current BIOS attributes, or None when the BMC exposes no BIOS resource."""
        try:
            bios = self._system.bios
            bios.refresh(force=True)
            return dict(bios.attributes)
        except (sx.MissingAttributeError, sx.ResourceNotFoundError):
            return None

    def set_bios(self, attributes: Mapping[str, Any]) -> None:
        """Stage BIOS attributes; most BMCs apply them at the next reboot."""
        self._system.bios.set_attributes(dict(attributes))


def discover(url: str, creds: Credentials, options: Options) -> list[SystemInfo]:
    """Every system a Redfish service serves, with its inventory (a BMC usually serves one)."""
    try:
        root = _connect(url, creds, options)
    except sx.SushyError as exc:
        kind, message = _classify(exc)
        raise RedfishError(url, kind, scrub(message, creds.password)) from None
    try:
        ids = sorted(m.rstrip("/").rsplit("/", 1)[-1] for m in root.get_system_collection().members_identities)
    except sx.SushyError as exc:
        kind, message = _classify(exc)
        raise RedfishError(url, kind, scrub(message, creds.password)) from None
    finally:
        root._conn.close()
    found = []
    for sid in ids:
        with RedfishNode.open(Target(url, url, sid), creds, options) as node:
            found.append(node.info())
    return found


T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One node's result: `value` when it succeeded, `error` when every try failed; `attempts` made."""

    node: str
    value: T | None = None
    error: RedfishError | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


def with_retries(
    target: Target,
    creds: Credentials,
    options: Options,
    operation: Callable[[RedfishNode], T],
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[T]:
    """Run `operation` on one node, retrying timeouts, unreachable BMCs and 5xx answers with exponential
    backoff (backoff_s, 2x, 4x, ...); operations must be idempotent (read, compare, then act)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            with RedfishNode.open(target, creds, options) as node:
                return Outcome(target.node, value=operation(node), attempts=attempt)
        except RedfishError as exc:
            if not exc.retryable or attempt > options.retries:
                return Outcome(target.node, error=exc, attempts=attempt)
            sleep(options.backoff_s * 2 ** (attempt - 1))


def run_bulk(
    targets: Sequence[Target],
    creds: Credentials,
    options: Options,
    operation: Callable[[RedfishNode], T],
    on_done: Callable[[Outcome[T]], None] | None = None,
) -> dict[str, Outcome[T]]:
    """Run `operation` on every target, at most `options.concurrency` at once; one node's failure never
    stops the others. Returns the outcome per node name, in the targets' order."""
    results: dict[str, Outcome[T]] = {}
    if not targets:
        return results
    workers = max(1, min(options.concurrency, len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fjord-bmc") as pool:
        futures = {pool.submit(with_retries, t, creds, options, operation): t for t in targets}
        for future in as_completed(futures):
            outcome = future.result()
            results[outcome.node] = outcome
            if on_done is not None:
                on_done(outcome)
    return {t.node: results[t.node] for t in targets}
