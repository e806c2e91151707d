"""How fjord's sizing and offline plan scale, each figure beside a baseline measured in the same run.

Run `.venv/bin/python bench/plan_scale.py [--repeat N] [--quick] [--json]`. It prints and never asserts;
"meets"/"misses" is information. On a small noisy machine, read each fjord figure against the baseline
in its own row, not against an older run.

Sizing: synthetic ~1k/~10k/~100k GPU sites (the embedded default site with its cluster swapped for whole
GB200-NVL72 racks on an XDR fabric; hall, power budget and supernets enlarged to validate). "fjord wall s"
is `load_site` + `size_site` + the host inventory (`.hosts()`), median of --repeat runs; "peak MiB" is
the tracemalloc peak of Python allocations in a separate untimed run, not RSS. Baseline: a bare loop
building one dict of formatted strings per node (name and 7 addresses), the floor of any inventory that
size. Target: 100k GPUs < 1 s.

Plan: `python -m fjord.plan.worker <stack> stacks` in a subprocess; wall time around the whole process (interpreter
start and imports included; every child, fjord's and the baselines', runs from bytecode, which the bench compiles
first as `make install` does: `byte_compile`), peak RSS from `/usr/bin/time -f %M` (else the worker's own
`peak_rss_mib`), medians of --repeat runs. A stack's children run interleaved, one run of each per round, so a drift
of the machine's speed weighs on fjord and its baselines alike. Baseline: this file run as `--baseline N`, a bare
Pulumi mock program registering N `bench:index:Thing` components flat under the root stack with no outputs, N being
the stack's resource count less the root stack, measured the same way. fjord's figure also resolves the stack's
exports, inventory included (25,200 hosts for narvik); the bare baseline carries none, and a second baseline row
("vs bare + N-host export") exports an inventory of the same size the same way. Footnotes give each child's
in-process seconds (imports excluded: the worker imports fjord's program with Pulumi, before it starts its clock;
validating and sizing are included). Targets: narvik < 30 s and < 1.5 GiB; plan <= 1.3x the bare baseline. The row
"bare baseline, 2,000 res" (plus the root stack) is the per-stack resource budget, for reference.

The row "vs bare, same resources" compares with bare Pulumi registering exactly what fjord's plan registers:
`--record` plans the stack with fjord and writes every registration (type, name, parent, inputs as sent to
the engine, each component's outputs, the stack's exports) to JSON; `--replay` registers that through bare
Pulumi under the same input-echoing mock, without importing fjord, its wall time including reading the JSON.
It builds the same tree the way a Pulumi program does, through resource classes, each component creating its
children in its constructor (Pulumi records a stack trace for every resource made through a class). Its
ratio is fjord's own cost over Pulumi's cost for the same resources. fjord's plan worker collects no garbage
while importing and no full generation afterwards (`fjord.plan.worker.collect_young_only`); the row "and
fjord's GC setting" gives the replay that setting too, showing how much of the first ratio that setting
accounts for; the row "+ pydantic, pulumi-kubernetes" also has the replay load the two libraries the issue
prescribes for fjord's program (pydantic v2 for the spec, pulumi-kubernetes for the platform) and use pydantic
as little as a spec of pydantic models can: define one frozen model that forbids extra keys and validate one
value, which loads pydantic's schema machinery on first use (~35 ms). That is the fixed cost no fjord plan
avoids.

The row "bare + fjord's own work" is the floor of any plan of that stack: the bare baseline's wall time plus
what fjord computes for the stack without registering anything (`--floor`: importing the spec, sizing,
inventory and platform modules, validating and sizing the site, and building every per-unit value and the host
inventory the program registers), in-process seconds of a child that has first loaded, untimed, what the bare
baseline loads. Its ratio is the best the plan could reach
if registering fjord's resources cost Pulumi nothing beyond registering the bare program's.

The row "bare, same res. + libraries" sets the "+ pydantic, pulumi-kubernetes" replay (no fjord code at all)
against the issue's baseline: what registering exactly the stack's resources costs any program that loads and
uses the libraries the issue prescribes. Where it misses 1.3x, no such program can meet the target.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STACKS = ROOT / "stacks"
GNU_TIME = shutil.which("time", path="/usr/bin")
MIB = 1024 * 1024
SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000}
NVL72 = 72
Pair = tuple[float | None, float | None]
THIS = [sys.executable, "-m", "bench.plan_scale"]
"""This file as a child process (--baseline, --floor, --record, --replay), run from the repository root and
from its bytecode, as the plan worker runs (a script given by path is compiled again in every process).
Its module-level imports are those a bare Pulumi program loads anyway: what only the parent uses is
imported where it is used."""


def synthetic_site(gpus: int) -> dict[str, Any]:
    """The default site with one GB200-NVL72 cluster of whole racks, ~`gpus` GPUs, sized to validate."""
    from fjord.spec.load import default_site

    raw = copy.deepcopy(default_site())
    racks = max(1, round(gpus / NVL72))
    raw["name"] = f"bench-{racks}"
    raw["power"]["grid_budget_mw"] = 10 + racks * 0.3
    raw["halls"] = [{"name": "lab", "rack_positions": racks * 2 + 50, "rack_power_kw": 150, "cooling": "liquid"}]
    raw["fabrics"][0].update(technology="infiniband-xdr", switch="Q3400-RA")  # QM9700 tops out near 65k ports
    # The default kubernetes_* supernets (10.32.0.0/16, 10.33.0.0/20) overlap none of these.
    raw["ip_plan"].update(bmc="10.0.0.0/14", management="10.4.0.0/14", storage="10.8.0.0/14")
    raw["ip_plan"]["compute"] = "10.64.0.0/11"
    raw["clusters"][0].update(name="gb200", sku="GB200-NVL72", gpus=racks * NVL72)
    for tenant in raw.get("tenants", []):
        for quota in tenant.get("gpu_quotas", []):
            quota.update(cluster="gb200", gpus=racks * NVL72)
    return raw


def bare_inventory(nodes: int) -> list[dict[str, Any]]:
    """Sizing baseline: one dict per node with a name and 7 formatted addresses, nothing computed."""
    return [
        {
            "name": f"n{i:06d}",
            "bmc": f"10.0.{i >> 8 & 255}.{i & 255}",
            "management": f"10.4.{i >> 8 & 255}.{i & 255}",
            "storage": f"10.8.{i >> 8 & 255}.{i & 255}",
            "compute": [f"10.{64 + r}.{i >> 8 & 255}.{i & 255}" for r in range(4)],
        }
        for i in range(nodes)
    ]


def byte_compile() -> None:
    """Byte-compile fjord's modules and this file, as `make install` does and as pip does for an installed
    wheel. Where PYTHONDONTWRITEBYTECODE is set (the CI machines set it), Python never caches bytecode itself,
    and each child would compile again every module it imports that has none: ~20 ms of fjord's plan, ~4 ms
    of this file for a baseline. Bytecode older than its source is never used (Python checks the source's
    size and mtime), so this changes no result, only what the figures include."""
    import compileall

    if not (compileall.compile_dir(ROOT / "components", quiet=1) and compileall.compile_file(__file__, quiet=1)):
        raise SystemExit("byte-compiling fjord's modules failed")


def row(case: str, count: str, fjord: Pair, base: Pair, target: str, **extra: Any) -> dict[str, Any]:
    """A table row: fjord's (seconds, MiB), the baseline's, the target verdicts, extras for --json."""
    figures = dict(zip(("fjord_s", "fjord_mib", "base_s", "base_mib"), (*fjord, *base), strict=True))
    return {"case": case, "count": count, **figures, "target": target, **extra}


def verdict(ok: bool) -> str:
    return "meets" if ok else "misses"


def timed(fn: Any, repeat: int) -> tuple[float, float]:
    """(median seconds over `repeat` runs, tracemalloc peak MiB of one more run)."""
    import statistics
    import tracemalloc

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak


def bench_sizing(label: str, gpus: int, repeat: int) -> dict[str, Any]:
    from fjord.sizing.site import size_site
    from fjord.spec.load import load_site

    raw = synthetic_site(gpus)
    size = size_site(load_site(raw, label))
    # Sizing includes the full host inventory (every node with all its addresses), which sizing itself
    # derives lazily: the figure is what a consumer of the inventory pays, not just the counts.
    secs, peak = timed(lambda: size_site(load_site(raw, label)).hosts(), repeat)
    base_secs, base_peak = timed(lambda: bare_inventory(size.nodes), repeat)
    target = f"< 1 s: {verdict(secs < 1)}" if gpus >= 100_000 else "-"
    return row(f"sizing {label} GPUs", f"{size.gpus:,} GPUs", (secs, peak), (base_secs, base_peak), target)


def _run_once(args: list[str]) -> tuple[float, float, dict[str, Any]]:
    """Run a child once: (wall seconds, peak RSS MiB, its JSON)."""
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss_file:
        cmd = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *args] if GNU_TIME else args
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        data: dict[str, Any] = json.loads(proc.stdout)
        text = Path(rss_file.name).read_text().split()
        return wall, int(text[-1]) / 1024 if GNU_TIME and text else float(data["peak_rss_mib"]), data


def run_children(children: dict[str, list[str]], repeat: int) -> dict[str, dict[str, Any]]:
    """Run each child `repeat` times, interleaved (one run of each per round), so that a drift of this
    machine's speed during the run weighs on every figure alike. Per child: median wall, median peak RSS
    (MiB), median in-process seconds (its JSON's `seconds`) and its last JSON."""
    runs: dict[str, list[tuple[float, float, dict[str, Any]]]] = {name: [] for name in children}
    for _ in range(repeat):
        for name, args in children.items():
            runs[name].append(_run_once(args))
    from statistics import median as med

    return {
        name: {
            "wall": med(r[0] for r in rs),
            "rss": med(r[1] for r in rs),
            "inproc": med(float(r[2]["seconds"]) for r in rs),
            "data": rs[-1][2],
        }
        for name, rs in runs.items()
    }


def bench_plan(stack: str, repeat: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        # fjord's plan, recorded once untimed: its resources and exports size the baselines and the replay.
        recorded = Path(tmp) / f"{stack}.json"
        _, _, plan = _run_once([*THIS, "--record", stack, str(recorded)])
        resources, hosts = int(plan["resources"]), int(plan["inventory_hosts"])
        replay = [*THIS, "--replay", str(recorded)]
        children = {
            "fjord": [sys.executable, "-m", "fjord.plan.worker", stack, str(STACKS)],
            # A bare program with as many empty components (the baseline), then exporting an
            # inventory of the same size: what the payload alone costs.
            "base": [*THIS, "--baseline", str(resources - 1)],
            "loaded": [*THIS, "--baseline", str(resources - 1), "--hosts", str(hosts)],
            # The same resources through bare Pulumi: what Pulumi itself costs for exactly what fjord registers;
            # then with the plan worker's GC setting; then also loading pulumi-kubernetes and pydantic, with
            # one pydantic model built and used, as fjord's program must: the floor of its fixed costs.
            "same": replay,
            "same_gc": [*replay, "--young-gc-only"],
            "same_libs": [*replay, "--young-gc-only", "--libraries"],
            # fjord's own work for this stack without Pulumi (in-process seconds).
            "own": [*THIS, "--floor", stack],
        }
        got = run_children(children, repeat)
    fjord, base = got["fjord"], got["base"]
    for name in ("fjord", "same"):
        if int(got[name]["data"]["resources"]) != resources:
            raise RuntimeError(f"{name} for {stack} registered {got[name]['data']['resources']}, not {resources}")
    fj = (fjord["wall"], fjord["rss"])
    targets = [f"<= 1.3x base: {verdict(fjord['wall'] / base['wall'] <= 1.3)}"]
    if stack == "narvik":
        targets[:0] = [f"< 30 s: {verdict(fjord['wall'] < 30)}", f"< 1.5 GiB: {verdict(fjord['rss'] < 1536)}"]
    extra = {
        "fjord_inproc_s": fjord["inproc"],
        "base_inproc_s": base["inproc"],
        "inventory_hosts": hosts,
        "same_inproc_s": got["same"]["inproc"],
        "same_load_s": float(got["same"]["data"]["load_s"]),
        "own_work_s": got["own"]["inproc"],
    }
    count = f"{resources:,} res"
    rows = [row(f"plan {stack}", count, fj, (base["wall"], base["rss"]), "; ".join(targets), **extra)]
    for case, name, target in (
        (f"  vs bare + {hosts:,}-host export", "loaded", None),
        ("  vs bare, same resources", "same", "<= 1.3x: {}"),
        ("    and fjord's GC setting", "same_gc", "<= 1.3x: {} (information)"),
        ("    + pydantic, pulumi-kubernetes", "same_libs", "<= 1.3x: {} (information)"),
    ):
        other = got[name]
        verdicts = "information" if target is None else target.format(verdict(fjord["wall"] / other["wall"] <= 1.3))
        rows.append(row(case, count, fj, (other["wall"], other["rss"]), verdicts))
    # The floor: fjord's own work added to the bare program's wall time.
    best = base["wall"] + got["own"]["inproc"]
    target = f"best reachable: {verdict(best / base['wall'] <= 1.3)} 1.3x"
    rows.append(row("  bare + fjord's own work", count, (best, None), (base["wall"], base["rss"]), target))
    # The prescribed libraries' floor: bare Pulumi registering exactly fjord's resources with pydantic and
    # pulumi-kubernetes loaded and used, no fjord code at all, against the baseline. Where this
    # misses 1.3x, no program doing this stack's job with those libraries can meet it.
    libs = got["same_libs"]
    target = f"any program with the libraries: {verdict(libs['wall'] / base['wall'] <= 1.3)} 1.3x"
    rows.append(
        row("  bare, same res. + libraries", count, (libs["wall"], libs["rss"]), (base["wall"], base["rss"]), target)
    )
    return rows


def floor(stack: str) -> dict[str, Any]:
    """fjord's own work for `stack` with no Pulumi registration (run in a child via --floor): import the spec,
    sizing, inventory and platform modules, read and validate the stack, size it, and build every value the
    program hands to Pulumi (each unit's nodes, BMC endpoints and inventory JSON, the host inventory, the
    Kubernetes platform objects). Any program that registers these resources pays at least this on top of
    Pulumi's own cost, so (bare baseline + floor) / bare baseline is the best ratio the plan can reach.
    It first loads, untimed, what the bare baseline loads (Pulumi's SDK and its mock runtime), so that the
    modules both load (much of the standard library, protobuf, grpc) are not counted twice."""
    import pulumi.runtime.mocks  # noqa: F401  (untimed: the bare baseline's own imports)
    from pulumi.runtime.stack import run_pulumi_func  # noqa: F401
    from pulumi.runtime.sync_await import _sync_await  # noqa: F401

    started = time.perf_counter()
    from fjord.hosts.inventory import unit_inventory
    from fjord.platform import build_platform
    from fjord.sizing.bmc import bmc_endpoints
    from fjord.sizing.site import size_site
    from fjord.spec.load import load_site, read_stack

    cfg = read_stack(stack, STACKS)
    spec = load_site(cfg.site, source=f"stack {stack}")
    size = size_site(spec)
    values = 0
    inventory = []
    for c in size.clusters:
        if c.scheduler == "kubernetes":
            values += len(build_platform(spec, c).objects)
        for u in c.units:
            nodes = u.nodes()
            values += len(bmc_endpoints(nodes, spec.bmc))
            values += len(unit_inventory(spec, u, nodes=nodes).to_json())
            inventory += [n.inventory_record() for n in nodes]
    return {
        "resources": 0,
        "inventory_hosts": len(inventory),
        "values": values,
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def record(stack: str, into: str) -> dict[str, Any]:
    """Plan `stack` with fjord (run in a child via --record) and write every registration to `into` as JSON:
    type, name, parent, custom, the inputs as sent to the engine, a component's registered outputs, and the
    stack's exports. `replay` registers exactly this through bare Pulumi."""
    from google.protobuf import json_format  # type: ignore[import-untyped]

    from fjord.plan import mocks as plan_mocks
    from fjord.plan import worker
    from fjord.spec.load import read_stack

    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}

    class Recorder(plan_mocks.RecordingMonitor):
        """fjord's plan monitor, which records each registration, plus its inputs and outputs as sent."""

        def RegisterResource(self, request: Any) -> Any:
            # Registrations arrive on several threads: key by this request's URN, not the newest record.
            inputs[self.make_urn(request.parent, request.type, request.name)] = json_format.MessageToDict(
                request.object
            )
            return super().RegisterResource(request)

        def RegisterResourceOutputs(self, request: Any) -> Any:
            outputs[request.urn] = json_format.MessageToDict(request.outputs)
            return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    result = worker.run(read_stack(stack, STACKS), monitor_type=Recorder)
    records = [
        {"urn": r["urn"], "type": r["type"], "name": r["name"], "parent": r["parent"], "custom": r["custom"]}
        | {"inputs": inputs[r["urn"]]}
        for r in result["tree"]
    ]
    exports = worker.stack_outputs()
    Path(into).write_text(json.dumps({"records": records, "outputs": outputs, "exports": exports}))
    return {
        "resources": result["resources"],
        "inventory_hosts": result["inventory_hosts"],
        "seconds": result["seconds"],
        "peak_rss_mib": result["peak_rss_mib"],
    }


def _bare_pulumi(stack: str, echo_inputs: bool) -> Any:
    """Pulumi's mock runtime with its stock monitor (returned); custom resources' state: their inputs, or {}."""
    import pulumi
    from pulumi.runtime.mocks import MockMonitor

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
            return f"{args.name}-id", dict(args.inputs) if echo_inputs else {}

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[Any] | None]:
            return {}, None

    mocks = Mocks()
    monitor = MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=stack, stack=stack, preview=True, monitor=monitor)
    return monitor


def _known(value: Any) -> Any:
    """A known Output of plain data, made as fjord makes its exports (`fjord.components._outputs.plain`)."""
    import pulumi

    async def ready() -> Any:
        return value

    return pulumi.Output.from_input(0).apply(lambda _: ready())


def _resolve(out: Any) -> Any:
    """An export's value, read as fjord's plan worker reads it (`fjord.plan.worker.stack_outputs`): the known
    flag Pulumi set when the output was made, then the value without a second walk for unknowns."""
    from pulumi.runtime.sync_await import _sync_await

    async def value() -> Any:
        return await out.future(with_unknowns=True) if await out.is_known() else None

    return _sync_await(value())


def replay(path: str, young_gc_only: bool = False, libraries: bool = False) -> dict[str, Any]:
    """A bare Pulumi mock program registering the resources `record` wrote (run in a child via --replay):
    the same types, names, parents and inputs, the components' outputs and the stack's exports, under a mock
    that echoes inputs as state as fjord's plan does. No fjord module is imported; reading the JSON is this
    program's counterpart of fjord reading and sizing its stack, and is timed with it. `young_gc_only` gives it
    the plan worker's garbage-collector setting (`fjord.plan.worker.collect_young_only`, restated here: none
    while importing, then the imported objects frozen and young generations only);
    `libraries` first loads the two libraries the issue prescribes for fjord's program beyond Pulumi's SDK:
    pulumi-kubernetes (the package, which loads its Provider class, as much as fjord's program loads:
    tests/test_layers.py), and pydantic as used by the smallest spec in pydantic v2 models (one frozen model
    forbidding extra keys, one field, one value validated: pydantic loads its schema machinery when the first
    model is built)."""
    import gc

    if young_gc_only:
        gc.disable()
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    validated: dict[str, Any] | None = None
    if libraries:
        import pulumi_kubernetes  # the package and its Provider, as much of it as fjord's program loads
        import pydantic

        class Spec(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
            name: str

        validated = Spec.model_validate({"name": "replay"}).model_dump()
        del pulumi_kubernetes
    if young_gc_only:
        gc.freeze()
        gen0, gen1, _ = gc.get_threshold()
        gc.set_threshold(gen0, gen1, 1_000_000)
        gc.enable()

    started = time.perf_counter()
    plan = json.loads(Path(path).read_text())
    loaded = time.perf_counter() - started
    monitor = _bare_pulumi("replay", echo_inputs=True)
    exported: list[pulumi.Output[Any]] = []

    children: dict[str, list[dict[str, Any]]] = {}
    for rec in plan["records"]:
        children.setdefault(rec["parent"], []).append(rec)

    # Resources are made through classes, each component making its children in its constructor, as a
    # Pulumi program builds a tree: Pulumi records each such resource's source position (a stack trace),
    # which a bare `pulumi.CustomResource(...)` call, with no class of its own, skips.
    class Custom(pulumi.CustomResource):
        def __init__(self, rec: dict[str, Any], opts: pulumi.ResourceOptions | None) -> None:
            super().__init__(rec["type"], rec["name"], dict(rec["inputs"]), opts)

    class Component(pulumi.ComponentResource):
        def __init__(self, rec: dict[str, Any], opts: pulumi.ResourceOptions | None) -> None:
            super().__init__(rec["type"], rec["name"], None, opts)
            build(rec["urn"], pulumi.ResourceOptions(parent=self))
            if rec["urn"] in plan["outputs"]:
                self.register_outputs(plan["outputs"][rec["urn"]])

    def build(parent: str, opts: pulumi.ResourceOptions | None) -> None:
        for rec in children.get(parent, []):
            (Custom if rec["custom"] else Component)(rec, opts)

    def program() -> None:
        urns = {rec["urn"] for rec in plan["records"]}
        for top in [parent for parent in children if parent not in urns]:  # the root stack's URN
            build(top, None)
        for key, value in plan["exports"].items():
            out = _known(value)
            pulumi.export(key, out)
            exported.append(out)

    _sync_await(run_pulumi_func(program))
    for out in exported:
        _resolve(out)
    return {
        "resources": len(monitor.resources) + 1,
        "by_type": dict(Counter(urn.split("::")[2].split("$")[-1] for urn in monitor.resources)),
        "tree": sorted(urn.split("::", 2)[2] for urn in monitor.resources),  # parent types, type, name
        "libraries": sorted(m for m in ("pydantic", "pulumi_kubernetes") if m in sys.modules),
        "validated": validated,
        "fjord_modules": sorted(m for m in sys.modules if m == "fjord" or m.startswith("fjord.")),
        "seconds": round(time.perf_counter() - started, 3),
        "load_s": round(loaded, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def baseline(n: int, hosts: int = 0) -> dict[str, Any]:
    """A bare Pulumi mock program registering `n` trivial components (run in a child via --baseline).

    With `hosts`, it also exports an inventory of that many 8-field host records as one known Output and
    resolves it at the end, as fjord's program and plan worker do.
    """
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    started = time.perf_counter()

    class Thing(pulumi.ComponentResource):
        def __init__(self, name: str) -> None:
            super().__init__("bench:index:Thing", name, None, None)
            self.register_outputs({})

    monitor = _bare_pulumi("bench", echo_inputs=False)
    exported: list[pulumi.Output[Any]] = []

    def program() -> None:
        for i in range(n):
            Thing(f"thing-{i:06d}")
        if hosts:
            inventory = [
                {
                    "name": f"host-{i:06d}",
                    "role": "gpu",
                    "cluster": "c",
                    "scalable_unit": i // 144,
                    "rack": f"r{i // 18:04d}",
                    "hall": "h",
                    "bmc_address": f"10.0.{i // 256}.{i % 256}",
                    "management_address": f"10.1.{i // 256}.{i % 256}",
                }
                for i in range(hosts)
            ]
            out = _known(inventory)
            pulumi.export("inventory", out)
            exported.append(out)

    _sync_await(run_pulumi_func(program))
    for out in exported:
        _resolve(out)
    return {
        "resources": len(monitor.resources) + 1,  # as fjord counts: the stock monitor omits the root stack
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = "case|resources/GPUs|fjord wall s|fjord peak MiB|baseline wall s|baseline peak MiB|ratio|target"
    cells = [head.split("|")]
    for r in rows:
        ratio = r["fjord_s"] / r["base_s"] if r.get("fjord_s") is not None else None
        figures = [fmt(r.get(k), d) for k, d in (("fjord_s", 3), ("fjord_mib", 1), ("base_s", 3), ("base_mib", 1))]
        cells.append([r["case"], r["count"], *figures, fmt(ratio), r["target"]])
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    for n, line in enumerate(cells):
        pairs = enumerate(zip(line, widths, strict=True))
        print("  ".join(c.ljust(w) if i in (0, 1, 7) else c.rjust(w) for i, (c, w) in pairs).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if "fjord_inproc_s" in r:
            print(
                f"  {r['case']}: in-process {r['fjord_inproc_s']:.3f} s vs bare {r['base_inproc_s']:.3f} s"
                f" (x{r['fjord_inproc_s'] / r['base_inproc_s']:.2f}); exports carry"
                f" {r['inventory_hosts']:,} inventory hosts, the baseline none; fjord's own work (no registration)"
                f" {r['own_work_s']:.3f} s; the same resources through bare Pulumi {r['same_inproc_s']:.3f} s"
                f" (reading them from JSON {r['same_load_s']:.3f} s of it)"
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is shown")
    parser.add_argument("--quick", action="store_true", help="skip 100k sizing and the narvik plan")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--baseline", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--hosts", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--floor", metavar="STACK", help=argparse.SUPPRESS)
    parser.add_argument("--record", nargs=2, metavar=("STACK", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--replay", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--young-gc-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--libraries", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor is not None:
        json.dump(floor(args.floor), sys.stdout)
        return 0
    child: dict[str, Any] | None = None
    if args.record is not None:
        child = record(*args.record)
    elif args.replay is not None:
        child = replay(args.replay, args.young_gc_only, args.libraries)
    elif args.baseline is not None:
        child = baseline(args.baseline, args.hosts)
    if child is not None:
        json.dump(child, sys.stdout)
        sys.stdout.flush()
        os._exit(0)  # a Pulumi child, like the plan worker: skip the Pulumi SDK's noisy event-loop teardown
    repeat = max(1, args.repeat)
    byte_compile()
    rows = [bench_sizing(k, v, repeat) for k, v in SIZES.items() if not (args.quick and v >= 100_000)]
    for stack in ("dev", "narvik"):
        if not (args.quick and stack == "narvik"):
            rows += bench_plan(stack, repeat)
    bare = run_children({"bare": [*THIS, "--baseline", "2000"]}, repeat)["bare"]
    reference = "per-stack resource budget (reference)"
    rows.append(row("bare baseline", "2,000 res", (None, None), (bare["wall"], bare["rss"]), reference))
    print(
        f"fjord plan_scale: repeat={repeat}, {os.cpu_count()} CPUs, python {sys.version.split()[0]},"
        f" RSS via {GNU_TIME or 'worker JSON'}"
    )
    print_table(rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
