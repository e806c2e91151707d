"""Mitogen's strategies without Mitogen's CPU pinning, their workers' caches warmed before they fork and the
multiplexer's work shared within a run and kept between runs: the strategy plugins fjord's runs use by default.

Mitogen pins its processes to CPUs by a fixed scheme (`ansible_mitogen.affinity`, tested by its authors "on an
otherwise idle 16 thread machine"): the connection multiplexer to CPU 0 and, on a machine with fewer than four
CPUs, the strategy process, every worker and their SSH children together to CPU 1. On a two-core controller that
is one core for all of Ansible's own work while the other idles or serves the hosts, and no cgroup or other load
on the controller is taken into account. Each plugin here installs Mitogen's base `Policy` (it assigns nothing,
so the kernel schedules these processes like any other) and then is Mitogen's strategy of the same name, whose
run first calls `warm_worker_caches()`, `share_dependency_scans()` and `remember_between_runs()`.
`AnsibleSettings(mitogen_cpu_pinning=True)` runs Mitogen's own plugins instead (none of these).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PLUGIN_DIR = Path(__file__).parent
"""The folder to put on ANSIBLE_STRATEGY_PLUGINS: `fjord_mitogen_<strategy>` for free, linear, host_pinned."""

STRATEGIES = ("free", "linear", "host_pinned")

CACHE_ENV = "FJORD_MITOGEN_CACHE"
"""Names the file (in fjord's private state folder) where `remember_between_runs` keeps what Mitogen's
multiplexer would otherwise work out again in every run; `AnsibleSettings.env` sets it for Mitogen runs."""


def without_cpu_pinning() -> None:
    """Replace Mitogen's affinity policy with its no-op base class. Called before Mitogen starts its processes:
    the strategy's run assigns the CPUs (`ansible_mitogen.affinity.policy` is looked up at each call)."""
    import ansible_mitogen.affinity

    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()


_warmed = False


def warm_worker_caches() -> None:
    """Fill, in the strategy process before it forks, the caches each forked worker otherwise fills again for
    itself and throws away: the Jinja filter and test plugin loaders (every builtin filter and test plugin file
    imported and wrapped) and the Jinja lexer with its regular expressions. Mitogen's strategy does the same
    for the module, action and connection loaders. Templating one expression that uses a filter and a test
    fills both loaders and the lexer, through ansible-core's public Templar. Once per process.

    site.yml on four testbed hosts (2 CPUs, first run and rerun, two rounds each, same run): each worker's own
    CPU time went from 23.2 ms to 18.8 ms on average (1,008 workers each way)."""
    global _warmed
    if _warmed:
        return
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    expression = "{{ fjord_warm | length is number }}"
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core before 2.19 trusts every template
        pass
    else:
        expression = trust_as_template(expression)
    Templar(loader=DataLoader(), variables={"fjord_warm": [1]}).template(expression)
    _warmed = True


class _CompileOnce:
    """`compile` for Mitogen's module dependency scan, each distinct (source, name, mode) compiled once per
    process. Counts what it compiled and what it reused."""

    def __init__(self) -> None:
        self.codes: dict[tuple[bytes | str, str, str], Any] = {}
        self.compiled = 0
        self.reused = 0

    def __call__(self, source: bytes | str, filename: str, mode: str, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # not how the scan calls it: no sharing for other uses
            return compile(source, filename, mode, *args, **kwargs)
        key = (source, filename, mode)
        code = self.codes.get(key)
        if code is None:
            code = self.codes[key] = compile(source, filename, mode)
            self.compiled += 1
        else:
            self.reused += 1
        return code


def share_dependency_scans() -> _CompileOnce:
    """Compile each file Mitogen's module dependency scan reads once per run, not once per module that
    imports it. Called in the strategy process before Mitogen forks its connection multiplexer, which runs
    the scan (`ansible_mitogen.services.ModuleDepService`); the multiplexer inherits it.

    The scan (`ansible_mitogen.module_finder`) finds a module's `module_utils` by compiling the module and
    every file it imports, then reading the imports off the code objects. It caches its answer per module,
    but not the files: `ansible.module_utils.basic` and its ~40 imports are compiled again for every
    distinct module a run uses: a no-change rerun of site.yml on the testbed made 524 compiles, ~1 s of the
    multiplexer's CPU under a profiler, and 174 with this in place. Identical source compiles to the same
    code, so the answers are unchanged. Installed as that module's own `compile` (a module global shadows
    the builtin for that module only; harmless should a later Mitogen stop compiling). Returns the counter."""
    import ansible_mitogen.module_finder as finder

    current = getattr(finder, "compile", None)
    if isinstance(current, _CompileOnce):
        return current
    once = _CompileOnce()
    finder.compile = once
    return once


Stamp = list[int] | None
"""A path's (mtime in ns, size), or None where it does not exist."""


def _stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


class RunCache:
    """What Mitogen's multiplexer works out again in every run, kept between runs in one JSON file:

    - each module's `module_utils` dependencies (`ansible_mitogen.module_finder.scan`: the module and every
      file it imports compiled to read their imports: ~0.3 s of the multiplexer for site.yml), with the
      stamps (mtime, size) that show them current: the module, every file found, the search folders and the
      folder of every package found. A file that changed, or a folder where a file came or went (so an import
      could resolve differently), scans again;
    - the minified source of Mitogen's own modules that it sends to each new host interpreter
      (`mitogen.minify.minimize_source`, pure Python tokenizing: ~0.4 s), keyed by the source's
      SHA-256.

    A file that cannot be read or written only costs the work again; it never fails a run. No-change reruns of
    site.yml on the testbed, alternating with and without the file, 4 rounds: median 8.53 s -> 8.34 s (the
    profile figures above are under a profiler)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        data: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                data = loaded
        except (OSError, ValueError):
            pass
        scans, minified = data.get("scans"), data.get("minified")
        self.scans: dict[str, Any] = scans if isinstance(scans, dict) else {}
        self.minified: dict[str, Any] = minified if isinstance(minified, dict) else {}

    def _save(self) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"scans": self.scans, "minified": self.minified}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def scan(self, original: Callable[..., Any], module_name: str, module_path: str, search_path: Iterable[str]) -> Any:
        search = [str(p) for p in search_path]
        key = "\0".join([module_name, str(module_path), *search])
        with self.lock:
            entry = self.scans.get(key)
            if isinstance(entry, dict) and all(_stamp(p) == s for p, s in entry.get("stamps", {}).items()):
                return [tuple(found) for found in entry["found"]]
        found = original(module_name=module_name, module_path=module_path, search_path=tuple(search))
        paths = [str(module_path), *search, *(str(path) for _, path, _ in found)]
        paths += [os.path.dirname(path) for _, path, is_pkg in found if is_pkg]
        with self.lock:
            self.scans[key] = {"found": [list(f) for f in found], "stamps": {p: _stamp(p) for p in paths}}
            self._save()
        return found

    def minimize_source(self, original: Callable[[Any], str], source: Any) -> str:
        text = source.decode("utf-8") if isinstance(source, bytes) else str(source)
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self.lock:
            done = self.minified.get(key)
            if isinstance(done, str):
                return done
        done = original(source)
        with self.lock:
            self.minified[key] = done
            self._save()
        return done


def remember_between_runs() -> RunCache | None:
    """Keep Mitogen's module dependency scans and minified sources between runs (`RunCache`), in the file named
    by $FJORD_MITOGEN_CACHE; nothing where it is unset. Called, like `share_dependency_scans`, in the strategy
    process before Mitogen forks its multiplexer, which does this work and inherits the wrappers. Once per
    process: returns the cache already installed."""
    import ansible_mitogen.module_finder as finder
    import mitogen.minify

    current = getattr(finder.scan, "fjord_cache", None)
    if isinstance(current, RunCache):
        return current
    path = os.environ.get(CACHE_ENV)
    if not path:
        return None
    cache = RunCache(Path(path))
    scan, minimize = finder.scan, mitogen.minify.minimize_source

    def cached_scan(module_name: str, module_path: str, search_path: Iterable[str]) -> Any:
        return cache.scan(scan, module_name, module_path, search_path)

    def cached_minimize(source: Any) -> str:
        return cache.minimize_source(minimize, source)

    cached_scan.fjord_cache = cache  # type: ignore[attr-defined]
    finder.scan = cached_scan
    mitogen.minify.minimize_source = cached_minimize
    return cache


def warmed(strategy: type[Any]) -> type[Any]:
    """`strategy` (a Mitogen strategy class) whose run first calls `warm_worker_caches()`,
    `share_dependency_scans()` and `remember_between_runs()`."""

    class StrategyModule(strategy):  # type: ignore[misc]
        def run(self, *args: Any, **kwargs: Any) -> Any:
            warm_worker_caches()
            share_dependency_scans()
            remember_between_runs()
            return super().run(*args, **kwargs)

    return StrategyModule
