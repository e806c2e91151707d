"""`fjord gitops ...`: what the pipelines in `.github/workflows/` and `ci/gitlab/` call (docs/gitops.md).

- `changed-stacks --base REF`: the stacks a change touches (shared files touch all), core stacks first;
- `check STACK --base REF`: validate, diff against the base and policy: the pipeline's gate;
- `comment STACK --base REF`: the stack's pull-request comment as Markdown (validate, diff, preview, policy);
- `publish STACK --body FILE`: put that comment on the pull request, editing the stack's comment in place.

The logic is pure (fjord.gitops, fjord.policy); git and the forges are reached through fjord.adapters.
- `state STACK`: locks and pending operations on the stack's Pulumi state, each explained (never writes);
- `record STACK` / `drift STACK --record FILE`: without the engine, what an apply was asked to make, and the
  scheduled drift check against it.

Exit codes: 0 ok; 1 rejected input (the site at the head, a ref git does not know, a forge call that failed);
2 usage; 3 the stack needs a person (`state`: a lock or a pending operation; `drift`: drift found);
6 a mandatory policy rule failed (`check`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fjord.cli.common import (
    EXIT_DRIFT,
    EXIT_POLICY,
    EXIT_REJECTED,
    JsonFlag,
    PolicyConfig,
    StackArg,
    StacksDir,
    error_line,
    out,
    plain,
    policy_errors,
    policy_table,
    reject,
    write_json,
)
from fjord.spec.errors import SiteError

EXIT_ATTENTION = 3
"""`state`: the stack needs a person (as `fjord bmc`'s failed nodes do): a lock, a pending operation. Drift is 5."""

if TYPE_CHECKING:
    from fjord.gitops.comment import StackReview
    from fjord.gitops.stacks import ChangedStacks
    from fjord.policy import PolicyReport

app = typer.Typer(
    help="GitOps: changed stacks, the pull-request gate and comment (docs/gitops.md).", no_args_is_help=True
)

Base = Annotated[str, typer.Option("--base", help="The git ref the change is compared with (e.g. origin/main).")]
Repo = Annotated[
    Path | None, typer.Option("--repo", help="The repository (default: the one the current folder is in).")
]


def _repo(repo: Path | None) -> Path:
    from fjord.adapters.git import GitError, root

    try:
        return root(repo or Path.cwd())
    except GitError as exc:
        raise reject(str(repo or Path.cwd()), [str(exc)]) from None


def _stacks_rel(repo: Path, stacks_dir_: Path | None) -> tuple[Path, str]:
    """The stacks folder, and its path inside the repository (as git names it)."""
    folder = (stacks_dir_ or repo / "stacks").resolve()
    try:
        return folder, folder.relative_to(repo.resolve()).as_posix()
    except ValueError:
        raise reject(str(folder), ["--stacks-dir: not inside the repository; allowed: a folder of it"]) from None


@app.command("changed-stacks")
def changed_stacks_cmd(
    base: Annotated[
        str | None, typer.Option("--base", help="The git ref the change is compared with (e.g. origin/main).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every stack, as if all were touched (the drift check).")
    ] = False,
    head: Annotated[
        str | None, typer.Option("--head", help="The ref of the change (default: the work tree, as checked out).")
    ] = None,
    repo: Repo = None,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
    github_output: Annotated[
        Path | None,
        typer.Option(
            "--github-output",
            help="Also append `stacks`, `core`, `rest` (JSON lists) and `any` to this file ($GITHUB_OUTPUT).",
        ),
    ] = None,
) -> None:
    """The stacks a change touches, core stacks first; shared files (components/, playbooks/, policy/,
    pyproject.toml, Pulumi.yaml) touch every stack."""
    result = _changed(base, every, head, repo, stacks_dir_)
    doc = result.as_dict()
    if github_output is not None:
        with github_output.open("a", encoding="utf-8") as f:
            for key in ("stacks", "core", "rest", "removed"):
                f.write(f"{key}={json.dumps(doc[key])}\n")
            f.write(f"any={'true' if result.stacks else 'false'}\n")
    if as_json:
        write_json(doc)
        return
    for stack in result.stacks:
        out.print(plain(stack))
    for stack in result.removed:
        error_line(f"stack {stack}: its file is deleted; a pipeline never destroys a stack (`fjord destroy` does)")


def _changed(
    base: str | None, every: bool, head: str | None, repo: Path | None, stacks_dir_: Path | None
) -> ChangedStacks:
    from fjord.adapters.git import GitError, changed_files, files_at
    from fjord.gitops.stacks import ChangedStacks, FileChange, changed_stacks, stack_of

    if (base is None) == (not every):
        raise reject("gitops", ["give --base <ref> or --all; allowed: exactly one of them"])
    root = _repo(repo)
    folder, rel = _stacks_rel(root, stacks_dir_)
    try:
        names = files_at(root, head, rel) if head else [f"{rel}/{p.name}" for p in folder.glob("Pulumi.*.yaml")]
        files = changed_files(root, base, head) if base is not None else []
    except GitError as exc:
        raise reject(str(root), [str(exc)]) from None
    after = {s for s in (stack_of(p, rel) for p in names) if s}
    if every:
        return changed_stacks([FileChange("M", "Pulumi.yaml")], after, rel)
    return ChangedStacks(()) if not files else changed_stacks(files, after, rel)


@app.command("gitlab-pipeline")
def gitlab_pipeline(
    mode: Annotated[str, typer.Argument(help="review (merge request), apply (after a merge) or drift (scheduled).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the child pipeline (YAML).")],
    base: Annotated[
        str | None, typer.Option("--base", help="The git ref the change is compared with (review, apply).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every stack (drift).")] = False,
    repo: Repo = None,
    stacks_dir_: StacksDir = None,
) -> None:
    """GitLab CI's child pipeline: one job per stack the change touches (every stack with --all); apply and drift
    jobs hold the resource group `fjord-stack-<stack>`, core stacks apply first."""
    import yaml

    from fjord.gitops.gitlab import child_pipeline

    if mode not in ("review", "apply", "drift"):
        raise typer.BadParameter(f"{mode!r}; allowed: review, apply, drift", param_hint="MODE")
    result = _changed(base, every, None, repo, stacks_dir_)
    doc = child_pipeline(mode, result.stacks, base or "HEAD")  # type: ignore[arg-type]
    out_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    out.print(plain(f"{mode}: {len(result.stacks)} stacks ({', '.join(result.stacks) or 'none'}) in {out_file}"))


DiffFile = Annotated[
    Path | None,
    typer.Option(
        "--diff",
        help="`fjord diff <stack> --base REF --json` output (default: the same diff, computed here).",
    ),
]


def review(
    stack: str,
    base: str,
    repo: Path | None,
    stacks_dir_: Path | None,
    policy_config: Path | None,
    diff_file: Path | None = None,
) -> tuple[StackReview, PolicyReport | None]:
    """Validate the stack at the head (the work tree), diff it against `base` (`fjord diff`'s logic, or its
    `--json` output in `diff_file`), run the policy: the gate's data."""
    from fjord.adapters.git import GitError, resolve, short
    from fjord.change.diff import diff_sites, to_json
    from fjord.cli.change import _at_ref, _side
    from fjord.gitops.comment import StackReview
    from fjord.gitops.diffs import change_from_diff
    from fjord.policy import evaluate, load_settings, policy_input
    from fjord.policy.rules import default_settings_path
    from fjord.sizing.alloc import alloc_path
    from fjord.sizing.alloc import read as read_alloc
    from fjord.sizing.site import validate_site
    from fjord.spec.load import DEFAULT_STACK, read_stack

    root = _repo(repo)
    folder, _rel = _stacks_rel(root, stacks_dir_)
    try:
        base_ref = f"{base} ({short(root, resolve(root, base))})"
        head_ref = f"HEAD ({short(root, 'HEAD')})"
    except GitError as exc:
        raise reject(str(root), [str(exc)]) from None
    try:
        settings = load_settings(policy_config or default_settings_path(folder))
    except SiteError as exc:
        raise reject(exc.source, exc.lines()) from None
    try:
        cfg = read_stack(stack, folder)
        source = str(cfg.path or f"{stack} (embedded default site)")
        site, size = validate_site(cfg.site, source, read_alloc(stack, folder))
    except SiteError as exc:
        lines = [f"{exc.source}: {line}" if exc.source else line for line in exc.lines()]
        return StackReview(stack, base_ref, head_ref, lines, valid=False), None
    summary = (
        f"site {site.name} ({site.country}, {site.jurisdiction}), {len(site.clusters)} clusters,"
        f" {size.gpus:,} GPUs, {size.nodes:,} nodes, {size.power.facility_kw / 1000:,.2f} of"
        f" {site.power.grid_budget_mw:g} MW"
    )
    diff = _read_json(diff_file, "--diff")
    if diff is None:
        path, record = folder / f"Pulumi.{stack}.yaml", alloc_path(stack, folder)
        embedded = stack == DEFAULT_STACK
        try:
            old = _side(stack, _at_ref(base, path), _at_ref(base, record), f"{base}:{path.name}", embedded)
            new_alloc = record.read_text(encoding="utf-8") if record.is_file() else None
            new_text = path.read_text(encoding="utf-8") if path.is_file() else None
            new = _side(stack, new_text, new_alloc, str(path), embedded)
            diff = to_json(diff_sites(stack, old, new))
        except SiteError as exc:
            summary += f"; no diff: the base does not validate ({exc.lines()[0]})"
    change = change_from_diff(diff) if diff is not None else None
    report = evaluate(policy_input(stack, site, size, cfg, change=change, settings=settings))
    return StackReview(stack, base_ref, head_ref, [summary], True, diff=diff, policy=report.as_dict()), report


@app.command()
def check(
    stack: StackArg,
    base: Base,
    repo: Repo = None,
    stacks_dir_: StacksDir = None,
    policy_config: PolicyConfig = None,
    diff: DiffFile = None,
    as_json: JsonFlag = False,
) -> None:
    """The pull request's gate for one stack: validate, diff against the base, policy. Exit 6 when a mandatory
    policy rule fails (a node that would move fails blast-radius), 1 when the site or the diff is rejected (e.g.
    an allocation record that is not current)."""
    r, report = review(stack, base, repo, stacks_dir_, policy_config, diff)
    if as_json:
        write_json(
            {
                "stack": stack,
                "valid": r.valid,
                "validate": list(r.validate),
                "diff": r.diff,
                "policy": r.policy,
                "blocked": r.blocked,
            }
        )
    if not r.valid:
        raise reject(f"stack {stack}", list(r.validate))
    assert report is not None
    if not as_json:
        out.print(plain(f"{stack}: {r.validate[0]}"))
        if r.diff is not None:
            t = r.diff["totals"]
            out.print(
                plain(
                    f"{stack}: diff {r.diff['verdict']}: {t['added']:,} added, {t['removed']:,} removed,"
                    f" {t['restarted']:,} restarted, {t['moved']:,} moved"
                )
            )
        out.print(policy_table(stack, report.as_dict()))
    if not report.passed:
        policy_errors(stack, report.as_dict())
        raise typer.Exit(EXIT_POLICY)
    if r.diff is not None and r.diff.get("verdict") == "rejected":
        raise reject(f"stack {stack}", [f"diff: {p}" for p in r.diff.get("problems", [])] or ["diff: rejected"])


def _read_json(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise reject(
            str(path), [f"{what}: not a readable JSON file ({exc}); allowed: the command's --json output"]
        ) from None


def _plan_entry(doc: Any, stack: str) -> dict[str, Any] | None:
    """A stack's entry in `fjord plan --json` output (or an entry itself)."""
    if not isinstance(doc, dict):
        return None
    if "plans" in doc:
        return next((p for p in doc["plans"] if p.get("stack") == stack), None)
    return doc


@app.command()
def comment(
    stack: StackArg,
    base: Base,
    repo: Repo = None,
    stacks_dir_: StacksDir = None,
    policy_config: PolicyConfig = None,
    diff: DiffFile = None,
    preview: Annotated[
        Path | None, typer.Option("--preview", help="The engine's `fjord preview <stack> --json` output.")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="`fjord plan <stack> --json` output (default: plan the stack offline now)."),
    ] = None,
    base_plan: Annotated[
        Path | None, typer.Option("--base-plan", help="The base's `fjord plan --json`, to show what changes by type.")
    ] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the body here instead of stdout.")] = None,
) -> None:
    """The stack's pull-request comment (Markdown): validate, diff, preview (engine) or offline plan, policy.
    It starts with a hidden marker naming the stack, which `publish` finds to edit the comment in place."""
    from dataclasses import replace

    from fjord.gitops.comment import comment_body
    from fjord.plan.runner import MAX_RESOURCES_PER_STACK, PlanError, plan_stacks

    r, _ = review(stack, base, repo, stacks_dir_, policy_config, diff)
    preview_doc = _read_json(preview, "--preview")
    plan_doc = _plan_entry(_read_json(plan, "--plan"), stack)
    if preview_doc is None and plan_doc is None and r.valid:
        folder, _rel = _stacks_rel(_repo(repo), stacks_dir_)
        try:
            plan_doc = plan_stacks([stack], folder, 1, policy_config=policy_config)[0].data
        except PlanError as exc:
            r = replace(r, validate=[*r.validate, *(f"plan: {line}" for line in exc.lines)])
    r = replace(
        r, preview=preview_doc, plan=plan_doc, base_plan=_plan_entry(_read_json(base_plan, "--base-plan"), stack)
    )
    body = comment_body(r, MAX_RESOURCES_PER_STACK)
    if out_file is not None:
        out_file.write_text(body, encoding="utf-8")
    else:
        typer.echo(body, nl=False)


@app.command()
def publish(
    stack: StackArg,
    body: Annotated[Path, typer.Option("--body", help="The comment's Markdown (`fjord gitops comment --out`).")],
    number: Annotated[
        int | None, typer.Option("--number", help="Pull/merge request number (default: from the CI job).")
    ] = None,
) -> None:
    """Put the stack's comment on the pull request (GitHub) or merge request (GitLab): the comment that carries
    the stack's marker is edited in place, or added when there is none; an unchanged body is left alone."""
    from fjord.adapters.forge import ForgeError, from_environment
    from fjord.gitops.comment import marker

    try:
        text = body.read_text(encoding="utf-8")
    except OSError as exc:
        raise reject(
            str(body), [f"--body: {exc.strerror}; allowed: a file written by `fjord gitops comment`"]
        ) from None
    if not text.lstrip().startswith(marker(stack)):
        raise reject(
            str(body), [f"--body: no marker for stack {stack}; allowed: `fjord gitops comment {stack}` output"]
        )
    try:
        forge = from_environment(number=number)
        what = forge.upsert(stack, text)
    except ForgeError as exc:
        error_line(str(exc))
        raise typer.Exit(EXIT_REJECTED) from None
    out.print(plain(f"{stack}: comment {what} on {forge.kind} {forge.project}#{forge.number}"))


@app.command()
def state(
    stack: StackArg,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", envvar="PULUMI_BACKEND_URL", help="The state backend: file://<folder> or s3://<bucket>?..."
        ),
    ],
    project: Annotated[str, typer.Option("--project", help="The Pulumi project name (Pulumi.yaml).")] = "fjord",
    stale_after_min: Annotated[
        int, typer.Option("--stale-after", min=1, help="Minutes after which a lock counts as left behind.")
    ] = 120,
    as_json: JsonFlag = False,
) -> None:
    """Locks and pending operations on the stack's state, each with what to do; reads only. Exit 3 when any."""
    import datetime as dt

    from fjord.adapters.state_backend import BackendError, read_state
    from fjord.gitops.state import explain_state

    try:
        locks, checkpoint = read_state(backend, project, stack)
    except BackendError as exc:
        raise reject(f"stack {stack}", [str(exc)]) from None
    found = explain_state(stack, locks, checkpoint, dt.datetime.now(dt.UTC), dt.timedelta(minutes=stale_after_min))
    if as_json:
        write_json({"stack": stack, "findings": [{"kind": f.kind, "what": f.what, "fix": f.fix} for f in found]})
    elif not found:
        out.print(plain(f"{stack}: no locks, no pending operations"))
    for f in found:
        error_line(f.line())
    if found:
        raise typer.Exit(EXIT_ATTENTION)


def _current_record(stack: str, stacks_dir_: Path | None, plan_file: Path | None, repo: Path | None) -> dict[str, Any]:
    from fjord.adapters.git import GitError, resolve
    from fjord.gitops.drift import applied_record, spec_digest
    from fjord.plan.runner import PlanError, plan_stacks
    from fjord.spec.load import read_stack

    root = _repo(repo)
    folder, _rel = _stacks_rel(root, stacks_dir_)
    try:
        cfg = read_stack(stack, folder)
        commit = resolve(root, "HEAD")
    except SiteError as exc:
        raise reject(exc.source or f"stack {stack}", exc.lines()) from None
    except GitError as exc:
        raise reject(str(root), [str(exc)]) from None
    plan_doc = _plan_entry(_read_json(plan_file, "--plan"), stack)
    if plan_doc is None:
        try:
            plan_doc = plan_stacks([stack], folder, 1)[0].data
        except PlanError as exc:
            raise reject(exc.source, exc.lines) from None
    return applied_record(stack, commit, spec_digest(cfg.site, cfg.config), plan_doc)


PlanFile = Annotated[
    Path | None, typer.Option("--plan", help="`fjord plan <stack> --json` output (default: plan the stack now).")
]


@app.command()
def record(
    stack: StackArg,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the record (JSON).")],
    repo: Repo = None,
    stacks_dir_: StacksDir = None,
    plan: PlanFile = None,
) -> None:
    """The offline apply's record: the stack's spec (digested) and its plan by type at this commit, for `drift`."""
    doc = _current_record(stack, stacks_dir_, plan, repo)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    out.print(plain(f"{stack}: recorded {doc['resources']:,} resources at {doc['commit'][:12]} in {out_file}"))


@app.command()
def drift(
    stack: StackArg,
    record_file: Annotated[
        Path | None, typer.Option("--record", help="The last apply's record (`fjord gitops record`).")
    ] = None,
    preview: Annotated[
        Path | None,
        typer.Option("--preview", help="Instead: the engine's `fjord preview --json` of the stack, expected empty."),
    ] = None,
    repo: Repo = None,
    stacks_dir_: StacksDir = None,
    plan: PlanFile = None,
    as_json: JsonFlag = False,
) -> None:
    """The drift check: the stack now against the last apply's record (offline), or an engine preview that must
    change nothing; reports, writes nothing. Exit 5 on drift."""
    from fjord.gitops.drift import drift as drift_of
    from fjord.gitops.drift import preview_drift

    if (record_file is None) == (preview is None):
        raise reject(f"stack {stack}", ["give --record or --preview; allowed: exactly one of them"])
    if preview is not None:
        doc = _read_json(preview, "--preview")
        if not isinstance(doc, dict):
            raise reject(str(preview), ["--preview: allowed: `fjord preview <stack> --json` output"])
        found, since = preview_drift(doc), "the state"
    else:
        applied = _read_json(record_file, "--record")
        if not isinstance(applied, dict):
            raise reject(str(record_file), ["--record: allowed: a record written by `fjord gitops record`"])
        found = drift_of(applied, _current_record(stack, stacks_dir_, plan, repo))
        since = f"the apply at {str(applied.get('commit', '?'))[:12]}"
    if as_json:
        write_json({"stack": stack, "clean": not found, "drift": found})
    elif not found:
        out.print(plain(f"{stack}: no drift from {since}"))
    for line in found:
        error_line(f"{stack}: drift: {line}")
    if found:
        raise typer.Exit(EXIT_DRIFT)
