"""What every `fjord` command shares: the consoles, the stack argument and options, and how a rejected
stack is reported. Sub-command modules import it; `fjord.cli.main` registers them.

The CLI loads a library when a command uses it, not when `fjord` starts: the site model, boto3, sushy and
ansible-runner are imported inside the commands (tests/test_layers.py pins what each command loads).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fjord.spec.errors import SiteError

if TYPE_CHECKING:
    from fjord.sizing.site import SiteSize
    from fjord.spec.models import Site

EXIT_REJECTED = 1
EXIT_DRIFT = 5
"""The drift check found drift (`fjord refresh --preview-only`, `fjord preview --expect-no-changes`, `fjord gitops
drift`): the check itself worked, and what runs differs from what was applied. Distinct from 3 (the check could
not be made: the engine, a BMC or the backend failed; a lock or a pending operation)."""
EXIT_POLICY = 6
"""A mandatory policy rule failed (`fjord plan`, `fjord gitops check`, `fjord preview|up --policy-pack`): the
change is valid but not allowed here."""

# Piped output (CI logs, GitOps comments) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

StackArg = Annotated[str, typer.Argument(help="Stack name: stacks/Pulumi.<stack>.yaml ('dev' is embedded).")]
StacksDir = Annotated[
    Path | None,
    typer.Option("--stacks-dir", help="Folder of Pulumi.<stack>.yaml files (default: ./stacks or $FJORD_STACKS_DIR)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
PolicyConfig = Annotated[
    Path | None,
    typer.Option(
        "--policy-config",
        help="Policy settings (default: policy/config.yaml beside the stacks folder, else built-in defaults).",
        exists=True,
        dir_okay=False,
    ),
]


def plain(value: object, style: str = "") -> Text:
    """`value` as text that rich never reads as markup or emoji codes: for names, paths, values and messages
    (a value such as `[secret]` or `[/x]` prints as written). Tables and trees take it as a cell or label."""
    return Text(str(value), style=style)


def labelled(label: str, style: str, rest: str) -> Text:
    """fjord's own `label` in `style`, then `rest` verbatim: `labelled("error", "red", ": uk: ...")`."""
    return Text.assemble((label, style), rest)


def error_line(message: str) -> None:
    """One `error: <message>` line on stderr, the message printed verbatim."""
    err.print(labelled("error", "red", f": {message}"), soft_wrap=True)


def write_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, never coloured (rich's print_json colours it on a
    terminal or with FORCE_COLOR, which makes it unreadable to a JSON parser)."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def policy_table(stack: str, report: dict[str, Any]) -> Table:
    """A stack's policy results (`PolicyReport.as_dict()`): one row per rule, its findings below it."""
    table = Table(title=plain(f"{stack}: policy"), title_justify="left", header_style="bold")
    for col in ("rule", "severity", "result", "findings"):
        table.add_column(col)
    colour = {"passed": "green", "skipped": "dim"}
    for r in report["results"]:
        style = colour.get(r["status"], "red" if r["severity"] == "mandatory" else "yellow")
        findings = "\n".join(f"{v['path']}: {v['message']} (got {v['value']})" for v in r["violations"]) or r["note"]
        table.add_row(plain(r["rule"]), plain(r["severity"]), plain(r["status"], style), plain(findings))
    return table


def policy_errors(stack: str, report: dict[str, Any]) -> None:
    """One error line per mandatory violation: `<stack>: policy <rule>: <path>: <message> (got <value>)`."""
    for r in report["results"]:
        if r["status"] == "failed" and r["severity"] == "mandatory":
            for v in r["violations"]:
                error_line(
                    f"{stack}: policy {r['rule']} ({r['severity']}): {v['path']}: {v['message']} (got {v['value']})"
                )


def reject(source: str, lines: list[str]) -> typer.Exit:
    """Print one line per problem (the first says where) and return the exit to raise."""
    if len(lines) == 1:
        error_line(f"{source}: {lines[0]}")
    else:
        error_line(f"{source}: {len(lines)} problems")
        for line in lines:
            err.print(plain(f"  - {line}"), soft_wrap=True)
    return typer.Exit(EXIT_REJECTED)


def stack_file(stack: str, folder: Path | None) -> Path:
    """The stack's file (which may not exist); a `Pulumi.<stack>.yaml` that is no file (a folder) exits 1."""
    from fjord.spec.load import stack_path, stacks_dir

    try:
        return stack_path(stack, stacks_dir(folder))
    except SiteError as exc:
        raise reject(exc.source, exc.lines()) from None


def stack_names(folder: Path) -> list[str]:
    """The stacks in a stacks folder (files only); rejects a folder that does not exist."""
    from fjord.spec.load import list_stacks

    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "no such folder"
        raise reject(str(folder), [f"--stacks-dir: {what}; allowed: a folder of Pulumi.<stack>.yaml files"])
    return list_stacks(folder)


def load_stack(stack: str, folder: Path | None) -> tuple[Site, SiteSize, str]:
    """The stack's site, validated and sized, and where it came from; a rejected stack exits 1.

    Racks and addresses come from the stack's allocation record where it has one, extended for what the spec
    adds (what `fjord alloc` would write); a change that would move a recorded node is rejected."""
    from fjord.sizing.alloc import read as read_alloc
    from fjord.sizing.site import validate_site
    from fjord.spec.load import read_stack, stacks_dir

    source = f"stack {stack}"
    try:
        cfg = read_stack(stack, folder)
        source = str(cfg.path) if cfg.path else f"{stack} (embedded default site)"
        record = read_alloc(stack, stacks_dir(folder))
        site, size = validate_site(cfg.site, source, record)
        return site, size, source
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None


def check_stack_hosts(stack: str, folder: Path | None, site: Site, size: SiteSize) -> None:
    """How `fjord up` reaches the hosts and which roles it runs (`fjord:hostVars`, `fjord:hostTags`), checked as
    the program and HostConfig check them; a rejected stack exits 1. `fjord validate` and the engine commands
    run it, so that a stack file `fjord up` would refuse never validates."""
    from fjord.hosts.stack_config import stack_host_tags, stack_host_vars
    from fjord.spec.errors import Problem
    from fjord.spec.load import HOST_TAGS_KEY, HOST_VARS_KEY, read_stack, stacks_dir

    source = f"stack {stack}"
    try:
        cfg = read_stack(stack, folder)
        source = str(cfg.path) if cfg.path else f"{stack} (embedded default site)"
        stack_host_vars(cfg.config.get(HOST_VARS_KEY), site, size, stacks_dir(folder))
        tags = stack_host_tags(cfg.config.get(HOST_TAGS_KEY))
        problems = []
        if tags:
            # Only where tags are set: the playbooks' tags are read by the provider module (it loads Pulumi).
            from fjord.providers.playbook import check_tags

            problems = check_tags(list(tags))
        if problems:
            raise SiteError([Problem(f"{HOST_TAGS_KEY}{k.removeprefix('tags')}", v, m) for k, v, m in problems])
    except SiteError as exc:
        raise reject(exc.source or source, exc.lines()) from None


def stack_policy(
    stack: str, folder: Path | None, site: Site, size: SiteSize, policy_config: Path | None
) -> dict[str, Any]:
    """fjord's policy rules over a validated stack, as `fjord plan`'s worker runs them: the settings in
    `policy_config`, else the repository's policy/config.yaml beside the stacks folder, else the defaults.
    A bad settings file exits 1."""
    from fjord.policy import evaluate, load_settings, policy_input
    from fjord.policy.rules import default_settings_path
    from fjord.spec.load import read_stack, stacks_dir

    try:
        settings = load_settings(policy_config or default_settings_path(stacks_dir(folder)))
        cfg = read_stack(stack, folder)
    except SiteError as exc:
        raise reject(exc.source, exc.lines()) from None
    return evaluate(policy_input(stack, site, size, cfg, settings=settings)).as_dict()


def split_list(values: list[str] | None) -> list[str]:
    """A repeatable option's values, each of which may be comma-separated: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]
