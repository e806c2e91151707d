"""The one wrapper around ansible-runner: run a playbook on an inventory, stream events, return per-host results.

Results come from the event stream (task failures per host) and the final `playbook_on_stats` event (counts
per host), never from parsing stdout; a play that crashes before its stats (syntax error, missing role) has
none, and the result says so (`crashed`) with the tail of Ansible's output as the reason.

fjord's Ansible settings (`AnsibleSettings()`): Mitogen's strategy (one persistent Python interpreter per host,
modules sent once and cached, instead of an AnsiballZ upload and a fresh interpreter per task), many forks, SSH
pipelining, the `free` strategy (a fast host is not held back by a slow one), facts cached as JSON files in a
private directory with `gathering = smart` (a rerun does not gather facts again) and only the fact subsets the
roles read (`min,virtual,chroot`), facts not copied into top-level `ansible_*` variables, and SSH connections kept open
between runs (ControlPersist, control sockets in the same private directory). `AnsibleSettings.stock()` is
ansible-core's defaults, the benchmark's baseline (`bench/ansible_site.py`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fjord.adapters import ansible_strategy
from fjord.adapters.playbooks import default_playbooks_dir

EventKind = Literal["play", "task", "ok", "changed", "failed", "unreachable", "skipped"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """What a progress display needs from one Ansible event."""

    kind: EventKind
    task: str = ""
    host: str = ""
    play: str = ""


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """One task that failed (or could not reach the host) on one host."""

    task: str
    message: str
    unreachable: bool = False


@dataclass(frozen=True, slots=True)
class HostResult:
    """One host's counts from the play's final stats, and the tasks that failed on it."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    failures: tuple[TaskFailure, ...] = ()

    @property
    def status(self) -> Literal["ok", "changed", "failed", "unreachable"]:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


@dataclass(frozen=True, slots=True)
class PlaybookResult:
    """The outcome of one playbook run."""

    playbook: str
    status: str
    """ansible-runner's status: successful, failed, timeout, canceled or error."""
    rc: int
    hosts: dict[str, HostResult]
    elapsed_s: float
    crashed: bool = False
    """True when the play ended without its final stats (a syntax error, a missing role, a crash)."""
    error: str = ""
    """Why it crashed: the last lines of Ansible's own output."""

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.status == "failed")

    @property
    def unreachable_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.status == "unreachable")

    @property
    def ok(self) -> bool:
        return not self.crashed and not self.failed_hosts and not self.unreachable_hosts

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.hosts.values())


def _state_home() -> Path:
    base = os.environ.get("FJORD_ANSIBLE_STATE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fjord", "ansible"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


_SOCKET_PATH_MAX = 107
"""Bytes of a Unix socket's path (108 with its terminating NUL on Linux)."""


def control_path(directory: Path) -> str | None:
    """OpenSSH's ControlPath for connections run through Mitogen: `directory/%C` (a 40-character hash of
    host, port and user), the folder made private. None where that path would not fit a Unix socket: OpenSSH
    first binds `<path>.<16 random characters>` and, when that does not fit, exits with an error rather than
    going on without sharing, so a deep state directory shares nothing instead of failing every host. Made
    absolute: ansible-playbook does not run in the caller's working directory."""
    directory = directory.absolute()
    if len(os.fsencode(directory)) + len("/") + 40 + len(".") + 16 > _SOCKET_PATH_MAX:
        return None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(directory).replace("%", "%%") + "/%C"


@dataclass(frozen=True, slots=True)
class AnsibleSettings:
    """How Ansible runs: fjord's tuned settings by default, `stock()` for ansible-core's own."""

    forks: int = 50
    pipelining: bool = True
    strategy: str = "free"
    fact_cache: bool = True
    fact_cache_timeout_s: int = 7200
    control_persist_s: int = 600
    """How long an SSH connection outlives the run that opened it (OpenSSH's ControlPersist), so that the next
    run within that time skips the handshake. ansible-core's ssh plugin names the control socket itself; under
    Mitogen fjord names it (`ControlPath`, see `control_path`), without which OpenSSH keeps nothing open. Four
    testbed hosts, a one-task playbook, 8 runs each way alternating: 2.30 s -> 1.98 s a run, controller CPU
    1.92 s -> 1.51 s."""
    gather_subset: str | None = "min,virtual,chroot"
    """The facts a play gathers: what the roles read (distribution, service manager, kernel, virtualisation,
    chroot), not the hardware inventory and mounts; None gathers everything (ansible-core's default)."""
    inject_fact_vars: bool = False
    """Also expose every fact as a top-level `ansible_*` variable (ansible-core's default, deprecated there). The
    roles read `ansible_facts.*` only; without the copy, each task's variables are built without deep-copying
    and cleaning the whole fact set again, the largest controller cost per task in a profile of a rerun."""
    internal_poll_interval_s: float = 0.005
    """How long ansible-playbook's strategy loop sleeps between looks at its workers' results (ansible-core's
    `internal_poll_interval`, 0.001 s by default). At 1 ms the loop wakes a thousand times a second while hosts
    install packages, CPU the hosts on a small controller need. site.yml on four testbed hosts (2 CPUs, 3 rounds,
    same run): 1 ms: first run 28.4 s, rerun 8.0 s, controller CPU 17.0 s; 5 ms: 26.8 s, 8.2 s, 14.8 s; 10 ms:
    26.4 s, 8.8 s, 13.9 s (each poll can delay a task's successor by that much, which a rerun feels)."""
    mitogen: bool = True
    """Run through Mitogen's strategy (`fjord_mitogen_<strategy>`, or Mitogen's own `mitogen_<strategy>` with
    `mitogen_cpu_pinning`): one persistent Python interpreter per host, modules sent once and cached, instead of
    a new AnsiballZ upload and interpreter per task."""
    mitogen_cpu_pinning: bool = False
    """Keep Mitogen's fixed CPU pinning. Off by default: on a controller with fewer than four CPUs Mitogen puts the
    strategy process and every worker on one CPU (fjord.adapters.ansible_strategy); unpinned, site.yml on four
    testbed hosts ran its first run in 26.8 s instead of 30.0 s and its rerun in 9.1 s instead of 11.6 s (2 CPUs,
    3 rounds each, same run, polling every 10 ms)."""
    state_dir: Path | None = None
    """Private directory (0700) for the fact cache and SSH control sockets; default ~/.cache/fjord/ansible
    or $FJORD_ANSIBLE_STATE."""

    def __post_init__(self) -> None:
        # Mitogen ships free, linear and host_pinned only (fjord's unpinned plugins mirror them): refuse any other
        # strategy when the settings are made, not when a run is already being prepared.
        if self.mitogen and self.strategy not in ansible_strategy.STRATEGIES:
            allowed = ", ".join(ansible_strategy.STRATEGIES)
            raise ValueError(f"strategy: {self.strategy!r} has no Mitogen strategy; allowed: {allowed}")

    @classmethod
    def stock(cls) -> AnsibleSettings:
        """ansible-core's defaults: 5 forks, no pipelining, linear, facts gathered every play, ControlPersist 60s."""
        return cls(
            forks=5,
            pipelining=False,
            strategy="linear",
            fact_cache=False,
            control_persist_s=60,
            gather_subset=None,
            inject_fact_vars=True,
            internal_poll_interval_s=0.001,
            mitogen=False,
        )

    def env(self, site: str) -> dict[str, str]:
        """ANSIBLE_* settings for ansible-runner's environment."""
        state = self.state_dir or _state_home()
        env = {
            "ANSIBLE_FORKS": str(self.forks),
            "ANSIBLE_PIPELINING": str(self.pipelining),
            "ANSIBLE_STRATEGY": self.strategy,
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_INVENTORY_ENABLED": "yaml",
            "ANSIBLE_INJECT_FACT_VARS": str(self.inject_fact_vars),
            "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist={self.control_persist_s}s",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(state / "cp"),
        }
        if self.gather_subset:
            env["ANSIBLE_GATHER_SUBSET"] = self.gather_subset
        if self.mitogen:
            if path := control_path(state / "cp"):
                env["ANSIBLE_SSH_ARGS"] += " " + shlex.join(["-o", f"ControlPath={path}"])
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
            env[ansible_strategy.CACHE_ENV] = str(state.absolute() / "mitogen-cache.json")
            plugins, prefix = ansible_strategy.PLUGIN_DIR, "fjord_mitogen"
            if self.mitogen_cpu_pinning:
                import ansible_mitogen

                plugins, prefix = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy", "mitogen"
            env |= {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": f"{prefix}_{self.strategy}"}
        if self.fact_cache:
            facts = self.fact_cache_dir(site)
            facts.mkdir(parents=True, exist_ok=True, mode=0o700)
            env |= {
                "ANSIBLE_GATHERING": "smart",
                "ANSIBLE_CACHE_PLUGIN": "jsonfile",
                "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts),
                "ANSIBLE_CACHE_PLUGIN_TIMEOUT": str(self.fact_cache_timeout_s),
            }
        else:
            env |= {"ANSIBLE_GATHERING": "implicit", "ANSIBLE_CACHE_PLUGIN": "memory"}
        return env

    def config(self) -> str:
        """The ansible.cfg of a run: the settings ansible-core reads from no environment variable. A run reads
        only this file (ANSIBLE_CONFIG), never an ansible.cfg from the working directory, home or /etc, so a
        stray file cannot change how fjord's playbooks run."""
        return f"[defaults]\ninternal_poll_interval = {self.internal_poll_interval_s}\n"

    def fact_cache_dir(self, site: str) -> Path:
        """Where the JSON fact cache of `site` lives (shared by every run for that site)."""
        return (self.state_dir or _state_home()) / "facts" / site

    def runner_fact_cache(self, site: str) -> dict[str, str]:
        """ansible-runner's fact-cache arguments. Left alone, runner overrides ANSIBLE_CACHE_PLUGIN_CONNECTION
        with a folder inside its private data dir, which fjord deletes after each run, so a rerun would gather
        facts again; an absolute `fact_cache` is used as it is."""
        if self.fact_cache:
            return {"fact_cache_type": "jsonfile", "fact_cache": str(self.fact_cache_dir(site))}
        return {"fact_cache_type": "memory"}


class _Collector:
    """Turns the event stream into per-host failures and the final stats, and feeds a progress callback."""

    def __init__(self, on_event: Callable[[ProgressEvent], None] | None) -> None:
        self.on_event = on_event
        self.stats: dict[str, dict[str, int]] | None = None
        self.failures: dict[str, list[TaskFailure]] = {}

    def __call__(self, event: Mapping[str, Any]) -> bool:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        task = str(data.get("task", "")).strip()
        host = str(data.get("host", ""))
        kind: EventKind | None = None
        if name == "playbook_on_play_start":
            kind = "play"
        elif name == "playbook_on_task_start":
            kind = "task"
        elif name == "runner_on_ok":
            kind = "changed" if (data.get("res") or {}).get("changed") else "ok"
        elif name == "runner_on_skipped":
            kind = "skipped"
        elif name == "runner_on_failed":
            kind = "failed"
            if not data.get("ignore_errors"):
                self.failures.setdefault(host, []).append(TaskFailure(task, _message(data.get("res"))))
        elif name == "runner_on_unreachable":
            kind = "unreachable"
            self.failures.setdefault(host, []).append(TaskFailure(task, _message(data.get("res")), unreachable=True))
        elif name == "playbook_on_stats":
            self.stats = {k: dict(data.get(k) or {}) for k in _STATS}
        if kind is not None and self.on_event is not None:
            self.on_event(ProgressEvent(kind, task=task, host=host, play=str(data.get("play", ""))))
        return False  # results are taken here; no need for ansible-runner to write every event to disk

    def hosts(self) -> dict[str, HostResult]:
        stats = self.stats or {}
        names = set().union(*(stats.get(k, {}) for k in _STATS)) | set(self.failures)
        return {
            h: HostResult(
                host=h,
                ok=stats.get("ok", {}).get(h, 0),
                changed=stats.get("changed", {}).get(h, 0),
                failed=stats.get("failures", {}).get(h, 0),
                unreachable=stats.get("dark", {}).get(h, 0),
                skipped=stats.get("skipped", {}).get(h, 0),
                rescued=stats.get("rescued", {}).get(h, 0),
                ignored=stats.get("ignored", {}).get(h, 0),
                failures=tuple(self.failures.get(h, ())),
            )
            for h in sorted(names)
        }


_STATS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed")


def _message(res: object) -> str:
    if not isinstance(res, Mapping):
        return str(res or "")
    parts = [str(res.get("msg") or "").strip()]
    stderr = str(res.get("stderr") or res.get("module_stderr") or "").strip()
    if stderr and stderr not in parts[0]:
        parts.append(stderr.splitlines()[-1])
    return " | ".join(p for p in parts if p)[:500]


def run_playbook(
    playbook: str,
    inventory: Mapping[str, Any],
    *,
    site: str,
    playbooks_dir: Path | None = None,
    limit: Iterable[str] = (),
    tags: Iterable[str] = (),
    skip_tags: Iterable[str] = (),
    check: bool = False,
    extra_vars: Mapping[str, Any] | None = None,
    settings: AnsibleSettings | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    timeout_s: int | None = None,
) -> PlaybookResult:
    """Run `playbook` (a file under `playbooks_dir`) on `inventory` (an inventory document, e.g.
    `fjord.hosts.build_inventory(...).data`) and return per-host results. Never raises for host failures."""
    settings = settings or AnsibleSettings()
    project = playbooks_dir or default_playbooks_dir()
    if not (project / playbook).is_file():
        raise FileNotFoundError(f"playbook {playbook!r} not found in {project}")
    collector = _Collector(on_event)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fjord-ansible-") as tmp:
        private = Path(tmp)
        (private / "inventory").mkdir()
        (private / "inventory" / "hosts.json").write_text(json.dumps(inventory), encoding="utf-8")
        (private / "ansible.cfg").write_text(settings.config(), encoding="utf-8")
        env = settings.env(site) | {
            "ANSIBLE_CONFIG": str(private / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        }
        cmdline = " ".join(["--check", "--diff"] if check else [])
        # ansible-playbook from this interpreter's environment first (a venv's bin may not be on PATH).
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        # Imported here, not at the top: planning a site registers HostConfig resources through this module
        # but never runs a playbook, and ansible-runner's import is ~20 ms of every plan.
        import ansible_runner

        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(project),
            playbook=playbook,
            inventory=str(private / "inventory" / "hosts.json"),
            envvars=env | {"PATH": path},
            extravars=dict(extra_vars or {}),
            limit=",".join(limit) or None,
            tags=",".join(tags) or None,
            skip_tags=",".join(skip_tags) or None,
            forks=settings.forks,
            # ansible-runner points the jsonfile fact cache into its per-run artifacts folder (a temporary
            # folder here) unless told where it lives: name fjord's own, or keep its hands off stock settings.
            **settings.runner_fact_cache(site),
            cmdline=cmdline or None,
            event_handler=collector,
            quiet=True,
            timeout=timeout_s,
            settings={"suppress_ansible_output": True},
        )
        crashed = collector.stats is None
        error = ""
        if crashed:
            lines = [line for line in runner.stdout.read().splitlines() if line.strip()]
            error = "\n".join(lines[-40:]) or f"ansible-runner status {runner.status}, rc {runner.rc}, no output"
        return PlaybookResult(
            playbook=playbook,
            status=str(runner.status),
            rc=int(runner.rc if runner.rc is not None else -1),
            hosts=collector.hosts(),
            elapsed_s=time.monotonic() - started,
            crashed=crashed,
            error=error,
        )


__all__ = [
    "AnsibleSettings",
    "HostResult",
    "PlaybookResult",
    "ProgressEvent",
    "TaskFailure",
    "control_path",
    "default_playbooks_dir",
    "run_playbook",
]
