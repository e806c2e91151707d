"""`fjord preview|up|refresh|destroy <stack>`: the stack through the real Pulumi engine (docs/engine.md).

The site is validated first (a rejected site exits 1 and the engine never starts). While the engine runs, a
progress line follows its event stream (one line per finished change when stderr is not a terminal); at the
end a table counts the changes by resource type, with the duration. `--json` prints the run as data.

Exit codes: 0 ok; 1 rejected input (the site, a missing backend or passphrase); 3 the engine ran and failed
(a resource operation failed, the backend refused, the CLI is missing): the error names the resource, and the
state stays consistent, so fixing the cause and running the same command again converges.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fjord.cli.common import (
    JsonFlag,
    StackArg,
    StacksDir,
    err,
    error_line,
    labelled,
    load_stack,
    out,
    plain,
    reject,
    write_json,
)
from fjord.spec.errors import SiteError

if TYPE_CHECKING:
    from fjord.engine import EngineRun, Operation, ResourceStep

EXIT_ENGINE = 3
"""The engine ran (or could not start) and an operation failed, or nodes/hosts were left behind: 3 as for
`fjord bmc`, `configure` and `state` (the outside world failed; fix it and run again), distinct from 1 (the
input was rejected)."""

Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        envvar="PULUMI_BACKEND_URL",
        help="State backend: file://<folder> or the site's s3://... URL (default: $PULUMI_BACKEND_URL, else the"
        " site's own object store after `fjord state init`).",
    ),
]
ProjectDir = Annotated[
    Path | None,
    typer.Option("--project", help="The folder holding Pulumi.yaml (default: the stacks folder's parent)."),
]
Parallel = Annotated[
    int | None, typer.Option("--parallel", "-p", min=1, help="Resource operations the engine runs at once.")
]

SYMBOL = {
    "create": "+",
    "update": "~",
    "replace": "+-",
    "create-replacement": "++",
    "delete-replaced": "--",
    "delete": "-",
    "refresh": "~",
    "read": ">",
}
COLUMNS = ("create", "update", "replace", "delete")


def _site_backend(stack: str, folder: Path | None) -> tuple[str, dict[str, str]]:
    """The site's own S3 state bucket as a backend URL, with the S3 keys for the CLI's environment."""
    from fjord.cli.state import pulumi_login_url, resolve_credentials
    from fjord.spec.load import read_stack

    site, _size, source = load_stack(stack, folder)
    target = site.store()
    if target is None:
        raise reject(
            source,
            [
                "no state backend: pass --backend file://<folder> (local work) or s3://..., set PULUMI_BACKEND_URL,"
                " or give the site an object store and run `fjord state init`"
            ],
        )
    creds = resolve_credentials(read_stack(stack, folder), folder=folder)
    keys = {"AWS_ACCESS_KEY_ID": creds.access_key_id, "AWS_SECRET_ACCESS_KEY": creds.secret_access_key}
    return pulumi_login_url(target), keys


def _check_stack(stack: str, folder: Path | None) -> None:
    """What the program checks before it registers anything, checked here first so that a rejected site exits 1
    without starting the engine: the site, and an allocation record that is present and current."""
    from fjord.hosts.stack_config import stack_host_tags, stack_host_vars
    from fjord.providers.playbook import check_tags
    from fjord.sizing.alloc import read as read_alloc
    from fjord.sizing.site import validate_site
    from fjord.spec.errors import Problem
    from fjord.spec.load import HOST_TAGS_KEY, HOST_VARS_KEY, read_stack, stacks_dir

    source = f"stack {stack}"
    try:
        cfg = read_stack(stack, folder)
        source = str(cfg.path) if cfg.path else source
        spec, size = validate_site(cfg.site, source, read_alloc(stack, stacks_dir(folder)), require_current=True)
        # How the hosts are reached and which roles run: checked as the program and HostConfig check them.
        stack_host_vars(cfg.config.get(HOST_VARS_KEY), spec, size, stacks_dir(folder))
        tags = stack_host_tags(cfg.config.get(HOST_TAGS_KEY))
        problems = check_tags(list(tags) if tags else None)
        if problems:
            raise SiteError([Problem(f"{HOST_TAGS_KEY}{k.removeprefix('tags')}", v, m) for k, v, m in problems])
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None


def _project(project: Path | None, folder: Path | None) -> Path:
    from fjord.spec.load import stacks_dir

    if project is not None:
        return project.resolve()
    return stacks_dir(folder).resolve().parent


def _line(step: ResourceStep) -> str:
    extra = f" ({', '.join(step.diffs)})" if step.diffs else ""
    state = " FAILED" if step.failed else ""
    return f"  {SYMBOL.get(step.op, step.op)} {step.op} {step.type} {step.name}{extra}{state}"


def _summary(run: EngineRun) -> Table:
    verb = "would change" if run.operation == "preview" else "changed"
    table = Table(
        title=plain(f"{run.operation} {run.stack}: {verb} in {run.seconds:.1f} s"),
        title_justify="left",
        header_style="bold",
    )
    table.add_column("type")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    rows = run.by_type()
    totals = dict.fromkeys(COLUMNS, 0)
    for typ, ops in sorted(rows.items()):
        counts = {
            "create": ops.get("create", 0),
            "update": ops.get("update", 0) + ops.get("refresh", 0),
            "replace": ops.get("replace", 0) + ops.get("create-replacement", 0),
            "delete": ops.get("delete", 0),
        }
        for k, v in counts.items():
            totals[k] += v
        table.add_row(plain(typ), *(str(counts[c]) if counts[c] else "" for c in COLUMNS))
    table.add_row(plain("total", "bold"), *(str(totals[c]) for c in COLUMNS))
    same = run.changes.get("same", 0)
    table.caption = plain(f"{same} unchanged") if same else None
    return table


def _execute(
    operation: Operation,
    stack: str,
    stacks_dir_: Path | None,
    backend: str | None,
    project: Path | None,
    as_json: bool,
    parallel: int | None,
    clear_pending_creates: bool = False,
) -> None:
    from fjord.engine import PROVIDER_TYPES, EngineSetupError, EngineUnavailable, run
    from fjord.spec.load import stacks_dir

    folder = stacks_dir_
    if operation in ("preview", "up"):
        _check_stack(stack, folder)  # a rejected site exits 1 before the engine starts
    extra: dict[str, str] = {}
    if not backend:
        backend, extra = _site_backend(stack, folder)
    project_dir = _project(project, folder)
    live = not as_json and err.is_terminal
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not live,
    ) as progress:
        task = progress.add_task(f"{operation} {stack}: starting the engine", total=None)

        finished: set[str] = set()  # counted as the events come (a sum over every step per event is quadratic)

        def on_step(step: ResourceStep, current: EngineRun) -> None:
            if step.done:
                finished.add(step.urn)
            progress.update(
                task, description=f"{operation} {stack}: {len(finished)}/{len(current.steps)} resources, {step.name}"
            )
            shown = step.op != "same" and not step.type.startswith(PROVIDER_TYPES)
            if step.failed or (shown and (step.done or operation == "preview")):
                if live:
                    progress.console.print(plain(_line(step)))
                elif not as_json:
                    err.print(plain(_line(step)), soft_wrap=True)

        try:
            result = run(
                operation,
                stack,
                project_dir,
                backend,
                extra,
                on_step=on_step,
                parallel=parallel,
                clear_pending_creates=clear_pending_creates,
                stacks=stacks_dir(folder).resolve(),
            )
        except EngineSetupError as exc:
            raise reject(f"stack {stack}", [str(exc)]) from None
        except EngineUnavailable as exc:
            error_line(str(exc))
            raise typer.Exit(EXIT_ENGINE) from None
    if as_json:
        write_json(result.as_dict())
    else:
        out.print(_summary(result))
        for warning in result.warnings:
            err.print(labelled("warning", "yellow", f": {warning}"), soft_wrap=True)
        if result.ok and operation != "up":
            for line in result.left_behind:  # refresh: drift and dead BMCs the next up will act on
                err.print(labelled("drift", "yellow", f": {line}"), soft_wrap=True)
    if not result.ok:
        for line in result.errors or [f"{operation} failed"]:
            error_line(f"{operation} {stack}: {line}")
        raise typer.Exit(EXIT_ENGINE)


def preview(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    backend: Backend = None,
    project: ProjectDir = None,
    as_json: JsonFlag = False,
    parallel: Parallel = None,
) -> None:
    """Show what `fjord up` would change, through the real Pulumi engine (providers' check and diff)."""
    _execute("preview", stack, stacks_dir_, backend, project, as_json, parallel)


def up(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    backend: Backend = None,
    project: ProjectDir = None,
    as_json: JsonFlag = False,
    parallel: Parallel = None,
) -> None:
    """Create or update the stack's resources: power and boot the nodes, configure the hosts."""
    _execute("up", stack, stacks_dir_, backend, project, as_json, parallel)


def refresh(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    backend: Backend = None,
    project: ProjectDir = None,
    as_json: JsonFlag = False,
    parallel: Parallel = None,
    clear_pending_creates: Annotated[
        bool,
        typer.Option(
            "--clear-pending-creates",
            help="Drop creates an interrupted run left pending from the state (check those resources first).",
        ),
    ] = False,
) -> None:
    """Read what the BMCs and hosts really have into the state, showing the drift (changes nothing on them)."""
    _execute("refresh", stack, stacks_dir_, backend, project, as_json, parallel, clear_pending_creates)


def destroy(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    backend: Backend = None,
    project: ProjectDir = None,
    as_json: JsonFlag = False,
    parallel: Parallel = None,
) -> None:
    """Delete the stack's resources from the state; nodes are left running unless the site's bmc.on_delete says
    'power-off'."""
    _execute("destroy", stack, stacks_dir_, backend, project, as_json, parallel)
