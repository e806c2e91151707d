"""Mitogen's strategies without Mitogen's CPU pinning: the strategy plugins fjord's runs use by default.

Mitogen pins its processes to CPUs by a fixed scheme (`ansible_mitogen.affinity`, tested by its authors "on an
otherwise idle 16 thread machine"): the connection multiplexer to CPU 0 and, on a machine with fewer than four
CPUs, the strategy process, every worker and their SSH children together to CPU 1. On a two-core controller that
is one core for all of Ansible's own work while the other idles or serves the hosts, and no cgroup or other load
on the controller is taken into account. Each plugin here installs Mitogen's base `Policy` (it assigns nothing,
so the kernel schedules these processes like any other) and then is Mitogen's strategy of the same name.
`AnsibleSettings(mitogen_cpu_pinning=True)` runs Mitogen's own plugins instead.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).parent
"""The folder to put on ANSIBLE_STRATEGY_PLUGINS: `fjord_mitogen_<strategy>` for free, linear, host_pinned."""

STRATEGIES = ("free", "linear", "host_pinned")


def without_cpu_pinning() -> None:
    """Replace Mitogen's affinity policy with its no-op base class. Called before Mitogen starts its processes:
    the strategy's run assigns the CPUs (`ansible_mitogen.affinity.policy` is looked up at each call)."""
    import ansible_mitogen.affinity

    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
