"""`fjord alloc` and `fjord diff`: keep the allocation record, and show what a change of the spec does.

`fjord alloc <stack>` writes `stacks/Pulumi.<stack>.alloc.yaml`, the record of every rack and subnet
(`fjord.sizing.alloc`), extended for what the spec adds and trimmed for what it removes; nothing recorded
moves. `--check` only says whether the record is current (CI). Removing a cluster needs it in the stack's
`fjord:allowRemove` (or `--allow-remove`).

`fjord diff <stack> [--base REF]` compares the stack at a git ref (default HEAD) with the working tree, from
the spec alone (`fjord.change.diff`). Exit codes: 0 nothing disruptive; 3 disruptive but allowed (nodes
removed, drained or restarted in batches); 1 rejected (a node or rack would move, a cluster removed without
`fjord:allowRemove`, or an invalid spec); 2 usage.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fjord.cli.common import (
    EXIT_REJECTED,
    JsonFlag,
    StackArg,
    StacksDir,
    error_line,
    labelled,
    out,
    plain,
    reject,
    split_list,
    write_json,
)
from fjord.spec.errors import Problem, SiteError

if TYPE_CHECKING:
    from fjord.change.diff import Side, SiteDiff

EXIT_DISRUPTIVE = 3
"""`fjord diff`: the change drains, restarts or removes nodes (allowed, in batches); a pipeline asks a human."""

AllowRemove = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-remove",
        help="A cluster whose removal from the spec is meant (as if listed in fjord:allowRemove); repeatable.",
    ),
]


def alloc(
    stack: StackArg,
    stacks_dir_: StacksDir = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the record is missing or not current.")
    ] = False,
    allow_remove_: AllowRemove = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the allocation record (racks, subnets) the Pulumi program requires; nothing recorded moves."""
    from fjord.sizing.alloc import alloc_path, differences, dump
    from fjord.sizing.alloc import read as read_alloc
    from fjord.sizing.site import size_site
    from fjord.spec.load import allow_remove, load_site, read_stack, stacks_dir

    folder = stacks_dir(stacks_dir_)
    path = alloc_path(stack, folder)
    source = f"stack {stack}"
    try:
        cfg = read_stack(stack, stacks_dir_)
        source = str(cfg.path) if cfg.path else f"{stack} (embedded default site)"
        site = load_site(cfg.site, source)
        old = read_alloc(stack, folder)
        new = size_site(site, old).alloc
        allowed = {*allow_remove(cfg), *split_list(allow_remove_)}
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None
    removed = sorted(set(old.clusters) - set(new.clusters)) if old is not None else []
    refused = [c for c in removed if c not in allowed]
    if refused:
        raise reject(
            str(path),
            [
                f"cluster {c!r} is in the allocation record but not in the spec: removing it destroys its nodes;"
                " allowed: list it in fjord:allowRemove (or --allow-remove) to mean it, or put it back"
                for c in refused
            ],
        )
    changes = ["no record yet"] if old is None else differences(old, new)
    current = old == new
    if as_json:
        write_json({"stack": stack, "record": str(path), "current": current, "changes": changes, "written": not check})
    if check:
        if not current:
            raise reject(str(path), [f"not current ({'; '.join(changes)}); allowed: run `fjord alloc {stack}`"])
        if not as_json:
            out.print(labelled("ok", "green", f" {path}: current"))
        return
    if not current:
        path.write_text(dump(new, stack), encoding="utf-8")
    if not as_json:
        if current:
            out.print(labelled("ok", "green", f" {path}: current, nothing to write"))
        else:
            out.print(labelled("wrote", "green", f" {path}"))
            for line in changes:
                out.print(plain(f"  - {line}"))


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def _at_ref(ref: str, path: Path) -> str | None:
    """The text of `path` at git `ref`, None when the file is not there; exits 1 when `ref` is no commit."""
    folder = path.parent if path.parent.is_dir() else Path.cwd()
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if top.returncode != 0:
        raise reject(str(folder), [f"--base {ref}: not inside a git repository; allowed: a stacks folder in one"])
    root = Path(top.stdout.strip())
    if _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root).returncode != 0:
        raise reject(str(root), [f"--base {ref}: no such commit; allowed: a branch, tag or commit of this repository"])
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    shown = _git(["show", f"{ref}:{rel}"], root)
    return shown.stdout if shown.returncode == 0 else None


def _repo_relative(path: Path) -> str:
    """`path` relative to its git repository's root (as `git show <ref>:<path>` names it)."""
    folder = path.parent if path.parent.is_dir() else Path.cwd()
    top = _git(["rev-parse", "--show-toplevel"], folder)
    return path.resolve().relative_to(Path(top.stdout.strip()).resolve()).as_posix()


def _side(stack: str, text: str | None, alloc_text: str | None, source: str, embedded: bool) -> Side:
    """One side of the diff: the stack's spec and record as text (from git or the working tree)."""
    import yaml

    from fjord.change.diff import Side
    from fjord.sizing.alloc import parse
    from fjord.spec.load import SAFE_LOADER, allow_remove, default_site, load_site, parse_stack_doc

    if text is None:
        if not embedded:
            return Side(source, None, None, ())
        cfg_site: dict[str, Any] = default_site()
        allowed: tuple[str, ...] = ()
    else:
        try:
            doc = yaml.load(text, Loader=SAFE_LOADER) or {}
        except yaml.YAMLError as exc:
            problem = Problem("", source, f"is not valid YAML: {str(exc).splitlines()[0]}; allowed: a YAML mapping")
            raise SiteError([problem], source) from None
        cfg = parse_stack_doc(stack, doc, Path(source))
        cfg_site, allowed = cfg.site, allow_remove(cfg)
    site = load_site(cfg_site, source)
    record = parse(alloc_text, f"{source} (allocation record)") if alloc_text is not None else None
    return Side(source, site, record, allowed)


def diff(
    stack: StackArg,
    base: Annotated[
        str, typer.Option("--base", help="Git ref to compare the working tree's stack with (default: HEAD).")
    ] = "HEAD",
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown (a pull request comment).")] = False,
) -> None:
    """What a change of the spec does to the site: nodes added, removed, restarted, moved (exit 0/3/1)."""
    from fjord.change.diff import diff_sites, to_json, to_markdown
    from fjord.sizing.alloc import alloc_path
    from fjord.spec.load import DEFAULT_STACK, stack_path, stacks_dir

    if as_json and markdown:
        error_line("--json and --markdown: choose one")
        raise typer.Exit(2)
    folder = stacks_dir(stacks_dir_)
    try:
        path = stack_path(stack, folder)
    except SiteError as exc:
        raise reject(exc.source, exc.lines()) from None
    record = alloc_path(stack, folder)
    embedded = stack == DEFAULT_STACK
    if not path.is_file() and not embedded:
        raise reject(f"stack {stack}", [f"no file {path}"])
    try:
        base_text, base_alloc = _at_ref(base, path), _at_ref(base, record)
        # Both sides named by the path in the repository, so that the output is the same in every checkout.
        rel = _repo_relative(path)
        new_text = path.read_text(encoding="utf-8") if path.is_file() else None
        new_alloc = record.read_text(encoding="utf-8") if record.is_file() else None
        old = _side(stack, base_text, base_alloc, f"{base}:{rel}", embedded)
        new = _side(stack, new_text, new_alloc, rel, embedded)
        result = diff_sites(stack, old, new)
    except SiteError as exc:
        raise reject(exc.source, exc.lines()) from None
    if as_json:
        write_json(to_json(result))
    elif markdown:
        out.file.write(to_markdown(result) + "\n")
    else:
        _print(result)
    if result.rejected:
        raise typer.Exit(EXIT_REJECTED)
    if result.disruptive:
        raise typer.Exit(EXIT_DISRUPTIVE)


def _print(result: SiteDiff) -> None:
    from rich.table import Table

    verdict = "rejected" if result.rejected else "disruptive" if result.disruptive else "safe"
    colour = {"rejected": "red", "disruptive": "yellow", "safe": "green"}[verdict]
    out.print(labelled(verdict, colour, f": stack {result.stack}, {result.base} -> {result.head}"))
    table = Table(title=plain(f"{result.stack}: per cluster"), title_justify="left", header_style="bold")
    for col in ("cluster", "change", "nodes", "added", "removed", "restarted", "moved", "batch", "why"):
        table.add_column(col, justify="right" if col in ("nodes", "added", "removed", "restarted", "moved") else "left")
    for c in result.clusters:
        batch = f"{c.batch_nodes} ({c.batch_percent} %)" if c.restarted else ""
        table.add_row(
            plain(c.name),
            plain(c.change),
            f"{c.nodes_before:,} -> {c.nodes_after:,}",
            f"{len(c.added):,}",
            f"{len(c.removed):,}",
            f"{c.restarted:,}",
            plain(f"{len(c.moved):,}", "red" if c.moved else ""),
            plain(batch),
            plain("; ".join(c.reasons)),
        )
    out.print(table)
    for line in result.problems:
        out.print(labelled("rejected", "red", f": {line}"), soft_wrap=True)
    for m in [m for c in result.clusters for m in c.moved][:20]:
        out.print(plain(f"  moved: {m.node} {m.field} {m.before} -> {m.after}", "red"), soft_wrap=True)
    for line in result.notes:
        out.print(plain(f"note: {line}"), soft_wrap=True)
