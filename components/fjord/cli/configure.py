"""`fjord configure <stack>`: run a playbook on the site's hosts, inventory generated from the site model.

Exit codes: 0 every host ok; 1 the stack, a `--limit` name, the `--host-vars` file or the playbook was rejected
(nothing runs); 3 a host failed or was unreachable (named on stderr with its failed tasks), or the play crashed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fjord.cli.common import (
    StackArg,
    StacksDir,
    err,
    error_line,
    labelled,
    load_stack,
    out,
    plain,
    reject,
    split_list,
    write_json,
)

if TYPE_CHECKING:
    from fjord.adapters.ansible import PlaybookResult, ProgressEvent

EXIT_HOSTS_FAILED = 3
UPGRADE_PLAYBOOK = "upgrade-gpu-stack.yml"
TABLE_ROWS = 50
"""Above this many hosts the table shows only hosts that changed, failed or were unreachable."""


def configure(
    stack: StackArg,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            "-l",
            help="Only these groups or hosts (repeat or comma-separate): site_<site>, hall_<hall>, cluster_<cluster>,"
            " su_<cluster>_<NNN>, rack_<hall>_r<NNNN> or a host name. Only they are put in the inventory.",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Dry run: report what would change (Ansible --check).")
    ] = False,
    tags: Annotated[list[str] | None, typer.Option("--tags", "-t", help="Only tasks with these tags.")] = None,
    skip_tags: Annotated[list[str] | None, typer.Option("--skip-tags", help="Skip tasks with these tags.")] = None,
    playbook: Annotated[
        str, typer.Option("--playbook", "-p", help="Playbook under the playbooks folder.")
    ] = "site.yml",
    playbooks_dir: Annotated[
        Path | None, typer.Option("--playbooks-dir", help="Folder of playbooks (default: the project's playbooks/).")
    ] = None,
    host_vars: Annotated[
        Path | None,
        typer.Option(
            "--host-vars",
            help="JSON file {host: {var: value}} (hosts of the site) merged over the generated host variables.",
        ),
    ] = None,
    forks: Annotated[int, typer.Option("--forks", min=1, help="Hosts worked on at once.")] = 50,
    stacks_dir_: StacksDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print per-host results as JSON instead of a table.")] = False,
) -> None:
    """Configure the site's hosts with Ansible (site.yml by default), with a per-host summary."""
    from fjord.adapters.ansible import AnsibleSettings, default_playbooks_dir, run_playbook
    from fjord.hosts.inventory import (
        BadHostVars,
        UnknownTarget,
        build_inventory,
        check_host_vars,
        group_name,
        upgrade_vars,
    )

    site, size, source = load_stack(stack, stacks_dir_)
    extra: dict[str, Any] = {}
    if host_vars is not None:
        try:
            extra = check_host_vars(site, size, json.loads(host_vars.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            lines = (
                exc.problems
                if isinstance(exc, BadHostVars)
                else [f"cannot read a JSON object of host variables: {exc}"]
            )
            raise reject(str(host_vars), [f"--host-vars: {line}" for line in lines]) from None
    try:
        inventory = build_inventory(site, size, split_list(limit), host_vars=extra)
    except UnknownTarget as exc:
        raise reject(source, [f"--limit: {exc}"]) from None
    folder = playbooks_dir or default_playbooks_dir()
    if not (folder / playbook).is_file():
        known = ", ".join(sorted(p.name for p in folder.glob("*.yml"))) or "(none)"
        raise reject(str(folder), [f"--playbook: {playbook!r} not found; allowed: {known}"])

    extra_vars: dict[str, Any] = {}
    if playbook == UPGRADE_PLAYBOOK:
        clusters = {c.name for c in site.clusters if group_name("cluster", c.name) in inventory.groups}
        try:
            extra_vars = upgrade_vars(site, clusters)
        except ValueError as exc:
            raise reject(source, [f"--playbook {playbook}: {exc}"]) from None

    counts: Counter[str] = Counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as progress:
        bar = progress.add_task(playbook, total=None, counts="")

        def on_event(event: ProgressEvent) -> None:
            if event.kind in ("play", "task"):
                progress.update(bar, description=f"{playbook}: {event.task or event.play}"[:70])
                return
            counts[event.kind] += 1
            text = " ".join(f"{k} {counts[k]}" for k in ("ok", "changed", "failed", "unreachable", "skipped"))
            progress.update(bar, counts=text)

        result = run_playbook(
            playbook,
            inventory.data,
            site=site.name,
            playbooks_dir=folder,
            tags=split_list(tags),
            skip_tags=split_list(skip_tags),
            check=check,
            extra_vars=extra_vars,
            settings=AnsibleSettings(forks=forks),
            on_event=on_event,
        )
    _report(result, len(inventory.hosts), as_json)
    if result.crashed:
        error_line(f"{playbook} crashed: {result.error}")
        raise typer.Exit(EXIT_HOSTS_FAILED)
    bad = result.failed_hosts + result.unreachable_hosts
    if bad:
        for host in bad:
            r = result.hosts[host]
            what = "; ".join(f"{f.task}: {f.message}" for f in r.failures) or r.status
            err.print(labelled(r.status, "red", f": {host}: {what}"), soft_wrap=True)
        error_line(
            f"{len(result.failed_hosts)} failed, {len(result.unreachable_hosts)} unreachable of"
            f" {len(inventory.hosts)} hosts"
        )
        raise typer.Exit(EXIT_HOSTS_FAILED)
    # With --json, stdout holds the JSON document alone: the summary goes to stderr.
    (err if as_json else out).print(
        labelled(
            "ok",
            "green",
            f" {playbook} on {len(result.hosts)} hosts of {site.name}"
            f"{' (check mode)' if check else ''} in {result.elapsed_s:.1f} s, {result.changed} changes",
        )
    )


def _report(result: PlaybookResult, hosts: int, as_json: bool) -> None:

    if as_json:
        doc = {
            "playbook": result.playbook,
            "status": result.status,
            "crashed": result.crashed,
            "elapsed_s": round(result.elapsed_s, 2),
            "hosts": {
                h: {
                    "status": r.status,
                    "ok": r.ok,
                    "changed": r.changed,
                    "failed": r.failed,
                    "unreachable": r.unreachable,
                    "skipped": r.skipped,
                    "failures": [{"task": f.task, "message": f.message} for f in r.failures],
                }
                for h, r in result.hosts.items()
            },
        }
        write_json(doc)
        return
    rows = list(result.hosts.values())
    if len(rows) > TABLE_ROWS:
        rows = [r for r in rows if r.status != "ok"]
    table = Table(title=plain(f"{result.playbook}: {hosts} hosts"), title_justify="left", header_style="bold")
    for col in ("host", "status", "ok", "changed", "failed", "unreachable", "skipped", "failed tasks"):
        table.add_column(col, justify="left" if col in ("host", "status", "failed tasks") else "right")
    style = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}
    for r in rows:
        table.add_row(
            plain(r.host),
            plain(r.status, style[r.status]),
            str(r.ok),
            str(r.changed),
            str(r.failed),
            str(r.unreachable),
            str(r.skipped),
            plain("; ".join(f.task for f in r.failures)),
        )
    if rows:
        out.print(table)
