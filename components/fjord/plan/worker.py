"""Plan one stack in this process and print the result as JSON (run by the runner, one per stack).

Exit codes: 0 planned; 3 the site was rejected (problems on stdout as JSON); 1 anything else.
"""

from __future__ import annotations

import gc

if __name__ == "__main__":
    # The worker's imports (Pulumi's SDK, pydantic, fjord's modules, ~0.25 s) make objects that live until the
    # process exits; collecting while importing finds nothing to free. See collect_young_only().
    gc.disable()

import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from fjord import program
from fjord.plan.mocks import STACK_TYPE, PlanMocks, RecordingMonitor
from fjord.policy import evaluate, load_settings, policy_input
from fjord.policy.rules import PolicySettings, default_settings_path
from fjord.sizing.alloc import read as read_alloc
from fjord.sizing.site import validate_site
from fjord.spec.errors import SiteError
from fjord.spec.load import SITE_KEY, StackConfig, read_stack, stacks_dir

EXIT_REJECTED = 3


def pulumi_config(cfg: StackConfig) -> dict[str, str]:
    """The config map the Pulumi CLI would hand the program: strings as-is, everything else as JSON."""
    values: dict[str, Any] = dict(cfg.config)
    if not cfg.embedded_default:
        values[SITE_KEY] = cfg.site
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def stack_outputs() -> dict[str, Any]:
    """The values the program exported, resolved (the mock root stack never re-registers them).

    Each output is awaited on its own: `Output.all` would first lift every nested value of the
    inventory into an Output, seconds for a large site. An output that is not known (it holds an unknown
    anywhere inside) resolves to None, as `future()` gives it; that is read from the known flag Pulumi set
    when the output was made, because `future()` would walk the whole value again to find out (narvik's
    25,200-host inventory: ~0.1 s).
    """
    root = pulumi.runtime.settings.get_root_resource()
    exported: dict[str, pulumi.Output[Any]] = getattr(root, "outputs", {})

    async def value(v: pulumi.Output[Any]) -> Any:
        return await v.future(with_unknowns=True) if await v.is_known() else None

    async def resolve() -> dict[str, Any]:
        return {k: await value(v) if isinstance(v, pulumi.Output) else v for k, v in exported.items()}

    return _sync_await(resolve())


def run(cfg: StackConfig, monitor_type: type[RecordingMonitor] = RecordingMonitor) -> dict[str, Any]:
    """Plan the stack; `monitor_type` may record more of each registration (bench/plan_scale.py does)."""
    started = time.perf_counter()
    pulumi.runtime.set_all_config(pulumi_config(cfg), secret_keys=list(cfg.secret_keys))
    mocks = PlanMocks()
    monitor = monitor_type(mocks)
    # Pulumi's testing guide imports a program after set_mocks because its module registers resources on
    # import; fjord.program registers nothing until main() runs, so the worker loads it with its other imports.
    pulumi.runtime.set_mocks(mocks, project="fjord", stack=cfg.stack, preview=True, monitor=monitor)

    def program_main() -> None:
        program.main(cfg.path.parent if cfg.path is not None else None)

    _sync_await(run_pulumi_func(program_main))
    regs = monitor.registrations
    by_urn = {r.urn: r for r in regs}
    by_component: Counter[str] = Counter()
    for r in regs:
        parent = by_urn.get(r.parent)
        while parent is not None and parent.type != STACK_TYPE:
            by_component[parent.urn] += 1
            parent = by_urn.get(parent.parent)
    tree = [
        {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "custom": r.custom}
        for r in regs
        if r.type != STACK_TYPE
    ]
    outputs = stack_outputs()
    inventory = outputs.get("inventory") or []
    return {
        "stack": cfg.stack,
        "site": outputs.get("site"),
        "resources": len(regs),
        "duplicates": monitor.duplicates,
        "by_type": dict(Counter(r.type for r in regs)),
        "by_component": {by_urn[u].name: n for u, n in by_component.items()},
        "summary": outputs.get("summary", {}),
        "inventory_hosts": len(inventory),
        "tree": tree,
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


FULL_COLLECTION_NEVER = 1_000_000
"""Young-generation collections before a full one: more than any plan makes (narvik: ~60)."""


def skip_full_collections() -> None:
    """Keep the cyclic garbage collector to its young generations for the rest of this process.

    A full collection walks every object alive: the validated spec, every node of the sized site, the
    inventory and Pulumi's outputs. At narvik's size each takes a tenth of a second, and a plan triggered
    five of them (a fifth of its run time) while finding next to nothing to free: the plan keeps what it
    builds until it ends. The worker is one plan's process, so young cycles are still collected and the rest
    is freed at exit (peak RSS within 2 % of a default run; narvik ~0.4 s faster, bench/plan_scale.py).
    """
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_COLLECTION_NEVER)


def collect_young_only() -> int:
    """After the imports: set the modules' objects aside and collect only young generations from here on.

    The worker disables the collector before its first import (when run as `python -m fjord.plan.worker`):
    importing makes ~90,000 objects that live until the process exits, and the collector walked them ~140
    times, freeing nothing (~6 % of a `dev` plan's wall time, bench/plan_scale.py). `gc.freeze()` moves them out of
    every generation, so no later collection walks them either; then the collector is enabled again, young
    generations only (`skip_full_collections`). Returns how many collections ran before it was called.
    """
    before = sum(int(s["collections"]) for s in gc.get_stats())
    gc.freeze()
    skip_full_collections()
    gc.enable()
    return before


def collector_report(while_importing: int) -> dict[str, int]:
    """What the garbage collector did in this worker: collections before the plan (while importing), objects
    set aside by `gc.freeze()`, full collections in all."""
    full = gc.get_stats()[2]["collections"]
    return {"while_importing": while_importing, "frozen": gc.get_freeze_count(), "full": full}


def policy(cfg: StackConfig, settings: PolicySettings, folder: Path | None) -> dict[str, Any]:
    """fjord's policy rules over the stack's site (validated and sized again, from its allocation record as the
    program sizes it: ~1 % of a plan), as data."""
    site, size = validate_site(cfg.site, f"stack {cfg.stack}", read_alloc(cfg.stack, stacks_dir(folder)))
    report = evaluate(policy_input(cfg.stack, site, size, cfg, settings=settings))
    return report.as_dict()


def main(argv: list[str]) -> int:
    """`python -m fjord.plan.worker <stack> [<stacks folder>] [--policy-config <file>]`."""
    while_importing = collect_young_only()
    args = [a for a in argv if not a.startswith("--policy-config=")]
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--policy-config=")]
    stack, folder = args[0], Path(args[1]) if len(args) > 1 else None
    try:
        settings = load_settings(Path(given[-1]) if given else default_settings_path(stacks_dir(folder)))
        cfg = read_stack(stack, folder)
        result = run(cfg)
        result["policy"] = policy(cfg, settings, folder)
    except SiteError as exc:
        json.dump({"stack": stack, "problems": exc.lines(), "source": exc.source}, sys.stdout)
        return EXIT_REJECTED
    json.dump({**result, "gc": collector_report(while_importing)}, sys.stdout)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # A throwaway process: skip interpreter teardown, where the Pulumi SDK's private event loop
    # reports a spurious "Invalid file descriptor" from its destructor.
    os._exit(code)
