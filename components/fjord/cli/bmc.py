"""`fjord bmc <stack> status | power-on | power-off | pxe`: operator commands on the nodes' BMCs (Redfish).

Nodes come from the site's inventory; each node's BMC from `fjord.sizing.bmc` (the same mapping the
bare-metal provider uses). The password is $FJORD_BMC_PASSWORD (the stack file holds it encrypted, which
only the Pulumi CLI can read), or a hidden prompt on a terminal. Exit codes: 0 every node ok; 1 rejected
input (bad stack, no password, --limit matching nothing, a site-wide action declined at the prompt); 2 a
site-wide `power-off` or `pxe` (no --limit) run without a terminal and without --yes; 3 some nodes failed (each
named on stderr).

Every command reports per node, also when some nodes fail: the commands that change nodes print a table of
each node's result (changed, unchanged or failed), what the BMC took (also on a node that failed later),
the tries and the error; `--json` prints the same as JSON. Retries and the per-node deadline come from the
site's `bmc` settings (docs/operations.md).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fjord.cli.common import (
    EXIT_REJECTED,
    JsonFlag,
    StackArg,
    StacksDir,
    err,
    error_line,
    labelled,
    load_stack,
    out,
    plain,
    split_list,
    write_json,
)

if TYPE_CHECKING:  # the Redfish client (sushy, requests) is loaded when a command talks to BMCs
    from fjord.adapters.redfish import Credentials, Options, Outcome, RedfishNode, Target
    from fjord.spec.models import Bmc

PASSWORD_ENV = "FJORD_BMC_PASSWORD"
EXIT_NODES_FAILED = 3

app = typer.Typer(
    help="Operate the nodes' BMCs over Redfish: status, power, PXE boot. Password: $FJORD_BMC_PASSWORD.",
    no_args_is_help=True,
)

T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    error_line(message)
    return typer.Exit(EXIT_REJECTED)


@app.callback()
def bmc(
    ctx: typer.Context,
    stack: StackArg,
) -> None:
    """Pick the stack whose nodes the command works on."""
    ctx.obj = {"stack": stack}


Limit = Annotated[
    list[str] | None,
    typer.Option(
        "--limit",
        "-l",
        help="Only nodes whose name matches this glob (e.g. 'dev-h100-su000-n00[0-3]'); repeat or comma-separate.",
    ),
]


def _targets(ctx: typer.Context, limit: list[str] | None, folder: Path | None) -> tuple[list[Target], Bmc]:
    from fjord.adapters.redfish import Target
    from fjord.sizing.bmc import bmc_endpoints

    stack = ctx.obj["stack"]
    site, size, _ = load_stack(stack, folder)
    patterns = split_list(limit)
    endpoints = bmc_endpoints(size.hosts(), site.bmc)
    if patterns:
        endpoints = [e for e in endpoints if any(fnmatch.fnmatchcase(e.node, p) for p in patterns)]
        if not endpoints:
            raise _fail(f"--limit {','.join(patterns)} matches no node of stack {stack}")
    return [Target(e.node, e.url, e.system_id) for e in endpoints], site.bmc


Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Act on every node of the stack without asking; needed without --limit when not on a terminal.",
    ),
]


def _confirm_site_wide(
    ctx: typer.Context, what: str, limit: list[str] | None, targets: list[Target], yes: bool
) -> None:
    """A destructive action on every node of a site (no --limit) needs --yes, or a yes at the prompt.

    Without a terminal and without --yes it is a usage error (exit 2) and nothing is touched; declined at the
    prompt it exits 1, nothing touched."""
    if split_list(limit) or yes:
        return
    stack = ctx.obj["stack"]
    question = f"{what} all {len(targets):,} nodes of stack {stack}? (--limit picks nodes, --yes skips this)"
    if not sys.stdin.isatty():
        error_line(
            f"{what} without --limit acts on all {len(targets):,} nodes of stack {stack}; allowed: --limit <glob>"
            " to pick nodes, or --yes to mean every node"
        )
        raise typer.Exit(2)
    if not typer.confirm(question, default=False):
        raise _fail(f"{what}: not confirmed; nothing done")


def _access(bmc: Bmc) -> tuple[Credentials, Options]:
    from fjord.adapters.redfish import Credentials, Options

    password = os.environ.get(PASSWORD_ENV)
    if not password:
        if not sys.stdin.isatty():
            raise _fail(f"no BMC password: set ${PASSWORD_ENV}")
        password = typer.prompt(f"BMC password for {bmc.username}", hide_input=True)
    options = Options(
        verify_tls=bmc.verify_tls,
        timeout_s=bmc.timeout_s,
        retries=bmc.retries,
        backoff_s=bmc.backoff_s,
        deadline_s=bmc.deadline_s,
        concurrency=bmc.concurrency,
    )
    return Credentials(bmc.username, password), options


def _run(
    what: str, targets: list[Target], creds: Credentials, options: Options, op: Callable[[RedfishNode], T], quiet: bool
) -> dict[str, Outcome[T]]:
    from fjord.adapters.redfish import run_bulk

    with Progress(
        SpinnerColumn(),
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("nodes, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    ) as progress:
        task = progress.add_task(what, total=len(targets), failed=0)
        failed = 0

        def done(outcome: Outcome[T]) -> None:
            nonlocal failed
            failed += not outcome.ok
            progress.update(task, advance=1, failed=failed)

        return run_bulk(targets, creds, options, op, done)


def _summary(what: str, outcomes: dict[str, Outcome[Any]]) -> None:
    bad = [o for o in outcomes.values() if o.error is not None]
    ok = len(outcomes) - len(bad)
    changed = sum(1 for o in outcomes.values() if o.changed)
    colour = "green" if not bad else "red"
    tail = f", {changed} changed" if changed else ""
    err.print(labelled(what, colour, f": {ok} ok, {len(bad)} failed of {len(outcomes)} nodes{tail}"))
    for o in bad:
        done = f"; changed before failing: {', '.join(o.actions)}" if o.actions else ""
        err.print(plain(f"  - {o.error} (after {_tries(o)}{done})"), soft_wrap=True)
    if bad:
        raise typer.Exit(EXIT_NODES_FAILED)


def _tries(o: Outcome[Any]) -> str:
    again = f", {o.retried} {'request' if o.retried == 1 else 'requests'} retried" if o.retried else ""
    return f"{o.attempts} {'try' if o.attempts == 1 else 'tries'}{again}"


def _result(o: Outcome[Any]) -> str:
    return "failed" if not o.ok else "changed" if o.changed else "unchanged"


def _record(o: Outcome[Any]) -> dict[str, Any]:
    """One node's result for --json: what the commands that change nodes print per node."""
    return {
        "result": _result(o),
        "power": o.value,
        "actions": list(o.actions),
        "attempts": o.attempts,
        "retried_requests": o.retried,
        "error": None if o.error is None else {"kind": o.error.kind, "message": o.error.message},
    }


def _report(what: str, stack: str, outcomes: dict[str, Outcome[Any]], as_json: bool) -> None:
    """The per-node table (or JSON) of a command that changes nodes, then the summary and its exit code."""
    if as_json:
        write_json({n: _record(o) for n, o in outcomes.items()})
    else:
        table = Table(title=plain(f"{what} on stack {stack}"), title_justify="left", header_style="bold")
        for col in ("node", "result", "power", "changes", "tries", "error"):
            table.add_column(col, overflow="fold")
        style = {"failed": "red", "changed": "yellow", "unchanged": "green"}
        for name, o in outcomes.items():
            result = _result(o)
            table.add_row(
                plain(name),
                plain(result, style[result]),
                plain(o.value or ""),
                plain(", ".join(o.actions)),
                plain(_tries(o)),
                plain(f"{o.error.kind}: {o.error.message}" if o.error else ""),
            )
        out.print(table)
    _summary(what, outcomes)


@app.command()
def status(ctx: typer.Context, limit: Limit = None, stacks_dir_: StacksDir = None, as_json: JsonFlag = False) -> None:
    """Table of nodes: power, boot target, health, firmware (BIOS version), model, serial, MACs."""
    targets, bmc = _targets(ctx, limit, stacks_dir_)
    creds, options = _access(bmc)
    outcomes = _run("reading BMCs", targets, creds, options, lambda n: n.info(), as_json)
    if as_json:
        doc = {n: o.value.as_dict() if o.value is not None else {"error": str(o.error)} for n, o in outcomes.items()}
        write_json(doc)
    else:
        table = Table(title=plain(f"BMCs of stack {ctx.obj['stack']}"), title_justify="left", header_style="bold")
        for col in ("node", "power", "boot target", "health", "firmware", "model", "serial", "MACs"):
            table.add_column(col)
        for name, o in outcomes.items():
            if o.value is None:
                table.add_row(plain(name), plain(o.error.kind if o.error else "?", "red"), "", "", "", "", "", "")
                continue
            i = o.value
            boot = f"{i.boot_target} ({i.boot_enabled})" if i.boot_enabled else str(i.boot_target)
            table.add_row(
                *(
                    plain(v)
                    for v in (name, i.power, boot, i.health, i.bios_version, i.model, i.serial, " ".join(i.macs))
                )
            )
        out.print(table)
    _summary("status", outcomes)


def _power(bmc: Bmc, action: str, landed: str) -> Callable[[RedfishNode], str | None]:
    from fjord.adapters.redfish import RedfishError

    def op(node: RedfishNode) -> str | None:
        if action == "restart" or node.power() != landed:
            node.set_power(action)  # type: ignore[arg-type]
            state = node.wait_power(landed, bmc.power_timeout_s)  # type: ignore[arg-type]
            if state != landed:
                raise RedfishError(
                    node.target.node, "timeout", f"power is {state} {bmc.power_timeout_s:g} s after asking for {landed}"
                )
            return state
        return landed

    return op


@app.command("power-on")
def power_on(ctx: typer.Context, limit: Limit = None, stacks_dir_: StacksDir = None, as_json: JsonFlag = False) -> None:
    """Power nodes on and wait until their BMCs report On; a table of which nodes changed and which failed."""
    targets, bmc = _targets(ctx, limit, stacks_dir_)
    creds, options = _access(bmc)
    outcomes = _run("powering on", targets, creds, options, _power(bmc, "on", "On"), as_json)
    _report("power-on", ctx.obj["stack"], outcomes, as_json)


@app.command("power-off")
def power_off(
    ctx: typer.Context,
    limit: Limit = None,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
    yes: Yes = False,
) -> None:
    """Power nodes off (forced) and wait until their BMCs report Off; a table of which nodes changed and which
    failed. Without --limit: asks, or --yes."""
    targets, bmc = _targets(ctx, limit, stacks_dir_)
    _confirm_site_wide(ctx, "power off", limit, targets, yes)
    creds, options = _access(bmc)
    outcomes = _run("powering off", targets, creds, options, _power(bmc, "off", "Off"), as_json)
    _report("power-off", ctx.obj["stack"], outcomes, as_json)


@app.command()
def pxe(
    ctx: typer.Context,
    limit: Limit = None,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
    yes: Yes = False,
) -> None:
    """Boot nodes from the network once (reinstall): set the PXE boot override, then restart (or power on) each
    node. This is the bootstrap's action, never a kept state. Without --limit: asks, or --yes."""
    targets, bmc = _targets(ctx, limit, stacks_dir_)
    _confirm_site_wide(ctx, "PXE boot (reinstall)", limit, targets, yes)
    creds, options = _access(bmc)

    def op(node: RedfishNode) -> str | None:
        node.set_boot("pxe", once=True)
        action = "restart" if node.power() == "On" else "on"
        return _power(bmc, action, "On")(node)

    _report("pxe", ctx.obj["stack"], _run("PXE booting", targets, creds, options, op, as_json), as_json)
