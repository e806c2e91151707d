"""Mitogen's strategies without Mitogen's CPU pinning, their workers' caches warmed before they fork and the
multiplexer's dependency scans sharing their compiles: the strategy plugins fjord's runs use by default.

Mitogen pins its processes to CPUs by a fixed scheme (`ansible_mitogen.affinity`, tested by its authors "on an
otherwise idle 16 thread machine"): the connection multiplexer to CPU 0 and, on a machine with fewer than four
CPUs, the strategy process, every worker and their SSH children together to CPU 1. On a two-core controller that
is one core for all of Ansible's own work while the other idles or serves the hosts, and no cgroup or other load
on the controller is taken into account. Each plugin here installs Mitogen's base `Policy` (it assigns nothing,
so the kernel schedules these processes like any other) and then is Mitogen's strategy of the same name, whose
run first calls `warm_worker_caches()` and `share_dependency_scans()`. `AnsibleSettings(mitogen_cpu_pinning=True)`
runs Mitogen's own plugins instead (neither).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLUGIN_DIR = Path(__file__).parent
"""The folder to put on ANSIBLE_STRATEGY_PLUGINS: `fjord_mitogen_<strategy>` for free, linear, host_pinned."""

STRATEGIES = ("free", "linear", "host_pinned")


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


def warmed(strategy: type[Any]) -> type[Any]:
    """`strategy` (a Mitogen strategy class) whose run first calls `warm_worker_caches()` and
    `share_dependency_scans()`."""

    class StrategyModule(strategy):  # type: ignore[misc]
        def run(self, *args: Any, **kwargs: Any) -> Any:
            warm_worker_caches()
            share_dependency_scans()
            return super().run(*args, **kwargs)

    return StrategyModule
