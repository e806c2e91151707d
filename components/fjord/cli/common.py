"""What every `fjord` command shares: the consoles, the stack argument and options, and how a rejected
stack is reported. Sub-command modules import it; `fjord.cli.main` registers them.

The CLI loads a library when a command uses it, not when `fjord` starts: the site model, boto3, sushy and
ansible-runner are imported inside the commands (tests/test_layers.py pins what each command loads).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from fjord.spec.errors import SiteError

if TYPE_CHECKING:
    from fjord.sizing.site import SiteSize
    from fjord.spec.models import Site

EXIT_REJECTED = 1

# Piped output (CI logs, GitOps comments) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

StackArg = Annotated[str, typer.Argument(help="Stack name: stacks/Pulumi.<stack>.yaml ('dev' is embedded).")]
StacksDir = Annotated[
    Path | None,
    typer.Option("--stacks-dir", help="Folder of Pulumi.<stack>.yaml files (default: ./stacks or $FJORD_STACKS_DIR)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def reject(source: str, lines: list[str]) -> typer.Exit:
    """Print one line per problem (the first says where) and return the exit to raise."""
    if len(lines) == 1:
        err.print(f"[red]error[/red]: {source}: {lines[0]}", highlight=False, soft_wrap=True)
    else:
        err.print(f"[red]error[/red]: {source}: {len(lines)} problems", highlight=False, soft_wrap=True)
        for line in lines:
            err.print(f"  - {line}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_REJECTED)


def load_stack(stack: str, folder: Path | None) -> tuple[Site, SiteSize, str]:
    """The stack's site, validated and sized, and where it came from; a rejected stack exits 1."""
    from fjord.sizing.site import size_site
    from fjord.spec.load import load_site, read_stack

    source = f"stack {stack}"
    try:
        cfg = read_stack(stack, folder)
        source = str(cfg.path) if cfg.path else f"{stack} (embedded default site)"
        site = load_site(cfg.site, source)
        return site, size_site(site), source
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None


def split_list(values: list[str] | None) -> list[str]:
    """A repeatable option's values, each of which may be comma-separated: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]
