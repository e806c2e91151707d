"""`fjord`: validate, size and plan GPU sites described in `stacks/Pulumi.<stack>.yaml`.

Exit codes: 0 ok; 1 the site or stack was rejected (one line per problem on stderr, field path first);
2 usage errors (Typer); 3 `fjord diff`: the change is disruptive (drains, restarts or removes nodes), or
`fjord bmc`: some nodes failed, or `fjord preview|up|refresh|destroy`: the Pulumi engine failed or left nodes or
hosts behind; 4 a stack is over the resource budget; 5 the drift check found drift (`fjord refresh
--preview-only`, `fjord preview --expect-no-changes`, `fjord gitops drift`); 6 a mandatory policy rule failed
(`fjord validate` and `fjord plan` alike, `fjord preview|up --policy-pack`; docs/policy.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from fjord.cli.common import (
    EXIT_POLICY,
    JsonFlag,
    PolicyConfig,
    StackArg,
    StacksDir,
    check_stack_hosts,
    err,
    error_line,
    labelled,
    load_stack,
    out,
    plain,
    policy_errors,
    policy_table,
    reject,
    stack_file,
    stack_names,
    stack_policy,
    write_json,
)
from fjord.cli.common import EXIT_REJECTED as EXIT_REJECTED  # the exit codes are listed here, with EXIT_OVER_BUDGET
from fjord.cli.configure import configure
from fjord.plan.runner import MAX_RESOURCES_PER_STACK, PlanError, StackPlan, plan_stacks
from fjord.spec.load import stacks_dir

if TYPE_CHECKING:
    from fjord.sizing.site import SiteSize
    from fjord.spec.models import Site

EXIT_OVER_BUDGET = 4

app = typer.Typer(
    help="Infrastructure as code for sovereign AI GPU sites. Deploy with `pulumi up -s <stack>`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def validate(stack: StackArg, stacks_dir_: StacksDir = None, policy_config: PolicyConfig = None) -> None:
    """Check a site description against the model, the physical limits (power, space, addresses) and fjord's
    policy rules: exit 1 for a rejected site, 6 for a mandatory policy rule it fails, as `fjord plan` does."""
    site, size, source = load_stack(stack, stacks_dir_)
    check_stack_hosts(stack, stacks_dir_, site, size)
    report = stack_policy(stack, stacks_dir_, site, size, policy_config)
    advisory = sum(len(r["violations"]) for r in report["results"] if r["status"] == "failed")
    if report["mandatory_failed"]:
        policy_errors(stack, report)
        raise typer.Exit(EXIT_POLICY)
    findings = f"; policy: {advisory} advisory finding{'' if advisory == 1 else 's'}" if advisory else ""
    out.print(
        labelled(
            "ok",
            "green",
            f" {source}: site {site.name} ({site.country}, {site.jurisdiction}), "
            f"{len(site.clusters)} cluster{'' if len(site.clusters) == 1 else 's'}, "
            f"{size.gpus:,} GPUs, {size.nodes:,} nodes, "
            f"{size.power.facility_kw / 1000:,.2f} of {site.power.grid_budget_mw:g} MW{findings}",
        )
    )


def size_report(site: Site, size: SiteSize) -> dict[str, Any]:
    """The capacity report as data: what `fjord size --json` prints."""
    from fjord.hosts.slurm import slurm_clusters  # pure and small; only `size` needs it

    return {
        "site": site.name,
        "totals": size.totals(),
        "clusters": [
            {
                "name": c.name,
                "sku": c.sku,
                "tenant": c.tenant,
                "hall": c.hall,
                "gpus": c.gpus,
                "nodes": c.nodes,
                "scalable_units": c.scalable_units,
                "racks": c.racks,
                "nodes_per_rack": c.nodes_per_rack,
                "rack_kw": round(c.rack_kw, 1),
                "compute_kw": round(c.compute_kw, 1),
            }
            for c in size.clusters
        ],
        "fabrics": [
            {
                "name": f.name,
                "role": f.role,
                "switch": f.switch,
                "spine_switch": f.spine_switch or "-",
                "tiers": f.tiers,
                "leaves": f.leaves,
                "spines": f.spines,
                "cores": f.cores,
                "endpoint_cables": f.endpoint_cables,
                "leaf_spine_cables": f.leaf_spine_cables,
                "spine_core_cables": f.spine_core_cables,
                "max_power_kw": round(f.max_power_kw, 1),
            }
            for f in size.fabrics
        ],
        "halls": [
            {
                "name": h.name,
                "positions": h.positions,
                "compute_racks": h.compute_racks,
                "network_racks": h.network_racks,
                "storage_racks": h.storage_racks,
                "free": h.positions - h.used,
            }
            for h in size.halls
        ],
        "placement": [
            {"hall": r.hall, "racks": r.span, "kind": r.kind, "owner": r.owner, "count": r.racks}
            for r in size.placement
        ],
        "ip_plan": [
            {
                "purpose": p.purpose,
                "supernet": p.supernet,
                "subnets": p.subnets,
                "addresses": p.addresses,
                "reserved": p.reserved,
                "capacity": p.capacity,
            }
            for p in size.pools
        ],
        "slurm": [c.summary() for c in slurm_clusters(site, size)],
        "power": {
            "compute": round(size.power.compute_kw, 1),
            "network_kw": round(size.power.network_kw, 1),
            "storage_kw": round(size.power.storage_kw, 1),
            "it_kw": round(size.power.it_kw, 1),
            "pue": size.power.pue,
            "facility_kw": round(size.power.facility_kw, 1),
            "budget_kw": round(size.power.budget_kw, 1),
            "headroom_kw": round(size.power.headroom_kw, 1),
        },
    }


HEADERS = {
    "scalable_units": "SUs",
    "nodes_per_rack": "n/rack",
    "rack_kw": "rack kW",
    "compute_kw": "kW",
    "endpoint_cables": "node cables",
    "leaf_spine_cables": "leaf-spine",
    "spine_core_cables": "spine-core",
    "max_power_kw": "kW",
    "compute_racks": "compute",
    "network_racks": "network",
    "storage_racks": "storage",
    "network_kw": "network",
    "storage_kw": "storage",
    "it_kw": "IT",
    "facility_kw": "facility",
    "budget_kw": "budget",
    "headroom_kw": "headroom",
    "gpus": "GPUs",
    "pue": "PUE",
    "nodes_per_block": "nodes/block",
}


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for key in rows[0]:
        numeric = isinstance(rows[0][key], int | float)
        table.add_column(HEADERS.get(key, key.replace("_", " ")), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(plain(f"{v:,}" if isinstance(v, int | float) else v) for v in row.values()))
    return table


@app.command()
def size(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
    svg: Annotated[
        Path | None,
        typer.Option(
            "--svg",
            help="Also draw each hall's rack map and its power against capacity into this SVG file.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Capacity report: nodes, racks, switches, cables, addresses, power and headroom."""
    site, sized, _ = load_stack(stack, stacks_dir_)
    if svg is not None:
        from fjord.cli.rackmap import render_svg

        try:
            svg.write_text(render_svg(site, sized), encoding="utf-8")
        except OSError as exc:
            raise reject(
                str(svg), [f"--svg: cannot write the file ({exc.strerror}); allowed: a writable file path"]
            ) from None
        err.print(plain(f"rack map written to {svg}"))
    if as_json:
        write_json(size_report(site, sized))
        return
    show_size(site, sized)


def show_size(site: Site, sized: SiteSize) -> None:
    """The capacity report as tables (what `fjord size` prints)."""
    report = size_report(site, sized)
    totals = report["totals"]
    out.print(
        labelled(
            site.name,
            "bold",
            f": {totals['gpus']:,} GPUs, {totals['nodes']:,} nodes, {totals['racks']:,} racks, "
            f"{totals['switches']:,} switches, {totals['cables']:,} cables, {totals['addresses']:,} addresses",
        )
    )
    for title, key in (
        ("Clusters", "clusters"),
        ("Fabrics", "fabrics"),
        ("Halls", "halls"),
        ("Rack placement", "placement"),
        ("IP plan", "ip_plan"),
    ):
        out.print(_table(title, report[key]))
    if report["slurm"]:
        shown = ("cluster", "partition", "nodes", "controllers", "topology", "blocks", "nodes_per_block", "switches")
        out.print(_table("Slurm", [{k: row[k] for k in shown} for row in report["slurm"]]))
    out.print(_table("Power (kW)", [report["power"]]))


def _tree(plan: StackPlan) -> Tree:
    """Components with their children grouped by type: the shape of the stack at a glance."""
    data = plan.data
    nodes = data["tree"]
    children: dict[str, list[dict[str, Any]]] = {}
    for n in nodes:
        children.setdefault(n["parent"], []).append(n)
    counts = data["by_component"]
    root = Tree(labelled(plan.stack, "bold", f": {plan.resources} resources (stack included)"))

    def add(branch: Tree, parent: str) -> None:
        leaves: dict[str, int] = {}
        for n in children.get(parent, []):
            if n["urn"] in children:
                label = plain(f"{n['type']} ") + plain(n["name"], "cyan") + f" ({counts.get(n['name'], 0)} below)"
                sub = branch.add(label)
                add(sub, n["urn"])
            else:
                leaves[n["type"]] = leaves.get(n["type"], 0) + 1
        for typ, count in leaves.items():
            branch.add(plain(f"{count} x {typ}"))

    tops = {n["parent"] for n in nodes} - {n["urn"] for n in nodes}
    for top in sorted(tops):
        add(root, top)
    return root


@app.command()
def plan(
    stacks: Annotated[
        list[str] | None, typer.Argument(help="Stacks to plan; none means every stack in the stacks folder.")
    ] = None,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Stacks planned at once (default: CPUs).")
    ] = None,
    policy_config: PolicyConfig = None,
) -> None:
    """Run the real Pulumi program offline under Pulumi's mock runtime and summarise what it registers.

    fjord's policy rules (docs/policy.md) run over every planned site: advisory findings are shown, a mandatory
    one fails the plan with exit 6."""
    folder = stacks_dir(stacks_dir_)
    names = list(dict.fromkeys(stacks)) if stacks else stack_names(folder)  # each stack once, in the order given
    if not names:
        raise reject(str(folder), ["no Pulumi.<stack>.yaml files here"])
    for name in names:
        stack_file(name, folder)
    with Progress(
        SpinnerColumn(),
        TextColumn("planning {task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} stacks"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as progress:
        task = progress.add_task(", ".join(names), total=len(names))
        try:
            plans = plan_stacks(
                names, folder, jobs, on_done=lambda _s: progress.advance(task), policy_config=policy_config
            )
        except PlanError as exc:
            raise reject(exc.source, exc.lines) from None
    over = [p for p in plans if p.over_budget]
    if as_json:
        doc = {
            "max_resources_per_stack": MAX_RESOURCES_PER_STACK,
            "stacks": {p.stack: p.resources for p in plans},
            "plans": [{k: v for k, v in p.data.items() if k != "tree"} for p in plans],
        }
        write_json(doc)
    else:
        for p in plans:
            out.print(_tree(p))
            types = Table(title=plain(f"{p.stack}: resources by type"), title_justify="left", header_style="bold")
            types.add_column("type")
            types.add_column("count", justify="right")
            for typ, count in sorted(p.data["by_type"].items(), key=lambda kv: (-kv[1], kv[0])):
                types.add_row(plain(typ), f"{count:,}")
            out.print(types)
            if "policy" in p.data:
                out.print(policy_table(p.stack, p.data["policy"]))
        summary = Table(title="Stacks", title_justify="left", header_style="bold")
        for col in ("stack", "site", "resources", "budget", "GPUs", "nodes", "facility MW", "plan s"):
            summary.add_column(col, justify="left" if col in ("stack", "site") else "right")
        for p in plans:
            s = p.data["summary"]
            summary.add_row(
                plain(p.stack),
                plain(p.data["site"]),
                f"{p.resources:,}",
                f"{MAX_RESOURCES_PER_STACK:,}",
                f"{s.get('gpus', 0):,}",
                f"{s.get('nodes', 0):,}",
                f"{s.get('facility_mw', 0):,.2f}",
                f"{p.data['seconds']:.1f}",
            )
        out.print(summary)
    dup = [u for p in plans for u in p.data["duplicates"]]
    if dup:
        raise reject("plan", [f"resource registered twice: {u}" for u in dup])
    if over:
        for p in over:
            error_line(
                f"stack {p.stack} has {p.resources:,} resources, over the budget of"
                f" {MAX_RESOURCES_PER_STACK:,} per stack"
            )
        raise typer.Exit(EXIT_OVER_BUDGET)
    failed = [(p.stack, p.data["policy"]) for p in plans if p.policy_failed]
    if failed:
        for stack, report in failed:
            policy_errors(stack, report)
        raise typer.Exit(EXIT_POLICY)


@app.command()
def schema(
    site_only: Annotated[
        bool, typer.Option("--site", help="Only the site description (`fjord:site`), not the whole stack file.")
    ] = False,
) -> None:
    """Print the JSON Schema of a stack file, for editors to validate and complete `stacks/Pulumi.<stack>.yaml`."""
    from fjord.spec.schema import site_schema, stack_schema

    write_json(site_schema() if site_only else stack_schema())


@app.command("stacks")
def list_stacks_cmd(stacks_dir_: StacksDir = None) -> None:
    """List the stacks in the stacks folder."""
    for name in stack_names(stacks_dir(stacks_dir_)):
        out.print(plain(name))


# Sub-commands in their own modules, registered last: they use the helpers above.
from fjord.cli import artifacts, bmc, engine, gitops, site, state  # noqa: E402
from fjord.cli.bootstrap import bootstrap  # noqa: E402
from fjord.cli.change import alloc, diff  # noqa: E402
from fjord.cli.render import render  # noqa: E402

app.command()(render)
app.command()(configure)
app.command()(alloc)
app.command()(diff)
app.command()(bootstrap)
for _command in (engine.preview, engine.up, engine.refresh, engine.destroy):
    app.command()(_command)
app.add_typer(bmc.app, name="bmc")
app.add_typer(state.app, name="state")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(gitops.app, name="gitops")
app.add_typer(site.app, name="site")


def main() -> None:
    app()
