"""`fjord artifacts <stack> put|publish|list|get`: plans, inventories and reports in the site's artifacts bucket.

Every object carries metadata (site, stack, kind, git commit, time, original file name) and the SHA-256 of
its content, which `get` checks byte for byte. Keys: `<stack>/<kind>/<UTC time>-<commit>-<file name>`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from fjord.cli.common import JsonFlag, StackArg, StacksDir, err, load_stack, out, plain, reject, write_json
from fjord.cli.state import connect_store, open_store, store_failed
from fjord.plan.runner import PlanError, plan_stacks
from fjord.spec.load import stacks_dir

if TYPE_CHECKING:  # boto3 is loaded when a command talks to the object store
    from fjord.adapters.s3 import ObjectInfo, ObjectStore
    from fjord.spec.models import Site, StoreTarget

    Opened = tuple[Site, StoreTarget, ObjectStore]

Kind = Literal["plan", "inventory", "validation", "report", "other"]
KINDS: tuple[str, ...] = ("plan", "inventory", "validation", "report", "other")


def _kind(value: str | None) -> str | None:
    """`--kind` takes one of KINDS; anything else is a usage error (exit 2), like any other bad option value."""
    if value is not None and value not in KINDS:
        raise typer.BadParameter(f"{value!r} is not a kind of artifact; allowed: {', '.join(KINDS)}")
    return value


app: typer.Typer = typer.Typer(
    help="Plans, inventories and validation reports in the site's artifacts bucket.", no_args_is_help=True
)


def git_commit(cwd: Path | None = None) -> str:
    """$FJORD_GIT_COMMIT, else `git rev-parse HEAD` (with '-dirty' for uncommitted changes), else 'unknown'."""
    env = os.environ.get("FJORD_GIT_COMMIT")
    if env:
        return env
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=cwd,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def artifact_key(stack: str, kind: str, name: str, commit: str, when: dt.datetime) -> str:
    return f"{stack}/{kind}/{when.strftime('%Y%m%dT%H%M%SZ')}-{commit[:12]}-{name}"


@app.callback()
def _stack(
    ctx: typer.Context,
    stack: StackArg,
) -> None:
    ctx.obj = stack


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:

    with Progress(
        TextColumn("{task.description}", markup=False),  # the label names a file: printed as it is
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def upload(
    stack: str, folder: Path | None, files: list[tuple[Path, str]], opened: Opened | None = None
) -> list[ObjectInfo]:
    """Upload (file, kind) pairs with the artifact metadata; the objects as stored. `opened`: the stack's
    `open_store` result where the caller has it already."""
    from fjord.adapters.s3 import NotFound, S3Error

    site, target, store = opened or open_store(stack, folder)
    commit = git_commit(stacks_dir(folder))
    stored: list[ObjectInfo] = []
    try:
        for left in store.abort_left_uploads():
            err.print(
                plain(
                    f"aborted an unfinished upload of {left.bucket}/{left.key} left by an earlier run ({left.started})"
                ),
                soft_wrap=True,
            )
        for path, kind in files:
            when = dt.datetime.now(dt.UTC).replace(microsecond=0)
            meta = {
                "site": site.name,
                "stack": stack,
                "kind": kind,
                "git-commit": commit,
                "created": when.isoformat(),
                "name": path.name,
            }
            key = artifact_key(stack, kind, path.name, commit, when)
            with _progress(f"upload {path.name}", path.stat().st_size) as advance:
                store.put_file(target.artifacts_bucket, key, path, meta, advance)
            stored.append(store.head(target.artifacts_bucket, key))
    except NotFound as exc:
        raise store_failed(NotFound(f"{exc}; create the site's buckets with `fjord state init {stack}`")) from None
    except S3Error as exc:
        raise store_failed(exc) from None
    return stored


def _print_stored(stored: list[ObjectInfo], as_json: bool) -> None:
    from fjord.adapters.s3 import SHA256_META

    if as_json:
        write_json([_row(o) for o in stored])
        return
    for o in stored:
        out.print(
            plain(f"stored {o.key} ({o.size:,} bytes, sha256 {o.metadata.get(SHA256_META, '?')[:16]}...)"),
            soft_wrap=True,
        )


def _row(o: ObjectInfo) -> dict[str, object]:
    from fjord.adapters.s3 import SHA256_META

    m = o.metadata
    return {
        "key": o.key,
        "size": o.size,
        "kind": m.get("kind", ""),
        "created": m.get("created", o.last_modified),
        "git_commit": m.get("git-commit", ""),
        "sha256": m.get(SHA256_META, ""),
        "site": m.get("site", ""),
        "stack": m.get("stack", ""),
        "version_id": o.version_id,
    }


@app.command("put")
def put(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Files to upload.", exists=True, dir_okay=False)],
    kind: Annotated[
        str, typer.Option("--kind", callback=_kind, help=f"What the files are: {', '.join(KINDS)}.")
    ] = "report",
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload files (e.g. validation reports) with site, stack, git commit, time and SHA-256."""
    _print_stored(upload(ctx.obj, stacks_dir_, [(f, kind) for f in files]), as_json)


@app.command("publish")
def publish(ctx: typer.Context, stacks_dir_: StacksDir = None, as_json: JsonFlag = False) -> None:
    """Plan the stack offline and upload the plan (JSON) and the host inventory (JSON)."""
    stack, folder = ctx.obj, stacks_dir_
    # Once: the site validated and sized (for the inventory) and its store's client made (for both uploads).
    site, size, source = load_stack(stack, folder)
    opened = (site, *connect_store(stack, folder, site, source))
    try:
        plan = plan_stacks([stack], stacks_dir(folder), 1)[0]
    except PlanError as exc:
        raise reject(exc.source, exc.lines) from None
    inventory = [n.inventory_record() for n in size.hosts()]
    with tempfile.TemporaryDirectory(prefix="fjord-artifacts-") as tmp:
        plan_file, inv_file = Path(tmp, f"plan-{stack}.json"), Path(tmp, f"inventory-{stack}.json")
        plan_file.write_text(json.dumps(plan.data, indent=1), encoding="utf-8")
        inv_file.write_text(json.dumps(inventory, indent=1), encoding="utf-8")
        _print_stored(upload(stack, folder, [(plan_file, "plan"), (inv_file, "inventory")], opened), as_json)


@app.command("list")
def list_(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option("--kind", callback=_kind, help="Only this kind of artifact.")] = None,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List the stack's artifacts, newest first, with their metadata."""
    from fjord.adapters.s3 import S3Error

    stack, folder = ctx.obj, stacks_dir_
    _, target, store = open_store(stack, folder)
    prefix = f"{stack}/{kind}/" if kind else f"{stack}/"
    try:
        rows = [_row(o) for o in store.list(target.artifacts_bucket, prefix)]
    except S3Error as exc:
        raise store_failed(exc) from None
    rows.sort(key=lambda r: str(r["created"]), reverse=True)
    if as_json:
        write_json(rows)
        return
    table = Table(
        title=plain(f"{stack}: artifacts in {target.artifacts_bucket}"), title_justify="left", header_style="bold"
    )
    for col in ("key", "kind", "bytes", "created", "commit", "sha256"):
        table.add_column(col, justify="right" if col == "bytes" else "left", overflow="fold")
    for r in rows:
        table.add_row(
            plain(r["key"]),
            plain(r["kind"]),
            f"{r['size']:,}",
            plain(r["created"]),
            plain(str(r["git_commit"])[:12]),
            plain(str(r["sha256"])[:16]),
        )
    out.print(table)


@app.command("get")
def get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The artifact's key, as `list` shows it.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write it (default: its file name, here).")
    ] = None,
    stacks_dir_: StacksDir = None,
) -> None:
    """Download an artifact and check its content against the SHA-256 stored with it."""
    from fjord.adapters.s3 import S3Error

    stack, folder = ctx.obj, stacks_dir_
    _, target, store = open_store(stack, folder)
    dest = output or Path(key.rsplit("/", 1)[-1])
    try:
        info = store.head(target.artifacts_bucket, key)
        with _progress(f"download {dest.name}", info.size) as advance:
            store.get_file(target.artifacts_bucket, key, dest, advance)
    except S3Error as exc:
        raise store_failed(exc) from None
    out.print(plain(f"wrote {dest} ({info.size:,} bytes, sha256 verified)"), soft_wrap=True)
