"""Redfish BMCs behind a small typed interface, on top of sushy (OpenStack's Redfish client).

Why sushy: it is the Redfish client OpenStack Ironic drives fleets of bare metal with, released with every
OpenStack cycle, and it already knows the quirks of real BMCs (iDRAC/iLO retry conditions, settings
objects for BIOS and boot, session or basic auth, virtual media under Systems or Managers). The DMTF's
python-redfish-library is a thin HTTP wrapper: every resource path, enum and quirk would be ours to write.

Everything here is per node and synchronous: `RedfishNode` opens one connection for one node's system and
closes it again, `run_bulk` runs an operation on many nodes with bounded concurrency and retries. Errors
are `RedfishError`s naming the node and what went wrong in one line; the password never appears in them
(`scrub` removes it from anything a library put in a message).

Faults, in two layers, both with tenacity (jittered exponential backoff, "full jitter") and both bounded by
the node's deadline (`Options.deadline_s`, from the first request to the node):

- one request: a read (GET) or an absolute write (PATCH, PUT, DELETE) that failed in a way worth another try
  (connection refused, reset or dropped, a timeout, HTTP 5xx, an answer that is no Redfish JSON) is sent again,
  up to `retries` times. An action (POST: power, virtual media) is sent again only when it never left this
  machine (the connection could not be opened), since the BMC may have carried it out;
- one node's operation: when a request still fails, the whole operation runs again from the start, up to
  `retries` times, and, as every operation reads the BMC before acting, does only what is still missing.

Wrong credentials (401/403), a rejected request (4xx) or a missing feature fail at once. No exception of
one node escapes `with_retries`/`run_bulk`: whatever went wrong, and whatever the node had already changed
(`Outcome.actions`), is that node's `Outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import requests
import sushy
import tenacity
from sushy import exceptions as sx
from sushy.auth import BasicAuth
from sushy.connector import Connector
from urllib3.exceptions import ConnectTimeoutError

LOG = logging.getLogger("fjord.redfish")

Power = Literal["on", "off", "restart"]
BootTarget = Literal["pxe", "cd", "hdd", "none"]
ErrorKind = Literal[
    "unreachable", "timeout", "auth", "server", "bad-answer", "not-found", "rejected", "unsupported", "internal"
]

_BOOT = {"pxe": sushy.BootSource.PXE, "cd": sushy.BootSource.CD, "hdd": sushy.BootSource.HDD, "none": None}
_RESET = {
    "on": sushy.ResetType.ON,
    "off": sushy.ResetType.FORCE_OFF,
    "restart": sushy.ResetType.FORCE_RESTART,
}
RETRYABLE: frozenset[ErrorKind] = frozenset({"unreachable", "timeout", "server", "bad-answer"})
"""Error kinds worth another try: the link dropped, or the BMC is busy, rebooting or answered garbage. Wrong
credentials, a rejected request, a missing feature or a fault in fjord itself fail the same way again."""
IDEMPOTENT = frozenset({"GET", "PATCH", "PUT", "DELETE"})
"""Requests that may be sent again after any retryable failure: reads and writes of absolute values."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Options:
    """How to talk to BMCs: TLS, per-request timeout, retries with jittered exponential backoff, the per-node
    deadline, concurrency."""

    verify_tls: bool = True
    timeout_s: float = 30.0
    retries: int = 5
    """Retries of one request, and of a node's whole operation (see the module docstring)."""
    backoff_s: float = 1.0
    """Backoff base: the n-th retry waits a random time between 0 and backoff_s * 2**(n-1), at most max_backoff_s."""
    concurrency: int = 32
    deadline_s: float = 600.0
    """No retry starts later than this after a node's first request, and power waits end by then."""
    max_backoff_s: float = 30.0


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class BadAnswer(Exception):
    """A BMC answer that is no Redfish: a non-JSON or truncated body, or an error page instead of a Redfish
    error; `status` is the HTTP status it came with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _describe(response: requests.Response) -> str:
    kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()
    size = len(response.content)
    return f"{size} bytes of {kind}" if size else "an empty body"


def check_answer(response: requests.Response) -> None:
    """sushy's response hook: reject what is not Redfish before sushy parses it. sushy crashes on an error
    body that is JSON but no Redfish error, reports an HTML error page as 'unknown error', and hands a
    truncated or empty body to its resources. A 4xx with a non-JSON body stays sushy's (it maps 404s to
    ResourceNotFoundError, which callers rely on)."""
    method = response.request.method if response.request is not None else "?"
    status = response.status_code
    if status < 400 and not (method == "GET" and status == 200):
        return
    try:
        body = response.json()
    except ValueError:
        body = ValueError
    if status >= 400:
        redfish = isinstance(body, dict) and isinstance(body.get("error", {}), dict)
        if not redfish and (body is not ValueError or status >= 500):
            raise BadAnswer(
                status, f"the BMC answered HTTP {status} to {method} with {_describe(response)}, not a Redfish error"
            )
    elif not isinstance(body, dict):
        raise BadAnswer(
            status,
            f"the BMC answered HTTP {status} to {method} with {_describe(response)}, not a Redfish JSON object"
            " (truncated, or not a Redfish service)",
        )


def _not_sent(exc: BaseException) -> bool:
    """Whether a failed request surely never reached the BMC (the connection could not be opened)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.ConnectTimeout | ConnectTimeoutError):
            return True  # urllib3's NewConnectionError (refused, unroutable) is a ConnectTimeoutError too
        reason = getattr(current, "reason", None)
        if isinstance(reason, ConnectTimeoutError):
            return True
        nested = next((a for a in getattr(current, "args", ()) if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def _classify(exc: BaseException) -> tuple[ErrorKind, str]:
    if isinstance(exc, BadAnswer):
        if exc.status in (401, 403):
            return "auth", f"the BMC refused the credentials (HTTP {exc.status})"
        if exc.status == 404:
            return "not-found", str(exc)
        if 400 <= exc.status < 500:
            return "rejected", str(exc)
        return ("server" if exc.status >= 500 else "bad-answer"), str(exc)
    if isinstance(exc, sx.AccessError):
        return "auth", f"the BMC refused the credentials (HTTP {exc.status_code})"
    if isinstance(exc, sx.ServerSideError):
        return "server", f"the BMC answered HTTP {exc.status_code}: {_first_line(exc)}"
    if isinstance(exc, sx.ResourceNotFoundError):
        return "not-found", f"no such Redfish resource: {_first_line(exc)}"
    if isinstance(exc, sx.HTTPError):
        return "rejected", f"the BMC rejected the request (HTTP {exc.status_code}): {_first_line(exc)}"
    if isinstance(exc, sx.ConnectionError | requests.exceptions.RequestException) and not isinstance(exc, ValueError):
        text = str(exc).lower()
        if isinstance(exc, requests.exceptions.Timeout) or "timed out" in text or "timeout" in text:
            return "timeout", "no answer from the BMC within the timeout"
        if _not_sent(exc):
            return "unreachable", "cannot connect to the BMC (refused, unroutable or TLS failure)"
        return "unreachable", "the connection to the BMC failed or was dropped before it answered"
    if isinstance(exc, sx.MissingAttributeError | sx.MissingActionError):
        return "unsupported", f"the BMC does not expose it: {exc}"
    if isinstance(exc, sx.InvalidParameterValueError):
        return "rejected", str(exc)
    if isinstance(exc, sx.SushyError | ValueError | LookupError | TypeError | AttributeError):
        # sushy parsing an answer it did not expect (malformed JSON, a list where an object belongs, ...)
        return "bad-answer", f"the BMC's answer is no Redfish ({type(exc).__name__}: {_first_line(exc)})"
    return "internal", f"{type(exc).__name__}: {_first_line(exc)}"


def _wait(options: Options) -> tenacity.wait.wait_base:
    """Full-jitter exponential backoff: retry n waits uniformly in [0, backoff_s * 2**(n-1)], capped."""
    return tenacity.wait_random_exponential(multiplier=options.backoff_s, max=options.max_backoff_s)


def _stop(options: Options, deadline: float) -> tenacity.stop.stop_base:
    """After `retries` retries, or before a retry that would start after the deadline (time.monotonic())."""
    return tenacity.stop_after_attempt(options.retries + 1) | tenacity.stop_before_delay(
        max(0.0, deadline - time.monotonic())
    )


class RetryingConnector(Connector):  # type: ignore[misc]
    """sushy's connector with fjord's per-request retries (see the module docstring), through its public
    request methods; `on_retry` is called for every request sent again."""

    def __init__(
        self,
        url: str,
        *,
        node: str,
        options: Options,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, response_callback=check_answer, **kwargs)
        self.node = node
        self.options = options
        self.deadline = deadline
        self.sleep = sleep
        self.on_retry = on_retry

    def _retry(self, method: str, call: Callable[[], Any]) -> Any:
        def worth_it(exc: BaseException) -> bool:
            kind, _ = _classify(exc)
            if kind not in RETRYABLE:
                return False
            return method in IDEMPOTENT or (kind == "unreachable" and _not_sent(exc))

        def log(state: tenacity.RetryCallState) -> None:
            if self.on_retry is not None:
                self.on_retry()
            exc = state.outcome.exception() if state.outcome is not None else None
            kind = _classify(exc)[0] if exc is not None else "?"
            LOG.info(
                "%s: %s failed (%s); try %d of %d in %.1f s",
                self.node,
                method,
                kind,
                state.attempt_number + 1,
                self.options.retries + 1,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(worth_it),
            stop=_stop(self.options, self.deadline),
            wait=_wait(self.options),
            sleep=self.sleep,
            before_sleep=log,
            reraise=True,
        )
        return retrying(call)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("GET", lambda: super(RetryingConnector, self).get(*args, **kwargs))

    def post(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("POST", lambda: super(RetryingConnector, self).post(*args, **kwargs))

    def patch(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("PATCH", lambda: super(RetryingConnector, self).patch(*args, **kwargs))

    def put(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("PUT", lambda: super(RetryingConnector, self).put(*args, **kwargs))

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._retry("DELETE", lambda: super(RetryingConnector, self).delete(*args, **kwargs))


def _connector(
    url: str,
    options: Options,
    node: str,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] | None = None,
) -> RetryingConnector:
    return RetryingConnector(
        url,
        node=node,
        options=options,
        deadline=time.monotonic() + options.deadline_s if deadline is None else deadline,
        sleep=sleep,
        on_retry=on_retry,
        verify=options.verify_tls,
        default_request_timeout=options.timeout_s,
        connect_timeout=min(options.timeout_s, 10.0),
        # fjord retries (RetryingConnector): sushy itself sends a request once and a 5xx GET once more.
        server_side_retries=1,
        server_side_retries_delay=0,
    )


def _connect(url: str, creds: Credentials, connector: RetryingConnector) -> sushy.Sushy:
    return sushy.Sushy(url, auth=BasicAuth(creds.username, creds.password), connector=connector)


def _error(node: str, exc: BaseException, password: str) -> RedfishError:
    """Any exception as the node's `RedfishError` (one line, the password masked)."""
    if isinstance(exc, RedfishError):
        return exc
    kind, message = _classify(exc)
    return RedfishError(node, kind, scrub(message, password))


class RedfishNode:
    """One node's system on its BMC. Use `RedfishNode.open(...)` as a context manager.

    Every change the node makes is appended to `actions` (and to the `journal` passed to `open`), as soon as
    the BMC took it: what a failed operation had already changed is known."""

    def __init__(
        self,
        target: Target,
        root: sushy.Sushy,
        system: Any,
        deadline: float,
        journal: list[str] | None = None,
        secret: str = "",
    ) -> None:
        self.target = target
        self.deadline = deadline
        self.actions: list[str] = journal if journal is not None else []
        self._root = root
        self._system = system
        self._secret = secret

    @classmethod
    @contextmanager
    def open(
        cls,
        target: Target,
        creds: Credentials,
        options: Options,
        *,
        deadline: float | None = None,
        journal: list[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[], None] | None = None,
    ) -> Iterator[RedfishNode]:
        """Connect to the node's BMC and find its system. Whatever goes wrong, in here or in the caller's
        block, leaves as a `RedfishError` naming the node (BaseExceptions such as Ctrl-C pass unchanged).
        `deadline` (time.monotonic()) bounds retries and power waits; default: options.deadline_s from now."""
        deadline = time.monotonic() + options.deadline_s if deadline is None else deadline
        connector = _connector(target.url, options, target.node, deadline, sleep, on_retry)
        try:
            try:
                root = _connect(target.url, creds, connector)
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
            except Exception as exc:
                raise _error(target.node, exc, creds.password) from None
            node = cls(target, root, system, deadline, journal, creds.password)
            try:
                yield node
            except Exception as exc:
                raise _error(target.node, exc, creds.password) from None
        finally:
            connector.close()

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
        self.actions.append(f"power {action}")

    def wait_power(self, want: Literal["On", "Off"], timeout_s: float, poll_s: float = 0.5) -> str | None:
        """Poll until the power state is `want` (BMCs apply power changes after seconds); return the last
        state seen, which is not `want` when the timeout (or the node's deadline) ran out. A poll that fails
        in a way worth another try is one missed look, not a failed wait; the last failure is raised when no
        poll got through at all."""
        until = min(time.monotonic() + timeout_s, self.deadline)
        state: str | None = None
        seen = False
        last: RedfishError | None = None
        while True:
            try:
                state, seen = self.power(), True
            except Exception as exc:
                last = _error(self.target.node, exc, self._secret)
                if not last.retryable:
                    raise
            if (seen and state == want) or time.monotonic() >= until:
                break
            time.sleep(poll_s)
        if not seen and last is not None:
            raise last
        return state

    def set_boot(self, target: BootTarget, once: bool = True) -> None:
        """Boot override for the next boot (`once`) or every boot; 'none' clears the override."""
        source = _BOOT[target]
        if source is None:
            self._system.set_system_boot_options(
                target=sushy.BootSource.NONE, enabled=sushy.BootSourceOverrideEnabled.DISABLED
            )
            self.actions.append("boot override cleared")
            return
        enabled = sushy.BootSourceOverrideEnabled.ONCE if once else sushy.BootSourceOverrideEnabled.CONTINUOUS
        self._system.set_system_boot_options(target=source, enabled=enabled)
        self.actions.append(f"boot {target}" + (" once" if once else ""))

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
            self.actions.append("virtual media ejected")
        media.insert_media(image_url, inserted=True, write_protected=True)
        self.actions.append("virtual media inserted")

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
        self.actions.append("bios staged: " + ", ".join(sorted(attributes)))


def discover(url: str, creds: Credentials, options: Options) -> list[SystemInfo]:
    """Every system a Redfish service serves, with its inventory (a BMC usually serves one)."""
    connector = _connector(url, options, url)
    try:
        root = _connect(url, creds, connector)
        ids = sorted(m.rstrip("/").rsplit("/", 1)[-1] for m in root.get_system_collection().members_identities)
    except Exception as exc:
        raise _error(url, exc, creds.password) from None
    finally:
        connector.close()
    found = []
    for sid in ids:
        with RedfishNode.open(Target(url, url, sid), creds, options) as node:
            found.append(node.info())
    return found


T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One node's result: `value` when it succeeded, `error` when it failed for good; `attempts` of the whole
    operation, `retried` requests sent again within them, and `actions`: every change the BMC took, in
    order, also when the operation failed later (what a failed node had already changed)."""

    node: str
    value: T | None = None
    error: RedfishError | None = None
    attempts: int = 1
    retried: int = 0
    actions: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def with_retries(
    target: Target,
    creds: Credentials,
    options: Options,
    operation: Callable[[RedfishNode], T],
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[T]:
    """Run `operation` on one node; retry it from the start (with full-jitter exponential backoff) while it
    fails in a way worth another try, up to `options.retries` times and not past the node's deadline.
    Operations must be idempotent (read, compare, then act). Never raises for the node's sake: every
    failure, of any exception class, is the returned outcome's `error`."""
    deadline = time.monotonic() + options.deadline_s
    journal: list[str] = []
    retried = [0]
    attempts = 0

    def count_retry() -> None:
        retried[0] += 1

    def once() -> T:
        nonlocal attempts
        attempts += 1
        with RedfishNode.open(
            target, creds, options, deadline=deadline, journal=journal, sleep=sleep, on_retry=count_retry
        ) as node:
            return operation(node)

    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        LOG.info("%s; trying the operation again in %.1f s", exc, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, RedfishError) and e.retryable),
        stop=_stop(options, deadline),
        wait=_wait(options),
        sleep=sleep,
        before_sleep=log,
        reraise=True,
    )
    try:
        value = retrying(once)
    except Exception as exc:
        error = _error(target.node, exc, creds.password)
        return Outcome(target.node, error=error, attempts=attempts, retried=retried[0], actions=tuple(journal))
    return Outcome(target.node, value=value, attempts=attempts, retried=retried[0], actions=tuple(journal))


def run_bulk(
    targets: Sequence[Target],
    creds: Credentials,
    options: Options,
    operation: Callable[[RedfishNode], T],
    on_done: Callable[[Outcome[T]], None] | None = None,
) -> dict[str, Outcome[T]]:
    """Run `operation` on every target, at most `options.concurrency` at once; one node's failure never
    stops the others, and no exception of one node leaves here: it is that node's outcome. Returns the
    outcome per node name, in the targets' order."""
    results: dict[str, Outcome[T]] = {}
    if not targets:
        return results
    workers = max(1, min(options.concurrency, len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fjord-bmc") as pool:
        futures = {pool.submit(with_retries, t, creds, options, operation): t for t in targets}
        for future in as_completed(futures):
            t = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # with_retries reports everything itself; this is the last line of defence
                outcome = Outcome(t.node, error=_error(t.node, exc, creds.password))
            results[t.node] = outcome
            if on_done is not None:
                on_done(outcome)
    return {t.node: results[t.node] for t in targets}
