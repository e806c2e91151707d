"""`fjord bootstrap <stack>`: a new site from powered-off BMCs to accepted nodes in service, in named phases.

    state -> bare-metal -> hosts -> scheduler -> acceptance -> handover

The phase DAG, the node lifecycle and the resume rules are `fjord.bootstrap.plan` (pure); the gate's verdict is
`fjord.bootstrap.gate` (pure). This module does each phase's work through the adapters (S3 for the state and the
evidence, Redfish for the BMCs, ansible-runner for the hosts) and persists every phase's and node's state in
the site's artifacts bucket as it goes, so `--resume` continues a stopped run from the failed phase and node.

Exit codes: 0 the run finished with every node in service; 1 rejected input (the stack, a selection, --resume
with nothing to resume, a run left unfinished without --resume; nothing is done); 3 a phase or a node failed
(named on stderr; the state says where to resume), or the object store failed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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

if TYPE_CHECKING:
    from fjord.adapters.ansible import PlaybookResult
    from fjord.adapters.redfish import Credentials, Options, Outcome, RedfishNode
    from fjord.adapters.s3 import ObjectStore
    from fjord.bootstrap.plan import BootstrapState, NodeState, Phase, PhaseStatus
    from fjord.bootstrap.store import StateStore
    from fjord.sizing.site import SiteSize
    from fjord.spec.models import Site, StoreTarget

EXIT_FAILED = 3
"""A phase or a node failed, or the object store did: the state in S3 says what, and --resume continues."""
PASSWORD_ENV = "FJORD_BMC_PASSWORD"
SITE_PLAYBOOK = "site.yml"
ACCEPTANCE_PLAYBOOK = "acceptance.yml"
SERVICE_PLAYBOOK = "enter-service.yml"
KUBE_NODES_PLAYBOOK = "kube-nodes.yml"
"""Reads the Kubernetes API's node objects on the control plane host (phase scheduler; changes nothing)."""
SLURM_PLAYBOOK = "slurm.yml"
"""The Slurm control plane's playbook (the slurm and munge roles, issue 28); site.yml may import it."""
SLURM_RESUME = "slurm-resume.yml"
"""Resumes the Slurm nodes fjord drained (the slurm role's, issue 28): how an accepted Slurm node enters service."""


class PhaseFailed(Exception):
    """A site-wide phase could not do its work; the run stops there."""


@dataclass(frozen=True)
class EngineSettings:
    """The Pulumi engine as bootstrap drives it: the project folder (Pulumi.yaml) and the state backend (the
    site's own state bucket unless --backend or $PULUMI_BACKEND_URL says otherwise)."""

    project: Path | None
    backend: str | None


@dataclass
class Run:
    """One bootstrap run: the site, the clients, the state as it moves, and how to report progress."""

    stack: str
    site: Site
    size: SiteSize
    target: StoreTarget
    store: ObjectStore
    states: StateStore
    state: BootstrapState
    host_vars: dict[str, dict[str, Any]]
    extra_vars: dict[str, Any]
    batch_size: int
    playbooks_dir: Path | None
    on_node: Callable[[str, str], None] = lambda _n, _s: None
    saving: bool = True
    clusters: dict[str, str] = field(default_factory=dict)
    """node -> cluster"""
    engine: EngineSettings | None = None
    """How the phases that create Pulumi-managed resources reach the engine; None: --no-engine."""
    stacks_dir: Path | None = None

    def node(self, name: str) -> NodeState:
        return self.state.nodes[name]

    def set_node(self, name: str, node: NodeState, force: bool = False, notify: bool = True) -> None:
        self.state = replace(self.state, nodes={**self.state.nodes, name: node})
        if notify:
            self.on_node(name, node.status)
        self.save(force)

    def set_phase(self, name: str, status: PhaseStatus, detail: str = "", seconds: float | None = None) -> None:
        from fjord.bootstrap.plan import now

        record = self.state.phases[name]
        if status == "running":
            record = replace(record, status=status, started=now(), finished=None, attempts=record.attempts + 1)
        else:
            record = replace(record, status=status, finished=now(), seconds=seconds, detail=detail)
        self.state = replace(self.state, phases={**self.state.phases, name: record})
        self.save(force=True)

    def save(self, force: bool = False) -> None:
        if self.saving:
            self.states.save(self.state, force)

    def inventory(self, nodes: list[str]) -> dict[str, Any]:
        from fjord.hosts.inventory import build_inventory

        wanted = set(nodes)
        return build_inventory(
            self.site, self.size, nodes, host_vars={h: v for h, v in self.host_vars.items() if h in wanted}
        ).data

    def playbook(self, playbook: str, nodes: list[str], extra: Mapping[str, Any] | None = None) -> PlaybookResult:
        from fjord.adapters.ansible import run_playbook

        return run_playbook(
            playbook,
            self.inventory(nodes),
            site=self.site.name,
            playbooks_dir=self.playbooks_dir,
            extra_vars={**self.extra_vars, **(extra or {})},
        )


def _host_failure(result: PlaybookResult, host: str) -> str | None:
    """Why `host` did not come through a play (None when it did)."""
    if result.crashed:
        return f"{result.playbook} crashed: {result.error.splitlines()[-1] if result.error else result.status}"
    r = result.hosts.get(host)
    if r is None:
        return f"{result.playbook}: the host was not in the play's results"
    if r.status in ("failed", "unreachable"):
        what = "; ".join(f"{f.task}: {f.message}" for f in r.failures) or r.status
        return f"{result.playbook}: {r.status}: {what}"[:600]
    return None


# --- the phases --------------------------------------------------------------------------------------------


def phase_state(run: Run) -> str:
    """The state backend (state and artifacts buckets, as `fjord state init`) and the secrets the run needs."""
    from fjord.adapters.s3 import S3Error
    from fjord.cli.state import init_state

    try:
        report = init_state(run.site, run.target, run.store)
    except S3Error as exc:
        raise PhaseFailed(str(exc)) from None
    run.saving = True  # the artifacts bucket exists: from here on the state is written, whatever follows
    if not os.environ.get(PASSWORD_ENV):
        raise PhaseFailed(f"no BMC password: set ${PASSWORD_ENV} (the bare-metal phase needs it)")
    buckets = ", ".join(f"{b['bucket']} ({'created' if b['created'] else 'exists'})" for b in report["buckets"])
    engine = "not used (--no-engine)"
    if run.engine is not None:
        engine = f"Pulumi CLI in {_engine_ready()}, secrets passphrase set (not shown)"
    return f"buckets {buckets} at {run.target.endpoint}; BMC password and S3 keys present (not shown); engine: {engine}"


NO_ENGINE_HINT = (
    "build the CLI with .ci/setup-pulumi.sh (docs/engine.md), or run `fjord bootstrap --no-engine` to converge"
    " the BMCs with the bare-metal provider's node operation directly (docs/bootstrap.md)"
)


def _engine_ready() -> Path:
    """The Pulumi CLI's folder, when the engine can run; else PhaseBlocked naming what is missing."""
    from fjord.engine import EngineUnavailable, engine_bin

    try:
        folder = engine_bin()
    except EngineUnavailable as exc:
        raise PhaseBlocked(f"no Pulumi engine: {exc}; {NO_ENGINE_HINT}") from None
    if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        raise PhaseBlocked(
            "no secrets passphrase for the Pulumi engine: set PULUMI_CONFIG_PASSPHRASE (or"
            " PULUMI_CONFIG_PASSPHRASE_FILE); the stack's state keeps the BMC password encrypted with it"
        )
    return folder


def _bmc_access(site: Site) -> tuple[Credentials, Options]:
    from fjord.adapters.redfish import Credentials, Options

    b = site.bmc
    password = os.environ.get(PASSWORD_ENV, "")
    options = Options(
        verify_tls=b.verify_tls,
        timeout_s=b.timeout_s,
        retries=b.retries,
        backoff_s=b.backoff_s,
        concurrency=b.concurrency,
    )
    return Credentials(b.username, password), options


def phase_bare_metal(run: Run, nodes: list[str]) -> str:
    """Per node: inspect the BMC (inventory, health, firmware and BIOS; read only), then provision it: its
    scalable unit's NodePool through the Pulumi engine (a targeted `up`), which converges each node to the
    spec's boot (PXE, or the OS image as virtual media) and powers it on; with --no-engine, the same node
    operation called directly."""
    if not nodes:
        return "every node is provisioned already"
    from fjord.adapters.redfish import RedfishError, Target, run_bulk
    from fjord.bootstrap.plan import advance, fail
    from fjord.sizing.bmc import bmc_endpoints

    if run.engine is not None:
        _engine_ready()  # blocked, before any BMC is touched, when the engine cannot run
    creds, options = _bmc_access(run.site)
    wanted = set(nodes)
    targets = {
        e.node: Target(e.node, e.url, e.system_id)
        for e in bmc_endpoints(run.size.hosts(), run.site.bmc)
        if e.node in wanted
    }
    bmc = run.site.bmc

    def inspect(node: RedfishNode) -> dict[str, Any]:
        info = node.info()
        if info.health not in (None, "OK", "Warning"):
            raise RedfishError(node.target.node, "rejected", f"the BMC reports health {info.health}")
        bios = node.bios() if bmc.bios else None
        pending = {k: v for k, v in bmc.bios.items() if bios is not None and bios.get(k) != v}
        return {
            "bmc": info.as_dict(),
            "firmware": {"bios_version": info.bios_version},
            "bios": "not exposed by the BMC"
            if bmc.bios and bios is None
            else (f"{len(pending)} attribute(s) to set" if pending else "as the spec says"),
        }

    inspect_failed: dict[str, str] = {}
    ready = [n for n in nodes if run.node(n).last_good == "registered"]
    if ready:

        def inspected(o: Outcome[dict[str, Any]]) -> None:
            node = run.node(o.node)
            if o.ok:
                run.set_node(o.node, advance(node, "inspected", "bare-metal", **(o.value or {})))
            else:
                why = f"inspect: {o.error} (after {o.attempts} tries)"
                inspect_failed[o.node] = why
                run.set_node(o.node, fail(node, "bare-metal", why))

        run_bulk([targets[n] for n in ready], creds, options, inspect, on_done=inspected)
    to_provision = [n for n in nodes if run.node(n).last_good == "inspected"]
    if run.engine is None:
        failed, how = (
            _provision_directly(run, to_provision, targets, creds, options),
            (
                "converged through the bare-metal provider's node operation directly (--no-engine): the Pulumi state"
                " does not have the nodes until a `fjord up`"
            ),
        )
    else:
        failed, how = _provision_with_engine(run, to_provision, inspect_failed)
    failed += len(inspect_failed)
    run.save(force=True)
    versions = sorted({str(run.node(n).facts.get("firmware", {}).get("bios_version")) for n in targets})
    detail = (
        f"{len(targets) - failed} of {len(targets)} nodes provisioned ({bmc.boot}); BIOS versions"
        f" {', '.join(versions)}; {how}"
    )
    if failed:
        raise NodesFailed(detail)
    return detail


def _provision_directly(
    run: Run, nodes: list[str], targets: Mapping[str, Any], creds: Credentials, options: Options
) -> int:
    """--no-engine: the bare-metal provider's node operation on each node, as before the engine existed."""
    from fjord.adapters.redfish import run_bulk
    from fjord.bootstrap.plan import advance, fail
    from fjord.providers.baremetal import Desired, converge

    if not nodes:
        return 0
    bmc = run.site.bmc
    want = Desired(
        power="on", boot=bmc.boot, image_url=bmc.image_url, bios=bmc.bios, power_timeout_s=bmc.power_timeout_s
    )

    def provision(node: RedfishNode) -> dict[str, Any]:
        # A node below `provisioned` is taken on for the first time: its boot override is set and, if it is on,
        # it is restarted into the install (converge never does that to a node it already took on).
        return {"provision": converge(node, want, first=True)}

    def done(o: Outcome[dict[str, Any]]) -> None:
        node = run.node(o.node)
        if o.ok:
            run.set_node(o.node, advance(node, "provisioned", "bare-metal", **(o.value or {})))
        else:
            run.set_node(o.node, fail(node, "bare-metal", f"provision: {o.error} (after {o.attempts} tries)"))

    outcomes = run_bulk([targets[n] for n in nodes], creds, options, provision, on_done=done)
    return sum(not o.ok for o in outcomes.values())


def _provision_with_engine(run: Run, nodes: list[str], inspect_failed: Mapping[str, str]) -> tuple[int, str]:
    """A targeted `up` of the NodePools of the units with nodes to provision (fjord.bootstrap.baremetal), on the
    site's state backend; each node's state from its NodePool's record. Per-node progress comes from the
    provider while the engine runs ($FJORD_NODE_PROGRESS); a unit with a node that failed inspection is held
    back (its nodes fail with that reason and are taken again by --resume). Returns (failed nodes, how)."""
    import threading

    from fjord.bootstrap import baremetal as bm
    from fjord.bootstrap.plan import RANK, advance, fail
    from fjord.cli.engine import _project, _site_backend
    from fjord.engine import EngineSetupError, EngineUnavailable
    from fjord.engine import run as engine_run
    from fjord.program import main as program
    from fjord.providers.baremetal import PROGRESS_ENV
    from fjord.spec.load import stacks_dir

    assert run.engine is not None
    if not nodes:
        return 0, "no node to provision through the engine"
    pools = bm.unit_pools(run.stack, run.site.name, run.size)
    direct = [n for n, v in run.state.nodes.items() if v.rank >= RANK["provisioned"] and "engine" not in v.facts]
    selection = bm.select(pools, set(nodes), inspect_failed, direct)
    failed = 0
    for p in pools:
        if p.unit in selection.held:
            for n in p.nodes:
                if n in nodes:
                    failed += 1
                    run.set_node(
                        n, fail(run.node(n), "bare-metal", f"provision: unit {p.unit} {selection.held[p.unit]}")
                    )
    if not selection.pools:
        return failed, "no unit could be provisioned through the Pulumi engine"
    folder = stacks_dir(run.stacks_dir).resolve()
    backend, extra = (run.engine.backend, {}) if run.engine.backend else _site_backend(run.stack, run.stacks_dir)
    project = _project(run.engine.project, run.stacks_dir)
    password = os.environ.get(PASSWORD_ENV, "")
    shown: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="fjord-bootstrap-engine-") as tmp:
        progress_file = Path(tmp) / "nodes.jsonl"

        def follow() -> None:
            offset = 0
            while True:
                finished = stop.is_set()
                if progress_file.is_file():
                    with progress_file.open("rb") as fh:
                        fh.seek(offset)
                        data = fh.read()
                    complete = data[: data.rfind(b"\n") + 1]
                    offset += len(complete)
                    for line in complete.decode().splitlines():
                        try:
                            node = str(json.loads(line)["node"])
                        except (ValueError, KeyError, TypeError):
                            continue
                        with lock:
                            if node not in shown:
                                shown.add(node)
                                run.on_node(node, "provisioning")
                if finished:
                    return
                stop.wait(0.5)

        def bare_metal_program() -> None:
            program(folder, bare_metal_only=True, bmc_password=password)

        watcher = threading.Thread(target=follow, name="fjord-node-progress", daemon=True)
        watcher.start()
        try:
            result = engine_run(
                "up",
                run.stack,
                project,
                backend,
                {**extra, PROGRESS_ENV: str(progress_file)},
                stacks=folder,
                targets=bm.targets(selection.pools),
                program=bare_metal_program,
            )
        except (EngineSetupError, EngineUnavailable) as exc:
            raise PhaseFailed(f"the Pulumi engine could not start: {exc}") from None
        finally:
            stop.set()
            watcher.join(timeout=10)
    recorded = 0
    for p in selection.pools:
        step = result.steps.get(p.urn)
        for n, r in bm.node_results(p, step.outputs if step else None).items():
            if n not in nodes:
                continue  # provisioned before: its state stays
            node = run.node(n)
            if r.ok:
                recorded += 1
                new = advance(node, "provisioned", "bare-metal", provision=r.record, engine=p.urn)
            else:
                failed += 1
                why = r.error if step and step.outputs else "; ".join(result.errors[:3]) or r.error
                new = fail(node, "bare-metal", f"provision (engine): {why}"[:600])
            run.set_node(n, new, notify=n not in shown)
    scheme = backend.split(":", 1)[0]
    how = (
        f"through the Pulumi engine: a targeted up of {len(selection.pools)} NodePool(s) ({recorded} nodes"
        f" recorded) on the {scheme} state backend in {result.seconds:.1f} s"
    )
    if not result.ok:
        errors = "; ".join(result.errors) or "no error given"
        if not failed:
            raise PhaseFailed(f"{how}; the engine failed: {errors}")
        how += f"; the engine reported: {errors}"[:1200]
    return failed, how


class NodesFailed(Exception):
    """Some nodes of a per-node phase failed (each recorded with its reason); the others went on."""


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def phase_hosts(run: Run, nodes: list[str]) -> str:
    """site.yml on the provisioned nodes, in batches; each batch's nodes are configured (or failed) when it ends."""
    from fjord.bootstrap.plan import advance, fail

    if not nodes:
        return "every node is configured already"
    failed = 0
    for batch in _batches(nodes, run.batch_size):
        result = run.playbook(SITE_PLAYBOOK, batch)
        for host in batch:
            why = _host_failure(result, host)
            node = fail(run.node(host), "hosts", why) if why else advance(run.node(host), "configured", "hosts")
            failed += why is not None
            run.set_node(host, node)
        run.save(force=True)
    detail = (
        f"{len(nodes) - failed} of {len(nodes)} nodes configured with {SITE_PLAYBOOK} in batches of {run.batch_size}"
    )
    if failed:
        raise NodesFailed(detail)
    return detail


def phase_scheduler(run: Run) -> str:
    """Each cluster's scheduler control plane: Slurm through its playbook (issue 28's roles); Kubernetes where a
    control plane is given (`fjord_kube_host` in --extra-vars), else its nodes register tainted and join later."""
    from fjord.adapters.playbooks import default_playbooks_dir

    folder = run.playbooks_dir or default_playbooks_dir()
    lines: list[str] = []
    blocked: list[str] = []
    for c in run.site.clusters:
        nodes = [n for n, cl in run.clusters.items() if cl == c.name]
        if c.scheduler == "kubernetes":
            host = run.extra_vars.get("fjord_kube_host")
            lines.append(
                f"{c.name} (kubernetes): control plane on {host}: {_kube_registration(run, c.name, nodes, str(host))}"
                if host
                else f"{c.name} (kubernetes): no control plane given; nodes register tainted and are let in when"
                " accepted"
            )
            continue
        if not (folder / SLURM_PLAYBOOK).is_file():
            blocked.append(
                f"{c.name} (slurm): no Slurm control plane playbook ({SLURM_PLAYBOOK}) in {folder};"
                " the Slurm roles (issue 28) are not there, so its nodes cannot be resumed into service"
            )
            continue
        site_yml = folder / SITE_PLAYBOOK
        if site_yml.is_file() and SLURM_PLAYBOOK in site_yml.read_text(encoding="utf-8"):
            lines.append(f"{c.name} (slurm): control plane set up by {SITE_PLAYBOOK} ({SLURM_PLAYBOOK}) in phase hosts")
            continue
        result = run.playbook(SLURM_PLAYBOOK, nodes)
        bad = [h for h in nodes if _host_failure(result, h)]
        if bad:
            raise PhaseFailed(
                f"{c.name} (slurm): {SLURM_PLAYBOOK} failed on {', '.join(bad)}: {_host_failure(result, bad[0])}"
            )
        lines.append(f"{c.name} (slurm): {SLURM_PLAYBOOK} on {len(nodes)} nodes")
    if blocked:
        raise PhaseBlocked("; ".join(lines + blocked))
    return "; ".join(lines)


def _kube_registration(run: Run, cluster: str, nodes: list[str], host: str) -> str:
    """The control plane's view of the cluster's nodes (kube-nodes.yml: kubectl on `host`, read only): which are
    registered, and that every one not accepted yet carries the acceptance taint; PhaseFailed when the API does
    not answer or a node could take work before acceptance."""
    from fjord.bootstrap.kube import registration
    from fjord.bootstrap.plan import RANK

    if not nodes:
        return "no node"
    with tempfile.TemporaryDirectory(prefix="fjord-kube-") as tmp:
        report = Path(tmp) / "nodes.json"
        # One host in the play is enough: the task runs once, on the control plane host, and lists every node.
        result = run.playbook(KUBE_NODES_PLAYBOOK, nodes[:1], {"kube_nodes_report": str(report)})
        why = _host_failure(result, nodes[0])
        if why or not report.is_file():
            what = why or "no report"
            raise PhaseFailed(f"{cluster} (kubernetes): the control plane on {host} did not answer: {what}")
        try:
            node_list = json.loads(report.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PhaseFailed(f"{cluster} (kubernetes): kubectl on {host} answered no JSON node list: {exc}") from None
    accepted = [n for n in nodes if run.node(n).rank >= RANK["accepted"]]
    seen = registration(node_list, nodes, accepted)
    if seen.untainted_pending:
        raise PhaseFailed(
            f"{cluster} (kubernetes): {seen.line()} (they could take work before the acceptance gate; register"
            " them with the acceptance taint, see docs/bootstrap.md)"
        )
    return seen.line()


class PhaseBlocked(Exception):
    """A phase cannot run because something it needs is not there yet (said in the message)."""


def phase_acceptance(run: Run, nodes: list[str]) -> str:
    """The gate: the required checks on every configured node, each verdict (fjord.bootstrap.gate) with the node's
    evidence stored in S3; accepted nodes then enter service (enter-service.yml); nothing else does."""
    from fjord.bootstrap.gate import evaluate
    from fjord.bootstrap.nccl import merge as nccl_merge
    from fjord.bootstrap.plan import advance, fail
    from fjord.bootstrap.store import evidence_key, index_key

    if not nodes:
        return "every node is in service already"
    run_id = run.state.run_id
    checking = [n for n in nodes if run.node(n).last_good == "configured"]
    index = run.states.get_json(index_key(run_id)) or {"site": run.site.name, "run": run_id, "nodes": {}}
    rejected = 0
    if checking:
        with tempfile.TemporaryDirectory(prefix="fjord-acceptance-") as tmp:
            pairs = _nccl_pairs(run, checking)
            (Path(tmp) / "pairs").mkdir()
            result = run.playbook(
                ACCEPTANCE_PLAYBOOK,
                checking,
                {
                    "gpu_validate_report_dir": tmp,
                    "gpu_validate_nccl_pairs": [
                        {"leader": a, "partner": b, "gpus": run.site.cluster(run.clusters[a]).gpu.gpus_per_node}
                        for a, b in pairs
                    ],
                },
            )
            pair_checks = _nccl_pair_checks(run, checking, pairs, Path(tmp) / "pairs")
            for host in checking:
                cluster = run.site.cluster(run.clusters[host])
                required = cluster.acceptance.required()
                path = Path(tmp) / f"{host}.json"
                report: Any = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
                report = nccl_merge(report, pair_checks[host])
                verdict = evaluate(host, report, required)
                why = _host_failure(result, host)
                accepted = verdict.accepted and why is None
                key = evidence_key(run_id, host)
                sku = cluster.gpu
                run.states.put_json(
                    key,
                    {
                        "site": run.site.name,
                        "run": run_id,
                        "node": host,
                        "cluster": cluster.name,
                        "accepted": accepted,
                        "verdict": verdict.as_dict(),
                        "required": list(required),
                        "acceptance": cluster.acceptance.model_dump(),
                        "catalog": {
                            "sku": sku.name,
                            "bf16_dense_tflops": sku.bf16_dense_tflops,
                            "hbm_tbps": sku.hbm_tbps,
                            "nvlink_gbps": sku.nvlink_gbps,
                            "compute_rails": sku.compute_rails,
                            "fabric_port_gbps": run.site.fabric(cluster.compute_fabric).switch_model.port_gbps,
                            "source": sku.source,
                        },
                        "tools": (report or {}).get("tools") if isinstance(report, dict) else None,
                        "report": report,
                        "play": why or "ok",
                    },
                )
                reason = verdict.reason() or (why or "")
                index["nodes"][host] = {
                    "accepted": accepted,
                    "reason": reason,
                    "evidence": key,
                    "cluster": cluster.name,
                }
                if accepted:
                    run.set_node(host, advance(run.node(host), "accepted", "acceptance", evidence=key))
                else:
                    rejected += 1
                    run.set_node(host, fail(run.node(host), "acceptance", f"gate: {reason}"))
            index["updated"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            run.states.put_json(index_key(run_id), index)
    entering = [n for n in nodes if run.node(n).last_good == "accepted"]
    not_in = 0
    if entering:
        evidence = {n: str(run.node(n).facts.get("evidence", "")) for n in entering}
        result = run.playbook(
            SERVICE_PLAYBOOK, entering, {"fjord_acceptance_run": run_id, "fjord_acceptance_evidence": evidence}
        )
        slurm = [h for h in entering if run.site.cluster(run.clusters[h]).scheduler == "slurm"]
        resumed = _slurm_resume(run, [h for h in slurm if _host_failure(result, h) is None])
        for host in entering:
            why = _host_failure(result, host) or resumed.get(host)
            not_in += why is not None
            run.set_node(
                host,
                fail(run.node(host), "acceptance", f"into service: {why}")
                if why
                else advance(run.node(host), "in_service", "acceptance"),
            )
    run.save(force=True)
    detail = (
        f"{len(checking)} checked, {rejected} rejected by the gate; {len(entering) - not_in} of {len(entering)}"
        f" put into service; evidence under acceptance/{run_id}/"
    )
    if rejected or not_in:
        raise NodesFailed(detail)
    return detail


NCCL_PAIR_DEFAULT_FRACTION = 0.7
"""The share of the inter-node figure a pair is held to where the spec does not require the check (recorded only)."""


def _nccl_pairs(run: Run, nodes: list[str]) -> list[tuple[str, str]]:
    """The node pairs for the NCCL all-reduce between nodes, among the nodes under acceptance (fjord.bootstrap.nccl)."""
    from fjord.bootstrap.nccl import Candidate, pair_nodes

    where = {h.name: h for h in run.size.hosts()}
    return pair_nodes(Candidate(n, run.clusters[n], where[n].scalable_unit, where[n].rack) for n in nodes)


def _nccl_pair_checks(
    run: Run, nodes: list[str], pairs: list[tuple[str, str]], folder: Path
) -> dict[str, dict[str, Any]]:
    """Each node's nccl_pair check from its pairs' results fetched to `folder` (<leader>--<partner>.json), against
    the catalog's inter-node figure (compute rails x the fabric's port speed)."""
    from fjord.bootstrap.nccl import expected_text, inter_node_gbps, node_checks, pair_result

    checks: dict[str, dict[str, Any]] = {}
    by_cluster: dict[str, list[str]] = {}
    for n in nodes:
        by_cluster.setdefault(run.clusters[n], []).append(n)
    for name, members in by_cluster.items():
        cluster = run.site.cluster(name)
        sku = cluster.gpu
        peak = inter_node_gbps(sku.compute_rails, run.site.fabric(cluster.compute_fabric).switch_model.port_gbps)
        fraction = cluster.acceptance.nccl_pair_min_fraction or NCCL_PAIR_DEFAULT_FRACTION
        mine = [p for p in pairs if p[0] in members]
        results = {}
        for p in mine:
            path = folder / f"{p[0]}--{p[1]}.json"
            outcome = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            results[p] = pair_result(p, outcome, sku.gpus_per_node, peak, fraction)
        checks |= node_checks(members, mine, results, expected_text(peak, fraction))
    return checks


def _slurm_resume(run: Run, nodes: list[str]) -> dict[str, str | None]:
    """Resume accepted Slurm nodes (slurm-resume.yml); per node, why it did not enter service (None: it did)."""
    from fjord.adapters.playbooks import default_playbooks_dir

    if not nodes:
        return {}
    if not ((run.playbooks_dir or default_playbooks_dir()) / SLURM_RESUME).is_file():
        why = f"no {SLURM_RESUME} (the Slurm roles, issue 28): the node passed acceptance and stays drained"
        return dict.fromkeys(nodes, why)
    result = run.playbook(SLURM_RESUME, nodes)
    return {h: _host_failure(result, h) for h in nodes}


def handover_report(run: Run) -> dict[str, Any]:
    from fjord.bootstrap.plan import counts

    s = run.state
    return {
        "site": run.site.name,
        "stack": run.stack,
        "run": s.run_id,
        "status": s.status,
        "started": s.started,
        "counts": counts(s),
        "phases": {
            n: {"status": r.status, "seconds": r.seconds, "detail": r.detail, "attempts": r.attempts}
            for n, r in s.phases.items()
        },
        "nodes": {
            n: {
                "status": v.status,
                "cluster": run.clusters.get(n),
                "reason": v.reason,
                "phase": v.phase,
                "evidence": v.facts.get("evidence"),
                "serial": (v.facts.get("bmc") or {}).get("serial"),
                "bios_version": (v.facts.get("firmware") or {}).get("bios_version"),
            }
            for n, v in s.nodes.items()
        },
    }


def phase_handover(run: Run) -> str:
    from fjord.bootstrap.plan import counts
    from fjord.bootstrap.store import handover_key

    report = handover_report(run)
    run.states.put_json(handover_key(run.state.run_id), report)
    c = counts(run.state)
    key = handover_key(run.state.run_id)
    return f"{c['in_service']} of {len(run.state.nodes)} nodes in service, {c['failed']} failed; report {key}"


# --- the command -------------------------------------------------------------------------------------------


def _load_json_object(path: Path | None, option: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise reject(str(path), [f"{option}: cannot read a JSON object: {exc}"]) from None
    if not isinstance(data, dict):
        raise reject(str(path), [f"{option}: a JSON object is needed, got {type(data).__name__}"])
    return data


def _new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@contextmanager
def _progress(quiet: bool) -> Iterator[Progress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", markup=False),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    ) as progress:
        yield progress


def bootstrap(
    stack: StackArg,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the stopped run from its failed phase and nodes.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", help="Only these phases (repeat): state, bare-metal, hosts, scheduler, acceptance, handover."
        ),
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Start at this phase.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this phase.")] = None,
    host_vars: Annotated[
        Path | None,
        typer.Option("--host-vars", help="JSON file {host: {var: value}} merged over the generated host variables."),
    ] = None,
    extra_vars: Annotated[
        Path | None,
        typer.Option(
            "--extra-vars",
            help="JSON file of variables for every play (e.g. fjord_kube_host, fjord_slurm_controller).",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Nodes configured per site.yml run (a batch ends in the state).")
    ] = 64,
    playbooks_dir: Annotated[
        Path | None, typer.Option("--playbooks-dir", help="Folder of playbooks (default: the project's playbooks/).")
    ] = None,
    no_engine: Annotated[
        bool,
        typer.Option(
            "--no-engine",
            help="Provision the BMCs with the bare-metal provider's node operation directly, not through the Pulumi"
            " engine (where the engine cannot be built); the Pulumi state then lacks the nodes until `fjord up`.",
        ),
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            envvar="PULUMI_BACKEND_URL",
            help="The engine's state backend (default: $PULUMI_BACKEND_URL, else the site's own state bucket).",
        ),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option("--project", help="The folder holding Pulumi.yaml (default: the stacks folder's parent)."),
    ] = None,
    stacks_dir_: StacksDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Bootstrap a site: state backend, bare metal, hosts, scheduler, acceptance gate, hand-over; resumable."""
    from fjord.adapters.s3 import S3Error
    from fjord.bootstrap import plan
    from fjord.bootstrap.store import StateStore
    from fjord.cli.state import connect_store
    from fjord.hosts.inventory import BadHostVars, check_host_vars

    site, size, source = load_stack(stack, stacks_dir_)
    try:
        selected = plan.select(only or (), from_, until)
    except plan.PlanError as exc:
        raise reject(source, [str(exc)]) from None
    hv: dict[str, Any] = {}
    if host_vars is not None:
        try:
            hv = check_host_vars(site, size, _load_json_object(host_vars, "--host-vars"))
        except BadHostVars as exc:
            raise reject(str(host_vars), [f"--host-vars: {p}" for p in exc.problems]) from None
    ev = _load_json_object(extra_vars, "--extra-vars")
    target, store = connect_store(stack, stacks_dir_, site, source)
    states = StateStore(store, target.artifacts_bucket)
    hosts = size.hosts()
    try:
        previous = states.load()
        state = plan.new_run(site.name, _new_run_id(), [h.name for h in hosts], selected, previous, resume)
    except plan.PlanError as exc:
        raise reject(source, [str(exc)]) from None
    except S3Error as exc:
        error_line(str(exc))
        raise typer.Exit(EXIT_FAILED) from None
    run = Run(
        stack,
        site,
        size,
        target,
        store,
        states,
        state,
        hv,
        ev,
        batch_size,
        playbooks_dir,
        clusters={h.name: h.cluster for h in hosts},
        engine=None if no_engine else EngineSettings(project.resolve() if project else None, backend or None),
        stacks_dir=stacks_dir_,
        # Until the state phase has made the artifacts bucket, there is nowhere to write the state.
        saving=previous is not None or "state" not in state.selected,
    )
    if not as_json:
        out.print(
            labelled(
                "bootstrap",
                "bold",
                f" {site.name}: run {state.run_id}{' (resumed)' if resume else ''}, {len(hosts)} nodes,"
                f" phases {', '.join(state.selected)}",
            )
        )
    stopped = False
    with _progress(as_json) as progress:
        tasks = {
            p.name: progress.add_task(f"{p.name}: {p.title}", total=None, status=state.phases[p.name].status)
            for p in selected
        }
        for phase in selected:
            if stopped:
                break
            if run.state.phases[phase.name].status == "done":
                progress.update(tasks[phase.name], status="done (earlier)", total=1, completed=1)
                continue
            nodes = plan.todo(run.state, phase)
            task = tasks[phase.name]
            progress.update(task, total=len(nodes) if phase.target else 1, completed=0, status="running")
            run.on_node = lambda _n, _s, task=task: progress.advance(task)  # type: ignore[misc]
            run.set_phase(phase.name, "running")
            started = time.monotonic()
            status: PhaseStatus = "done"
            try:
                detail = _run_phase(run, phase, nodes)
            except NodesFailed as exc:
                status, detail = "failed", str(exc)
            except PhaseBlocked as exc:
                status, detail, stopped = "blocked", str(exc), True
            except (PhaseFailed, S3Error) as exc:
                status, detail, stopped = "failed", str(exc), True
            seconds = round(time.monotonic() - started, 2)
            try:
                run.set_phase(phase.name, status, detail, seconds)
            except S3Error as exc:
                error_line(f"phase {phase.name}: {detail}; and the state could not be saved: {exc}")
                raise typer.Exit(EXIT_FAILED) from None
            progress.update(
                task,
                status=status,
                total=1 if not phase.target else None,
                completed=1 if not phase.target else len(nodes),
            )
            if not as_json and not err.is_terminal:
                err.print(plain(f"phase {phase.name}: {status} in {seconds:.1f} s: {detail}"), soft_wrap=True)
    run.state = replace(run.state, status=plan.finished(run.state))
    if stopped and run.state.status == "running":
        run.state = replace(run.state, status="failed")
    try:
        run.save(force=True)
    except S3Error as exc:
        error_line(f"the state could not be saved: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    report = handover_report(run)
    if as_json:
        write_json(report)
    else:
        _print_report(report)
    if run.state.status != "done":
        failed = [p for p in run.state.selected if run.state.phases[p].status in ("failed", "blocked")]
        for p in failed:
            error_line(f"phase {p} {run.state.phases[p].status}: {run.state.phases[p].detail}")
        for name, node in run.state.nodes.items():
            if node.status == "failed":
                error_line(f"node {name} failed in {node.phase}: {node.reason}")
        if not failed and not any(n.status == "failed" for n in run.state.nodes.values()):
            error_line("the run did not finish")
        error_line(f"continue with: fjord bootstrap {stack} --resume")
        raise typer.Exit(EXIT_FAILED)


def _run_phase(run: Run, phase: Phase, nodes: list[str]) -> str:
    if phase.name == "state":
        return phase_state(run)
    if phase.name == "bare-metal":
        return phase_bare_metal(run, nodes)
    if phase.name == "hosts":
        return phase_hosts(run, nodes)
    if phase.name == "scheduler":
        return phase_scheduler(run)
    if phase.name == "acceptance":
        return phase_acceptance(run, nodes)
    return phase_handover(run)


def _print_report(report: dict[str, Any]) -> None:
    phases = Table(title=plain(f"{report['site']}: run {report['run']} ({report['status']})"), title_justify="left")
    for col in ("phase", "status", "s", "detail"):
        phases.add_column(col, justify="right" if col == "s" else "left")
    style = {"done": "green", "failed": "red", "blocked": "red", "pending": "yellow", "running": "yellow"}
    for name, p in report["phases"].items():
        phases.add_row(
            plain(name),
            plain(p["status"], style.get(p["status"], "")),
            "" if p["seconds"] is None else f"{p['seconds']:.1f}",
            plain(p["detail"]),
        )
    out.print(phases)
    nodes = Table(title="Nodes", title_justify="left")
    for col in ("node", "cluster", "state", "reason / evidence"):
        nodes.add_column(col)
    for name, n in report["nodes"].items():
        nodes.add_row(
            plain(name),
            plain(n["cluster"] or ""),
            plain(n["status"], "green" if n["status"] == "in_service" else "red" if n["status"] == "failed" else ""),
            plain(n["reason"] or n["evidence"] or ""),
        )
    out.print(nodes)
