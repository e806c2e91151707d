"""`fjord site new <name>`: a new site's stack file from a few answers, validated and sized before it is written.

Asks for what it is not given (country, jurisdiction, grid power, PUE, halls, clusters with SKU, GPUs, scheduler
and tenant, an S3 endpoint), or takes every answer as a flag with `--no-input` for pipelines. The rest (fabrics
from the SKUs, an IP plan sized for a 100,000-GPU site, a software baseline the SKUs support) is derived, so
the file validates and sizes at once; it is written, with comments, only when it does, and never over an
existing stack file. Then it shows `fjord size` for the new stack.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from fjord.cli.common import StacksDir, labelled, out, plain, reject

app: typer.Typer = typer.Typer(help="Sites: start a new one from a few answers.", no_args_is_help=True)

JURISDICTIONS = ("EU", "EEA", "UK", "CH")
SCHEDULERS = ("kubernetes", "slurm")
COOLING = ("air", "liquid")
OS_RELEASES = ("ubuntu-22.04", "ubuntu-24.04", "debian-12")
ENERGY = ("hydro", "wind", "solar", "nuclear", "geothermal", "grid-mix")
IP_PLAN = {
    "bmc": "10.0.0.0/16",
    "management": "10.1.0.0/16",
    "storage": "10.2.0.0/16",
    "compute": "10.64.0.0/14",
}
"""Room for ~65,000 nodes and 260,000 fabric ports: a 100,000-GPU site fits without renumbering later."""
KUBERNETES_NETS = {"kubernetes_pods": "10.128.0.0/12", "kubernetes_services": "10.144.0.0/16"}


def _cluster_spec(text: str) -> dict[str, Any]:
    """`NAME:SKU:GPUS:SCHEDULER:TENANT[:HALL]` as a cluster's fields (HALL defaults to the first hall)."""
    parts = text.split(":")
    if len(parts) not in (5, 6) or not parts[2].isdigit():
        raise typer.BadParameter(
            f"{text!r}; allowed: NAME:SKU:GPUS:SCHEDULER:TENANT[:HALL], e.g. h100:H100-SXM:256:slurm:research"
        )
    name, sku, gpus, scheduler, tenant = parts[:5]
    spec: dict[str, Any] = {"name": name, "sku": sku, "gpus": int(gpus), "scheduler": scheduler, "tenant": tenant}
    if len(parts) == 6:
        spec["hall"] = parts[5]
    return spec


def _choose(question: str, choices: tuple[str, ...] | list[str], default: str | None = None) -> str:
    """Ask until the answer is one of `choices` (shown with the question)."""
    while True:
        answer = str(typer.prompt(f"{question} ({', '.join(choices)})", default=default))
        if answer in choices:
            return answer
        typer.echo(f"{answer!r} is not one of {', '.join(choices)}", err=True)


def _ask(value: Any, no_input: bool, option: str, question: str, **prompt: Any) -> Any:
    """`value` when given; otherwise the answer to `question` (from `choices` if given), or with --no-input a
    usage error (exit 2) naming the option."""
    if value is not None:
        return value
    if no_input:
        raise typer.BadParameter(f"{option} is required with --no-input", param_hint=option)
    choices = prompt.pop("choices", None)
    if choices is not None:
        return _choose(question, choices, prompt.get("default"))
    return typer.prompt(question, **prompt)


def build_site(
    name: str,
    country: str,
    jurisdiction: str,
    grid_mw: float,
    pue: float,
    energy: str,
    halls: int,
    rack_positions: int,
    rack_power_kw: float,
    cooling: str | None,
    clusters: list[dict[str, Any]],
    tenants: list[str],
    os_release: str,
    s3_endpoint: str | None,
) -> dict[str, Any]:
    """The site description for these answers, with everything else derived (see the module docstring)."""
    from fjord.spec.catalog import CUDA_MIN_DRIVER_BRANCH, GPU_CATALOG

    skus = [GPU_CATALOG[c["sku"]] for c in clusters if c.get("sku") in GPU_CATALOG]
    liquid = any(s.cooling == "liquid" for s in skus)
    hall_names = [f"hall-{i + 1}" for i in range(halls)]
    rack_scale = any(s.rack_scale for s in skus)
    compute = (
        {"name": "ib-xdr", "technology": "infiniband-xdr", "switch": "Q3400-RA"}
        if rack_scale
        else {"name": "ib-ndr", "technology": "infiniband-ndr", "switch": "QM9700"}
    )
    branch = max([570, *(s.min_driver_branch for s in skus)])
    cuda = max(
        (v for v, b in CUDA_MIN_DRIVER_BRANCH.items() if b <= branch), key=lambda v: tuple(map(int, v.split(".")))
    )
    kube = any(c.get("scheduler") == "kubernetes" for c in clusters)
    site: dict[str, Any] = {
        "name": name,
        "country": country,
        "jurisdiction": jurisdiction,
        "region": name,
        "power": {"grid_budget_mw": float(grid_mw), "pue": float(pue), "energy_source": energy},
        "halls": [
            {
                "name": h,
                "rack_positions": rack_positions,
                "rack_power_kw": float(rack_power_kw),
                "cooling": cooling or ("liquid" if liquid else "air"),
            }
            for h in hall_names
        ],
        "fabrics": [
            {**compute, "role": "compute", "topology": "rail-optimised"},
            {
                "name": "storage",
                "role": "storage",
                "technology": "ethernet",
                "topology": "leaf-spine",
                "switch": "SN4600C",
                "ports_per_node": 2,
            },
            {"name": "oob", "role": "oob", "technology": "ethernet", "topology": "leaf-spine", "switch": "SN2201"},
        ],
        "ip_plan": {**IP_PLAN, **(KUBERNETES_NETS if kube else {})},
        "clusters": [
            {
                **c,
                "hall": c.get("hall") or (hall_names[0] if hall_names else "hall-1"),
                "compute_fabric": compute["name"],
            }
            for c in clusters
        ],
        "software": {"os": os_release, "driver_branch": branch, "cuda": cuda, "kubernetes": "1.31"},
        "tenants": [_tenant(t, clusters) for t in tenants],
    }
    if s3_endpoint:
        site["object_store"] = {"endpoint": s3_endpoint, "jurisdiction": jurisdiction}
    return site


def _tenant(name: str, clusters: list[dict[str, Any]]) -> dict[str, Any]:
    quotas = [
        {"cluster": c["name"], "gpus": c["gpus"]}
        for c in clusters
        if c.get("tenant") == name and c.get("scheduler") == "kubernetes"
    ]
    return {"name": name, "gpu_quotas": quotas} if quotas else {"name": name}


SECTION_COMMENTS = {
    "name": "Identity: the site's name (stack, buckets and node names start with it), where it is, whose law applies.",
    "power": "The grid connection and how efficiently the site turns power into compute; sizing checks the budget.",
    "halls": "Data halls: rack positions and what one position can power and cool.",
    "fabrics": "Fabrics: the compute fabric (built once per cluster, from the SKUs), storage and out-of-band.",
    "ip_plan": "Address plan: one supernet per purpose, room for a 100,000-GPU site.",
    "clusters": "GPU clusters: SKU, size, scheduler, tenant and hall. `acceptance:` per cluster sets the gate.",
    "software": "Software baseline every node runs (the driver branch is the newest the SKUs need).",
    "tenants": "Tenants, with GPU quotas on their Kubernetes clusters.",
    "object_store": "The site's own S3: Pulumi state, artifacts, bootstrap state and acceptance evidence.",
}


class _Indented(yaml.SafeDumper):
    """Lists indented under their key, as the project's stack files (and yamllint) have them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def stack_text(site: dict[str, Any], summary: str) -> str:
    """The stack file: the site under `config: fjord:site:`, a comment above each section."""
    lines = [
        f"# {site['name']}: written by `fjord site new` ({summary}).",
        "# Edit freely; `fjord validate` and `fjord size` check it, `fjord bootstrap` builds it.",
        "config:",
        "  fjord:site:",
    ]
    for key, value in site.items():
        if key in SECTION_COMMENTS:
            lines.append(f"    # {SECTION_COMMENTS[key]}")
        dumped = yaml.dump({key: value}, Dumper=_Indented, sort_keys=False, default_flow_style=False, width=110)
        lines += [f"    {line}" for line in dumped.splitlines()]
    return "\n".join(lines) + "\n"


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The new site's (and stack's) name, a DNS label such as 'oslo'.")],
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 country code, e.g. NO or GB.")] = None,
    jurisdiction: Annotated[
        str | None, typer.Option(help=f"Legal area the site's data stays in: {', '.join(JURISDICTIONS)}.")
    ] = None,
    grid_mw: Annotated[float | None, typer.Option("--grid-mw", help="Grid connection, MW.")] = None,
    pue: Annotated[float | None, typer.Option(help="Power usage effectiveness, e.g. 1.2.")] = None,
    energy: Annotated[str, typer.Option(help=f"Energy source: {', '.join(ENERGY)}.")] = "grid-mix",
    halls: Annotated[int | None, typer.Option(help="Number of data halls (named hall-1, hall-2, ...).")] = None,
    rack_positions: Annotated[int | None, typer.Option(help="Rack positions per hall.")] = None,
    rack_power_kw: Annotated[float | None, typer.Option("--rack-power-kw", help="Power per rack position, kW.")] = None,
    cooling: Annotated[
        str | None, typer.Option(help="Hall cooling, air or liquid (default: liquid when a SKU needs it).")
    ] = None,
    cluster: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster",
            help="A cluster as NAME:SKU:GPUS:SCHEDULER:TENANT[:HALL], e.g. h100:H100-SXM:256:slurm:research; repeat.",
        ),
    ] = None,
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", help="A tenant (default: the clusters' tenants); repeat.")
    ] = None,
    os_release: Annotated[str, typer.Option("--os", help=f"Node OS: {', '.join(OS_RELEASES)}.")] = "ubuntu-24.04",
    s3_endpoint: Annotated[
        str | None,
        typer.Option("--s3-endpoint", help="The site's own S3 endpoint (state, artifacts); empty for none yet."),
    ] = None,
    no_input: Annotated[
        bool, typer.Option("--no-input", help="Never ask: every answer comes from the flags (pipelines).")
    ] = False,
    stacks_dir_: StacksDir = None,
) -> None:
    """Write stacks/Pulumi.<name>.yaml for a new site, validated and sized at once, then show its size."""
    from fjord.sizing.alloc import alloc_path, dump
    from fjord.sizing.site import validate_site
    from fjord.spec.catalog import GPU_CATALOG
    from fjord.spec.errors import SiteError
    from fjord.spec.load import load_site, read_stack, stack_path, stacks_dir

    folder = stacks_dir(stacks_dir_)
    path = stack_path(name, folder)
    if path.exists():
        raise reject(str(path), ["exists already; allowed: a name no stack has (fjord never overwrites a stack)"])
    country = _ask(country, no_input, "--country", "Country (ISO code, e.g. NO)")
    jurisdiction = _ask(
        jurisdiction,
        no_input,
        "--jurisdiction",
        "Jurisdiction the data stays in",
        choices=JURISDICTIONS,
        default="EEA",
    )
    grid_mw = _ask(grid_mw, no_input, "--grid-mw", "Grid connection (MW)", type=float)
    pue = _ask(pue, no_input, "--pue", "PUE", type=float, default=1.2)
    halls = _ask(halls, no_input, "--halls", "Data halls", type=int, default=1)
    rack_positions = _ask(rack_positions, no_input, "--rack-positions", "Rack positions per hall", type=int)
    rack_power_kw = _ask(rack_power_kw, no_input, "--rack-power-kw", "Power per rack position (kW)", type=float)
    clusters = [_cluster_spec(c) for c in cluster or []]
    if not clusters:
        if no_input:
            raise typer.BadParameter("at least one --cluster is required with --no-input", param_hint="--cluster")
        count = typer.prompt("GPU clusters", type=int, default=1)
        for i in range(count):
            clusters.append(
                {
                    "name": typer.prompt(f"Cluster {i + 1}: name"),
                    "sku": _choose(f"Cluster {i + 1}: SKU", list(GPU_CATALOG)),
                    "gpus": typer.prompt(f"Cluster {i + 1}: GPUs", type=int),
                    "scheduler": _choose(f"Cluster {i + 1}: scheduler", SCHEDULERS, "kubernetes"),
                    "tenant": typer.prompt(f"Cluster {i + 1}: tenant"),
                }
            )
    tenants = list(dict.fromkeys([*(tenant or []), *(c["tenant"] for c in clusters)]))
    if s3_endpoint is None and not no_input:
        s3_endpoint = typer.prompt("The site's S3 endpoint (empty: none yet)", default="", show_default=False)
    raw = build_site(
        name,
        country,
        jurisdiction,
        grid_mw,
        pue,
        energy,
        halls,
        rack_positions,
        rack_power_kw,
        cooling,
        clusters,
        tenants,
        os_release,
        s3_endpoint or None,
    )
    try:
        site, sized = validate_site(raw, f"new site {name}")
    except SiteError as exc:
        raise reject(exc.source or f"new site {name}", [*exc.lines(), f"nothing written to {path}"]) from None
    summary = f"{sized.gpus:,} GPUs, {sized.nodes:,} nodes, {sized.power.facility_kw / 1000:,.2f} of {grid_mw:g} MW"
    text = stack_text(raw, summary)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".Pulumi.{name}.", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.link(tmp, path)  # fails, writing nothing, if the stack appeared meanwhile
    except FileExistsError:
        raise reject(str(path), ["appeared while writing; allowed: a name no stack has"]) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    read_back = load_site(read_stack(name, folder).site, str(path))
    assert read_back == site, "the written stack reads back as the site validated"
    # Its allocation record, which the program requires (docs/safe-change.md): a new site's first allocation.
    alloc_path(name, folder).write_text(dump(sized.alloc, name), encoding="utf-8")
    out.print(labelled("written", "green", f" {path}: site {name}, {summary}"))
    from fjord.cli.main import show_size

    show_size(site, sized)
    out.print(plain(f"Next: fjord plan {name}; fjord state init {name}; fjord bootstrap {name}"))
