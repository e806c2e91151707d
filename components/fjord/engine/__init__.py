"""Run fjord's Pulumi program through the real Pulumi engine (Automation API): preview, up, refresh, destroy.

The program runs in this process as an inline Automation API program (`fjord.program.main`), in a
LocalWorkspace on the project folder (the folder of `Pulumi.yaml`, whose `stackConfigDir` holds the stacks).
The engine itself is the `pulumi` CLI of the release that matches the `pulumi` Python SDK, found on PATH or
in the cache `.ci/setup-pulumi.sh` builds it into (docs/engine.md). Running the program inline means the
engine needs no Python language host; the dynamic providers run in `pulumi-resource-pulumi-python`, the
shim that sits beside the CLI and starts this Python with `-m pulumi.dynamic`. A Python policy pack
(`policy_packs`) runs in the language host where one is installed, else in Pulumi's policy shim
`pulumi-analyzer-policy-python` beside the CLI, which starts this Python with `-m pulumi.policy`.

State: the backend URL given (`file://...`, `s3://...`) or $PULUMI_BACKEND_URL. Secrets: Pulumi's passphrase
provider ($PULUMI_CONFIG_PASSPHRASE or $PULUMI_CONFIG_PASSPHRASE_FILE).

Nothing here prints: `run` reports the engine's events to a callback and returns an `EngineRun`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pulumi.automation import EngineEvent, Stack
    from pulumi.automation.events import StepEventStateMetadata

Operation = Literal["preview", "up", "refresh", "destroy"]
OPERATIONS: tuple[Operation, ...] = ("preview", "up", "refresh", "destroy")
CACHE = Path(os.environ.get("FJORD_PULUMI_CACHE", "/var/cache/fjord-pulumi"))
"""Where .ci/setup-pulumi.sh builds the CLI: <cache>/<version>/bin/pulumi."""
PROJECT = "fjord"
PROVIDER_TYPES = "pulumi:providers:"
PROVIDER_SHIM = "pulumi-resource-pulumi-python"
POLICY_SHIM = "pulumi-analyzer-policy-python"
LANGUAGE_HOST = "pulumi-language-python"
# Operations that count as a change in the summary (refresh reports drift as 'update' or 'delete').
KEPT_OUTPUTS = ("state", "failed", "converged", "failed_hosts", "unreachable_hosts", "drifted_hosts")
"""The outputs a step keeps (`ResourceStep.outputs`): what a resource recorded per node or host."""
CHANGE_OPS = ("create", "update", "replace", "delete", "create-replacement", "delete-replaced", "import")


_COLOUR = re.compile(r"<\{%[^%]*%\}>")
"""Pulumi's colour markup (`<{%reset%}>`, `<{%fg 3%}>`), left in the messages of events sent with raw colour."""

PENDING_HINT = (
    "an earlier run was interrupted with operations in flight; check the resources named above on the BMCs or"
    " hosts, then run `fjord refresh {stack} --clear-pending-creates` and `fjord up {stack}` (docs/engine.md)"
)

PROTECTED_HINT = (
    "fjord protects clusters: list the cluster in the stack's fjord:allowRemove, run `fjord up {stack}` (which"
    " lifts the protection), then run this again (docs/safe-change.md)"
)


class EngineUnavailable(RuntimeError):
    """The Pulumi CLI (or its dynamic-provider shim) of the SDK's version is not installed."""


class PolicyPackUnavailable(EngineUnavailable):
    """The engine cannot run a Python policy pack here: neither Pulumi's Python language host nor its policy shim
    is installed, or the pack's own dependency (pulumi-policy) is missing."""


class EngineSetupError(RuntimeError):
    """The run cannot start: no backend, no passphrase, no project folder. The message says how to fix it."""


def sdk_version() -> str:
    return dist_version("pulumi")


def engine_bin(env: Mapping[str, str] | None = None) -> Path:
    """The folder holding `pulumi` (and the provider shim) of the SDK's release: $FJORD_PULUMI_BIN, the
    cache of .ci/setup-pulumi.sh, or PATH (a CLI of another version is refused: it must match the SDK)."""
    env = os.environ if env is None else env
    want = sdk_version()
    candidates = []
    if env.get("FJORD_PULUMI_BIN"):
        candidates.append(Path(env["FJORD_PULUMI_BIN"]))
    candidates.append(Path(env.get("FJORD_PULUMI_CACHE") or CACHE) / want / "bin")
    on_path = shutil.which("pulumi", path=env.get("PATH"))
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "pulumi").is_file() and (folder / PROVIDER_SHIM).is_file():
            return folder
    raise EngineUnavailable(
        f"no Pulumi CLI v{want} (the version of the pulumi Python SDK) with {PROVIDER_SHIM} beside it in "
        + ", ".join(str(c) for c in candidates)
        + "; build it with `.ci/setup-pulumi.sh` (docs/engine.md)"
    )


def policy_runner(bin_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """What lets the engine run a Python policy pack: Pulumi's Python language host (which runs it through
    RunPlugin), else the policy shim `pulumi-analyzer-policy-python` (the engine's fallback when it finds no
    language host: pkg/resource/plugin/analyzer_plugin.go, NewPolicyAnalyzer), beside the CLI or on PATH.
    Raises PolicyPackUnavailable, saying why, when there is neither or pulumi-policy is not installed."""
    import importlib.util

    env = os.environ if env is None else env
    search = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    found = shutil.which(LANGUAGE_HOST, path=search) or shutil.which(POLICY_SHIM, path=search)
    if found is None:
        raise PolicyPackUnavailable(
            f"cannot run a Python policy pack: neither {LANGUAGE_HOST} (Pulumi's Python language host) nor"
            f" {POLICY_SHIM} (Pulumi's policy shim) is in {bin_dir} or on PATH; `.ci/setup-pulumi.sh` installs the"
            " shim beside the CLI (docs/policy.md)"
        )
    if importlib.util.find_spec("pulumi_policy") is None:
        raise PolicyPackUnavailable(
            f"cannot run a Python policy pack: pulumi-policy is not installed in {sys.prefix}; install fjord with"
            " its 'policy' extra (pip install 'fjord[policy]'; `make install` has it)"
        )
    return Path(found)


@dataclass
class PolicyViolation:
    """One violation a policy pack reported through the engine."""

    pack: str
    policy: str
    level: str
    """The enforcement level: 'advisory' or 'mandatory' ('remediate' for remediations)."""
    message: str
    """The violation (the field path, the value, what is allowed)."""
    urn: str | None = None
    description: str = ""
    """The policy's description, which the engine sends before each violation."""

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"


@dataclass
class ResourceStep:
    """One resource's step as the engine reported it."""

    urn: str
    type: str
    op: str
    diffs: list[str] = field(default_factory=list)
    """Top-level properties that differ (update/replace), as the provider's diff reported them."""
    replaces: list[str] = field(default_factory=list)
    """The properties that force a replacement."""
    done: bool = False
    failed: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    """The resource's per-node record outputs after the step (KEPT_OUTPUTS: NodePool's `state`, `failed`,
    `converged`; HostConfig's failed/unreachable/drifted hosts), as the engine reported them."""

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass
class EngineRun:
    """What one operation did (or, for preview, would do)."""

    stack: str
    operation: Operation
    ok: bool = False
    seconds: float = 0.0
    steps: dict[str, ResourceStep] = field(default_factory=dict)
    """urn -> step, in the order the engine reported them."""
    errors: list[str] = field(default_factory=list)
    """The engine's error diagnostics (each names its resource) and the run's own failure."""
    warnings: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    """The engine's summary: op -> count (`same` included)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """The stack's non-secret outputs after up/refresh (secret ones are left out)."""
    left_behind: list[str] = field(default_factory=list)
    """Nodes and hosts a resource recorded as failed, unreachable or drifted (`resource: node: why`): the
    operation finished and the state holds every other node's result; the next `up` retries exactly these."""
    policy: list[PolicyViolation] = field(default_factory=list)
    """What the policy packs reported (`policy_packs`), in the order the engine reported it."""
    preview_only: bool = False
    """A refresh that only previewed: what the BMCs and hosts have against the state, nothing written."""

    def policy_failed(self) -> list[str]:
        """The policies with a mandatory violation (each once, in order)."""
        return list(dict.fromkeys(v.policy for v in self.policy if v.mandatory))

    def changed(self) -> list[ResourceStep]:
        """The steps that change a resource. Default providers are left out, as Pulumi's own display does: the
        dynamic providers' default provider takes the whole stack config as its inputs, so any config change
        'updates' it, which changes nothing anywhere."""
        return [
            s
            for s in self.steps.values()
            if (s.op in CHANGE_OPS or (s.op == "refresh" and s.diffs)) and not s.type.startswith(PROVIDER_TYPES)
        ]

    def by_type(self) -> dict[str, dict[str, int]]:
        """type -> op -> count over the steps that change something."""
        table: dict[str, dict[str, int]] = {}
        for s in self.changed():
            row = table.setdefault(s.type, {})
            row[s.op] = row.get(s.op, 0) + 1
        return table

    def as_dict(self) -> dict[str, Any]:
        changed = {s.urn for s in self.changed()}
        return {
            "stack": self.stack,
            "operation": self.operation,
            "preview_only": self.preview_only,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "changes": {k: v for k, v in self.changes.items() if v},
            "by_type": self.by_type(),
            "steps": [
                {"urn": s.urn, "type": s.type, "op": s.op, "diffs": s.diffs, "replaces": s.replaces, "failed": s.failed}
                for s in self.steps.values()
                if s.urn in changed or s.failed
            ],
            "errors": self.errors,
            "left_behind": self.left_behind,
            "warnings": self.warnings,
            "policy": [
                {"pack": v.pack, "policy": v.policy, "level": v.level, "message": v.message, "urn": v.urn}
                for v in self.policy
            ],
            "policy_failed": self.policy_failed(),
            "outputs": self.outputs,
        }


OnStep = Callable[[ResourceStep, EngineRun], None]


def _engine_env(bin_dir: Path, backend: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        # The shim beside the CLI, then this interpreter's folder: the dynamic providers run in this venv.
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PULUMI_BACKEND_URL": backend,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # The provider shim runs `<virtualenv>/bin/python -m pulumi.dynamic`: this interpreter's environment.
        "PULUMI_RUNTIME_VIRTUALENV": sys.prefix,
        "PULUMI_PYTHON_CMD": sys.executable,
        # The providers fork (HostConfig runs ansible-playbook through a pty). gRPC's post-fork handler starts a
        # polling thread in the child before it execs, which now and then segfaults there (grpc/grpc#13873,
        # #43055): the playbook then dies without a line of output. The providers never use gRPC in a child.
        "GRPC_ENABLE_FORK_SUPPORT": "false",
    }
    env.update(extra or {})
    return env


def open_stack(
    stack: str,
    project_dir: Path,
    backend: str,
    env: Mapping[str, str] | None = None,
    create: bool = True,
    stacks: Path | None = None,
    program: Callable[[], None] | None = None,
) -> Stack:
    """The stack in a LocalWorkspace on `project_dir`, created (passphrase secrets) when `create` and absent.
    `program`: the inline program (default: fjord's whole program on the stacks folder)."""
    from pulumi import automation as auto

    from fjord.program import main

    if not (project_dir / "Pulumi.yaml").is_file():
        raise EngineSetupError(
            f"{project_dir}: no Pulumi.yaml here; run fjord from the project folder or pass --project"
        )
    environ = {**os.environ, **(env or {})}
    if not (environ.get("PULUMI_CONFIG_PASSPHRASE") or environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise EngineSetupError(
            "no secrets passphrase: set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE); fjord stacks use"
            " Pulumi's passphrase secrets provider"
        )
    bin_dir = engine_bin(environ)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(project_dir),
        pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent)),
        env_vars=_engine_env(bin_dir, backend, env),
        secrets_provider="passphrase",
    )

    def run_program() -> None:
        main(stacks)  # the stack files and allocation records: the same folder fjord read

    inline = program or run_program
    if create:
        return auto.create_or_select_stack(stack, project_name=PROJECT, program=inline, opts=opts)
    return auto.select_stack(stack, project_name=PROJECT, program=inline, opts=opts)


def _changed(old: StepEventStateMetadata | None, new: StepEventStateMetadata | None, what: str) -> list[str]:
    """The top-level properties that differ between two states of a resource. A dynamic provider's diff says
    only whether something changed, so the keys are computed here (as the engine does for providers that
    leave the diff to it); `__provider` (the pickled provider code) is left out."""
    if old is None or new is None:
        return []
    a: Mapping[str, Any] = getattr(old, what) or {}
    b: Mapping[str, Any] = getattr(new, what) or {}
    return sorted(k for k in set(a) | set(b) if k != "__provider" and _known(a.get(k)) != _known(b.get(k)))


def _known(value: Any) -> Any:
    """`value` without null entries at any depth: the engine drops nulls from nested outputs it hands back to a
    provider (a refresh's `read` gets the record without them), so a null and an absent key are the same here."""
    if isinstance(value, Mapping):
        return {k: _known(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_known(v) for v in value]
    return value


def left_behind(resource: str, outputs: Mapping[str, Any]) -> list[str]:
    """What a NodePool (`failed`: node -> error), a HostConfig (`failed_hosts`, `unreachable_hosts`,
    `drifted_hosts`) or a ClusterRollout (those, `stopped` and `rollout_pending`) recorded as not done, one
    `resource: node: why` line each."""
    lines: list[str] = []
    failed = outputs.get("failed")
    if isinstance(failed, Mapping):
        lines += [f"{resource}: {node}: {why}" for node, why in failed.items()]
    for key, why in (("failed_hosts", "failed"), ("unreachable_hosts", "unreachable"), ("drifted_hosts", "drifted")):
        hosts = outputs.get(key)
        if isinstance(hosts, list):
            lines += [f"{resource}: {host}: {why}" for host in hosts]
    # A ClusterRollout: why it stopped, and the hosts it never reached (still on the old versions, not drained).
    if isinstance(outputs.get("stopped"), str) and outputs["stopped"]:
        lines.append(f"{resource}: rollout stopped: {outputs['stopped']}")
    pending = outputs.get("rollout_pending")
    if isinstance(pending, list):
        bad = {h for k in ("failed_hosts", "unreachable_hosts") for h in outputs.get(k) or []}
        lines += [
            f"{resource}: {host}: not rolled yet (the rollout stopped before it)" for host in pending if host not in bad
        ]
    return lines


class _Collector:
    """Turns the engine's event stream into an EngineRun, calling `on_step` as resources start and finish."""

    def __init__(self, result: EngineRun, on_step: OnStep | None) -> None:
        self.result = result
        self.on_step = on_step

    def __call__(self, event: EngineEvent) -> None:
        r = self.result
        if event.resource_pre_event is not None:
            m = event.resource_pre_event.metadata
            step = ResourceStep(m.urn, m.type, str(m.op.value if hasattr(m.op, "value") else m.op))
            step.diffs = list(m.diffs or []) or _changed(m.old, m.new, "inputs")
            step.replaces = [k for k, d in (m.detailed_diff or {}).items() if "replace" in str(d.diff_kind)]
            if step.op in ("replace", "create-replacement", "delete-replaced") and not step.replaces:
                step.replaces = list(m.keys or [])
            r.steps[m.urn] = step
            self._notify(step)
        elif event.res_outputs_event is not None:
            m = event.res_outputs_event.metadata
            step = r.steps.setdefault(m.urn, ResourceStep(m.urn, m.type, str(getattr(m.op, "value", m.op))))
            if not step.diffs:
                step.diffs = list(m.diffs or []) or _changed(
                    m.old, m.new, "outputs" if step.op == "refresh" else "inputs"
                )
            step.done = True
            if m.new is not None:
                outs = m.new.outputs or {}
                r.left_behind += left_behind(step.name, outs)
                step.outputs = {k: outs[k] for k in KEPT_OUTPUTS if k in outs}
            self._notify(step)
        elif event.res_op_failed_event is not None:
            m = event.res_op_failed_event.metadata
            step = r.steps.setdefault(m.urn, ResourceStep(m.urn, m.type, str(getattr(m.op, "value", m.op))))
            step.failed = True
            self._notify(step)
        elif event.diagnostic_event is not None:
            d = event.diagnostic_event
            if d.severity in ("error", "warning") and not d.ephemeral:
                where = d.urn.rsplit("::", 1)[-1] if d.urn else ""
                text = " ".join(d.message.split())
                line = f"{where}: {text}" if where else text
                (r.errors if d.severity == "error" else r.warnings).append(line)
        elif event.policy_event is not None:
            p = event.policy_event
            # The engine sends the policy's description, a newline, then the violation, in its colour markup.
            description, _, finding = _COLOUR.sub("", p.message).strip().partition("\n")
            violation = PolicyViolation(
                pack=p.policy_pack_name,
                policy=p.policy_name,
                level="advisory" if p.enforcement_level in ("advisory", "warning") else str(p.enforcement_level),
                message=" ".join((finding or description).split()),
                urn=p.resource_urn or None,
                description=" ".join(description.split()) if finding else "",
            )
            if violation not in r.policy:  # `up` with packs previews first: the same finding is reported twice
                r.policy.append(violation)
        elif event.summary_event is not None:
            r.changes = {str(getattr(k, "value", k)): int(v) for k, v in event.summary_event.resource_changes.items()}

    def _notify(self, step: ResourceStep) -> None:
        if self.on_step is not None:
            self.on_step(step, self.result)


def run(
    operation: Operation,
    stack: str,
    project_dir: Path,
    backend: str,
    env: Mapping[str, str] | None = None,
    on_step: OnStep | None = None,
    parallel: int | None = None,
    clear_pending_creates: bool = False,
    stacks: Path | None = None,
    targets: list[str] | None = None,
    program: Callable[[], None] | None = None,
    policy_packs: Sequence[Path] = (),
    preview_only: bool = False,
) -> EngineRun:
    """Run one operation on `stack` and report what happened; never raises for a failed run (see `ok`).
    `targets`: URNs the operation is limited to (Pulumi's --target; every other resource in the state is left
    as it is); `program`: the inline program (default: fjord's whole program).

    `policy_packs` (preview, up): folders of Pulumi policy packs the engine runs on the stack (`--policy-pack`);
    their violations land in `policy`. `up` with packs previews with them first and stops there, having changed
    nothing, when a mandatory policy fails (the engine itself checks stack policies only once an update is done).
    `preview_only` (refresh): read what the BMCs and hosts have and report it against the state, writing nothing.
    """
    from pulumi.automation import errors as auto_errors

    result = EngineRun(stack, operation, preview_only=preview_only and operation == "refresh")
    collect = _Collector(result, on_step)
    start = time.monotonic()
    packs = [str(Path(p).resolve()) for p in policy_packs] if operation in ("preview", "up") else []
    extra = dict(env or {})
    if packs and stacks is not None:
        extra.setdefault("FJORD_STACKS_DIR", str(stacks))  # the pack reads the same stack files the program read
    try:
        st = open_stack(
            stack, project_dir, backend, extra, create=operation in ("preview", "up"), stacks=stacks, program=program
        )
        common: dict[str, Any] = {"on_event": collect, "color": "never", "on_output": lambda _line: None}
        if parallel is not None:
            common["parallel"] = parallel
        if targets is not None:
            common["target"] = targets
        if packs:
            common["policy_packs"] = packs
        if operation == "preview":
            st.preview(**common)
        elif operation == "up":
            if packs and not _policy_preview(st, result, common, auto_errors.CommandError):
                return result
            res = st.up(**common)
            result.outputs = {k: v.value for k, v in res.outputs.items() if not v.secret}
        elif operation == "refresh" and result.preview_only:
            st.preview_refresh(clear_pending_creates=clear_pending_creates or None, **common)
        elif operation == "refresh":
            st.refresh(clear_pending_creates=clear_pending_creates or None, **common)
            result.outputs = {k: v.value for k, v in st.outputs().items() if not v.secret}
        else:
            st.destroy(**common)
        result.ok = not result.policy_failed()
        if operation == "up" and result.left_behind:
            result.ok = False
            result.errors += [f"not converged (rerun `fjord up` to retry): {line}" for line in result.left_behind]
    except auto_errors.CommandError as exc:
        if not result.errors:
            result.errors.append(_command_error(exc))
        if any("pending operation" in e for e in result.errors + result.warnings):
            result.errors.append(PENDING_HINT.format(stack=stack))
        if any("because it is protected" in e for e in result.errors):
            result.errors.append(PROTECTED_HINT.format(stack=stack))
    finally:
        result.seconds = time.monotonic() - start
    return result


def _policy_preview(st: Stack, result: EngineRun, common: Mapping[str, Any], command_error: type[Exception]) -> bool:
    """`up` with policy packs: a preview with the packs first (what `pulumi up` does unless told to skip it).
    False, with the violations and errors in `result`, when a mandatory policy failed or the preview did: the
    update then never starts."""
    checked = EngineRun(result.stack, "preview")
    try:
        st.preview(**{**common, "on_event": _Collector(checked, None)})
    except command_error as exc:
        if not checked.errors:
            checked.errors.append(_command_error(exc))
    result.policy = checked.policy
    failed = checked.policy_failed()
    if failed or checked.errors:
        result.errors += checked.errors
        why = f"mandatory policy failed: {', '.join(failed)}" if failed else "its preview failed"
        result.errors.append(f"nothing was changed: {why}")
        return False
    return True


def _command_error(exc: Exception) -> str:
    """The CLI's own error line (not its whole output): the lines starting with 'error:'."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")]
    return " ".join(lines) if lines else " ".join(text.split())[:2000]


def pending_operations(stack: str, project_dir: Path, backend: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The URNs of operations a crashed run left pending in the state (empty after a clean run)."""
    st = open_stack(stack, project_dir, backend, env, create=False)
    deployment = st.export_stack().deployment or {}
    return [op.get("resource", {}).get("urn", "?") for op in deployment.get("pending_operations") or []]
