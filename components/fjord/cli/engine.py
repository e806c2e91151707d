"""`fjord preview|up|refresh|destroy <stack>`: the stack through the real Pulumi engine (docs/engine.md).

The site is validated first (a rejected site exits 1 and the engine never starts). While the engine runs, a
progress line follows its event stream (one line per finished change when stderr is not a terminal); at the
end a table counts the changes by resource type, with the duration. `--json` prints the run as data.

Exit codes: 0 ok; 1 rejected input (the site, a missing backend or passphrase, a policy pack folder that is not
one); 3 the engine ran and failed (a resource operation failed, the backend refused, the CLI is missing): the
error names the resource, and the state stays consistent, so fixing the cause and running the same command again
converges; 5 drift (`refresh --preview-only`, `preview --expect-no-changes`: the check worked and found changes);
6 a mandatory policy of a `--policy-pack` failed (named; `up` then changes nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fjord.cli.common import (
    EXIT_DRIFT,
    EXIT_POLICY,
    JsonFlag,
    StackArg,
    StacksDir,
    check_stack_hosts,
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
PolicyPacks = Annotated[
    list[Path] | None,
    typer.Option(
        "--policy-pack",
        help="A Pulumi policy pack folder (PulumiPolicy.yaml) the engine runs on the stack, e.g. fjord's `policy`;"
        " repeatable. A mandatory violation exits 6 (`up`: before anything changes); advisory ones are reported.",
    ),
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
    from fjord.sizing.alloc import read as read_alloc
    from fjord.sizing.site import validate_site
    from fjord.spec.load import read_stack, stacks_dir

    source = f"stack {stack}"
    try:
        cfg = read_stack(stack, folder)
        source = str(cfg.path) if cfg.path else source
        spec, size = validate_site(cfg.site, source, read_alloc(stack, stacks_dir(folder)), require_current=True)
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None
    # How the hosts are reached and which roles run: checked as the program and HostConfig check them.
    check_stack_hosts(stack, folder, spec, size)


def _project(project: Path | None, folder: Path | None) -> Path:
    from fjord.spec.load import stacks_dir

    if project is not None:
        return project.resolve()
    return stacks_dir(folder).resolve().parent


def _line(step: ResourceStep) -> str:
    extra = f" ({', '.join(step.diffs)})" if step.diffs else ""
    state = " FAILED" if step.failed else ""
    return f"  {SYMBOL.get(step.op, step.op)} {step.op} {step.type} {step.name}{extra}{state}"


def _check_packs(packs: list[Path] | None) -> list[Path]:
    """Each --policy-pack a folder holding PulumiPolicy.yaml (rejected, exit 1, otherwise)."""
    found = []
    for pack in packs or []:
        if not (pack / "PulumiPolicy.yaml").is_file():
            raise reject(
                "--policy-pack", [f"--policy-pack: no PulumiPolicy.yaml in {pack}; allowed: a policy pack folder"]
            )
        found.append(pack.resolve())
    return found


def _summary(run: EngineRun) -> Table:
    verb = "would change" if run.operation == "preview" or run.preview_only else "changed"
    what = f"{run.operation} (preview only)" if run.preview_only else run.operation
    table = Table(
        title=plain(f"{what} {run.stack}: {verb} in {run.seconds:.1f} s"),
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
    policy_packs: list[Path] | None = None,
    preview_only: bool = False,
    expect_no_changes: bool = False,
) -> None:
    from fjord.engine import PROVIDER_TYPES, EngineSetupError, EngineUnavailable, engine_bin, policy_runner, run
    from fjord.spec.load import stacks_dir

    folder = stacks_dir_
    packs = _check_packs(policy_packs)
    if operation in ("preview", "up"):
        _check_stack(stack, folder)  # a rejected site exits 1 before the engine starts
    if packs:
        try:  # say why a pack cannot run before the engine starts, rather than after a failed start
            policy_runner(engine_bin())
        except EngineUnavailable as exc:
            error_line(str(exc))
            raise typer.Exit(EXIT_ENGINE) from None
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
            if step.failed or (shown and (step.done or operation == "preview" or preview_only)):
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
                policy_packs=packs,
                preview_only=preview_only,
            )
        except EngineSetupError as exc:
            raise reject(f"stack {stack}", [str(exc)]) from None
        except EngineUnavailable as exc:
            error_line(str(exc))
            raise typer.Exit(EXIT_ENGINE) from None
    drift = _drift(result) if (preview_only or expect_no_changes) and result.ok else []
    if as_json:
        write_json({**result.as_dict(), **({"drift": drift} if preview_only or expect_no_changes else {})})
    else:
        out.print(_summary(result))
        for warning in result.warnings:
            err.print(labelled("warning", "yellow", f": {warning}"), soft_wrap=True)
        if result.ok and operation != "up":
            for line in result.left_behind:  # refresh: drift and dead BMCs the next up will act on
                err.print(labelled("drift", "yellow", f": {line}"), soft_wrap=True)
        for v in result.policy:
            if not v.mandatory:
                note = f": {stack}: policy {v.policy} ({v.level}, pack {v.pack}): {v.message}"
                err.print(labelled("warning", "yellow", note), soft_wrap=True)
    failed_policies = result.policy_failed()
    if failed_policies:
        for v in result.policy:
            if v.mandatory:
                error_line(f"{stack}: policy {v.policy} (mandatory, pack {v.pack}): {v.message}")
        if operation == "up":
            error_line(f"up {stack}: nothing was changed: mandatory policy failed: {', '.join(failed_policies)}")
        raise typer.Exit(EXIT_POLICY)
    if not result.ok:
        for line in result.errors or [f"{operation} failed"]:
            error_line(f"{operation} {stack}: {line}")
        raise typer.Exit(EXIT_ENGINE)
    if drift:
        for line in drift:
            error_line(f"{stack}: drift: {line}")
        raise typer.Exit(EXIT_DRIFT)


def _drift(run: EngineRun) -> list[str]:
    """What a drift check found: each change the engine would make (default providers left out, as in the
    summary), and what a refresh read as failed, unreachable or drifted on the BMCs and hosts."""
    found = [f"{s.op} {s.type} {s.name}" + (f" ({', '.join(s.diffs)})" if s.diffs else "") for s in run.changed()]
    return found + [line for line in run.left_behind if line not in found]


def preview(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    backend: Backend = None,
    project: ProjectDir = None,
    as_json: JsonFlag = False,
    parallel: Parallel = None,
    policy_pack: PolicyPacks = None,
    expect_no_changes: Annotated[
        bool,
        typer.Option(
            "--expect-no-changes",
            help="A drift check of the spec against the state: exit 5 when the preview would change anything.",
        ),
    ] = False,
) -> None:
    """Show what `fjord up` would change, through the real Pulumi engine (providers' check and diff)."""
    _execute(
        "preview",
        stack,
        stacks_dir_,
        backend,
        project,
        as_json,
        parallel,
        policy_packs=policy_pack,
        expect_no_changes=expect_no_changes,
    )


def up(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    backend: Backend = None,
    project: ProjectDir = None,
    as_json: JsonFlag = False,
    parallel: Parallel = None,
    policy_pack: PolicyPacks = None,
) -> None:
    """Create or update the stack's resources: power and boot the nodes, configure the hosts."""
    _execute("up", stack, stacks_dir_, backend, project, as_json, parallel, policy_packs=policy_pack)


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
    preview_only: Annotated[
        bool,
        typer.Option(
            "--preview-only",
            help="The drift check: read the BMCs and hosts and show what differs from the state, writing nothing;"
            " exit 5 on drift.",
        ),
    ] = False,
) -> None:
    """Read what the BMCs and hosts really have into the state, showing the drift (changes nothing on them)."""
    _execute(
        "refresh",
        stack,
        stacks_dir_,
        backend,
        project,
        as_json,
        parallel,
        clear_pending_creates,
        preview_only=preview_only,
    )


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
