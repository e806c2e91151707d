"""Kubernetes cordon/drain/uncordon for real: upgrade-gpu-stack.yml and enter-service.yml on the testbed's four
Debian 12 hosts, with kubectl talking to a real kube-apiserver (tests/kube_env.py).

The hosts are the dev site's `h100` nodes (scheduler: kubernetes, so k8s_node_enabled is on). Their Node objects
are registered through the API as their kubelets would register them, each running a training job's pods and a
DaemonSet pod; kubectl runs on the controller (fjord_upgrade_kube_host / fjord_kube_host: localhost) with the
fixture's kubeconfig. Every assertion about cordons, evictions and taints reads the API server.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fjord.adapters.ansible import PlaybookResult, ProgressEvent, run_playbook
from fjord.bootstrap.gate import evaluate
from fjord.hosts import build_inventory
from fjord.hosts.inventory import upgrade_vars
from fjord.sizing.site import size_site
from tests import testbed as tb
from tests.kube_env import KubeAPI, Kubelet, kubectl_on_path, place_workload
from tests.test_hosts_testbed import Bed, _unavailable

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.kube]

HOSTS = [f"dev-h100-su000-n{i:03d}" for i in range(4)]
DRAIN = "Upgrade | Cordon and drain the node"
RETURN = "Upgrade | Return the node to service (only from fjord's own cordon)"
# After the drain the node is changed (driver, Fabric Manager, RDMA, CUDA, kubelet) and validated; this task,
# just before it is returned, ends that stretch.
CHANGED = "Upgrade | Read who cordoned the node"
FAILS_VALIDATION = {
    # A check the host cannot pass, run although it has no GPU: what a node that comes back broken looks like.
    "gpu_validate_without_gpu": True,
    "gpu_validate_required": ["os_release"],
    "gpu_validate_os": "ubuntu-22.04",
}


@dataclass
class Snapshot:
    """What the API server said while the playbook was at one host's event."""

    host: str
    task: str
    cordoned: frozenset[str]
    workload: dict[str, int]
    """node -> pods of the training job (not the DaemonSet's) still bound to it."""


@dataclass
class KubeBed:
    bed: Bed
    api: KubeAPI
    kubelet: Kubelet
    path_dir: Path
    namespace: str = "train"
    snapshots: list[Snapshot] = field(default_factory=list)

    def workload(self) -> dict[str, int]:
        pods = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]
        counts = dict.fromkeys(HOSTS, 0)
        for p in pods:
            owner = p["metadata"].get("ownerReferences", [{}])[0].get("kind")
            if owner == "ReplicaSet" and p["spec"].get("nodeName") in counts:
                counts[p["spec"]["nodeName"]] += 1
        return counts

    def cordoned(self) -> frozenset[str]:
        nodes = self.api.get("/api/v1/nodes")["items"]
        return frozenset(
            n["metadata"]["name"]
            for n in nodes
            if n["metadata"]["name"] in HOSTS and n.get("spec", {}).get("unschedulable")
        )

    def run(
        self,
        playbook: str,
        monkeypatch: pytest.MonkeyPatch,
        host_vars: dict[str, dict[str, Any]] | None = None,
        limit: list[str] | None = None,
        **extra: Any,
    ) -> tuple[PlaybookResult, list[ProgressEvent]]:
        """Run `playbook` with kubectl on the controller's PATH; snapshot the API at every host event."""
        monkeypatch.setenv("PATH", f"{self.path_dir}:{os.environ.get('PATH', '')}")
        vars_ = {h: v | (host_vars or {}).get(h, {}) for h, v in self.bed.vars.items()}
        inventory = build_inventory(self.bed.site, size_site(self.bed.site), host_vars=vars_)
        events: list[ProgressEvent] = []
        self.snapshots = []

        def seen(event: ProgressEvent) -> None:
            events.append(event)
            if event.host in HOSTS and event.kind in ("ok", "changed", "failed", "skipped"):
                self.snapshots.append(Snapshot(event.host, event.task, self.cordoned(), self.workload()))

        result = run_playbook(
            playbook,
            inventory.data,
            site=self.bed.site.name,
            settings=self.bed.settings,
            limit=limit or (),
            extra_vars=extra,
            on_event=seen,
        )
        assert not result.crashed, result.error
        return result, events

    def upgrade(
        self, monkeypatch: pytest.MonkeyPatch, host_vars: dict[str, dict[str, Any]] | None = None, **policy: Any
    ) -> tuple[PlaybookResult, list[ProgressEvent]]:
        policy = upgrade_vars(self.bed.site, ["h100"]) | {"fjord_upgrade_batch_percent": 50} | policy
        return self.run(
            "upgrade-gpu-stack.yml",
            monkeypatch,
            host_vars,
            **policy,
            fjord_upgrade_kube_host="localhost",
            fjord_upgrade_kubeconfig=str(self.api.kubeconfig),
            gpu_validate_report_dir=str(self.bed.tmp / "reports"),  # not the checkout's reports/
        )


@pytest.fixture(scope="module")
def kbed(kube_apiserver: KubeAPI, kubelet: Kubelet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeBed]:
    _unavailable()
    state = Path(tempfile.mkdtemp(prefix="fj-kube-"))
    tmp = tmp_path_factory.mktemp("kube-testbed")
    try:
        with tb.testbed(HOSTS) as running:
            bed = Bed(running, tmp, state)
            converged = bed.run()  # nodes in service have been through site.yml
            assert converged.ok, {h: r.failures for h, r in converged.hosts.items()}
            for host in HOSTS:
                kubelet.register(host, {"fjord.io/accepted": "true"})
            yield KubeBed(bed, kube_apiserver, kubelet, kubectl_on_path(kube_apiserver, tmp / "bin"))
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _first(events: list[ProgressEvent], host: str, task: str, kinds: tuple[str, ...] = ("ok", "changed")) -> int:
    return next(i for i, e in enumerate(events) if e.host == host and e.task == task and e.kind in kinds)


def test_upgrade_drains_each_batch_before_changing_it_and_keeps_someone_elses_cordon(
    kbed: KubeBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = HOSTS[1]
    placed = place_workload(kbed.api, kbed.namespace, HOSTS)
    kbed.api.kubectl("cordon", ops)  # an operator took this node out for a disk swap before the upgrade
    assert kbed.workload() == dict.fromkeys(HOSTS, 2)

    result, events = kbed.upgrade(monkeypatch)
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}

    # Every node was drained through the API (its training pods evicted and gone) before anything changed on it:
    # at each of its events from the first change on, the API showed it cordoned with none of the job's pods.
    for host in HOSTS:
        assert events[_first(events, host, DRAIN)].kind == "changed"
        mine = [s for s in kbed.snapshots if s.host == host]
        start = next(i for i, s in enumerate(mine) if s.task == DRAIN)
        end = next(i for i, s in enumerate(mine) if s.task == CHANGED)
        during = mine[start:end]
        assert len(during) > 5, (host, [s.task for s in mine])
        assert all(host in s.cordoned and s.workload[host] == 0 for s in during), (host, during)
        evicted = {name.split("/")[1] for node, name, _ in kbed.kubelet.finalised if node == host}
        assert set(placed[host]) <= evicted
    # The DaemonSet's pods were left where they run (--ignore-daemonsets), the job's pods are gone.
    daemons = {h: kbed.api.pods_on(h, kbed.namespace) for h in HOSTS}
    assert all(len(d) == 1 and d[0]["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet" for d in daemons.values())

    # Batches of upgrade.batch_percent (50 % of 4: two nodes): never more than one batch out at once (plus the
    # operator's node), and the second batch was drained only after the first was back.
    first, second = HOSTS[:2], HOSTS[2:]
    assert max(len(s.cordoned - {ops}) for s in kbed.snapshots) <= 2
    assert not any(set(second) & s.cordoned for s in kbed.snapshots if set(first) - {ops} <= s.cordoned)
    back = max(_first(events, h, RETURN) for h in first if h != ops)
    assert all(_first(events, h, DRAIN) > back for h in second)

    # Healthy nodes are schedulable again and carry no fjord annotation; the operator's cordon stays.
    for host in HOSTS:
        node = kbed.api.node(host)
        assert bool(node["spec"].get("unschedulable")) is (host == ops), host
        assert "fjord.io/cordoned-by" not in node["metadata"].get("annotations", {}), host
    stays = [e.host for e in events if e.task == "Upgrade | Say why a cordoned node stays cordoned" and e.kind == "ok"]
    assert stays == [ops]
    kbed.api.kubectl("uncordon", ops)


def test_a_node_failing_validation_stays_cordoned_and_named_until_a_healthy_rerun(
    kbed: KubeBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = HOSTS[3]  # in the last batch; one failure in a batch of two is within a 50 % budget
    assert kbed.cordoned() == frozenset()
    result, _ = kbed.upgrade(monkeypatch, {victim: FAILS_VALIDATION}, fjord_upgrade_max_fail_percentage=50)
    assert not result.ok
    assert [h for h, r in result.hosts.items() if r.failures] == [victim]
    (failure,) = result.hosts[victim].failures
    assert f"{victim} failed validation after the upgrade (" in failure.message
    assert "os_release" in failure.message
    assert "it stays cordoned" in failure.message
    node = kbed.api.node(victim)
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"]["fjord.io/cordoned-by"] == "upgrade-gpu-stack"
    assert kbed.cordoned() == {victim}

    # Fixed and rerun: the cordon is fjord's own (its annotation), so a passing validation returns the node.
    again, _ = kbed.upgrade(monkeypatch)
    assert again.ok, {h: r.failures for h, r in again.hosts.items()}
    assert kbed.cordoned() == frozenset()
    assert "fjord.io/cordoned-by" not in kbed.api.node(victim)["metadata"].get("annotations", {})


def test_enter_service_lets_in_only_the_nodes_the_gate_accepted(
    kbed: KubeBed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`fjord bootstrap`'s acceptance phase on the API: acceptance.yml's reports, the gate's verdicts
    (fjord.bootstrap.gate), then enter-service.yml on the accepted nodes only, as phase_acceptance runs them."""
    bad = HOSTS[2]
    taint = {"key": "fjord.io/acceptance", "value": "pending", "effect": "NoSchedule"}
    for host in HOSTS:  # as the kubelet registers a node before acceptance: tainted, labelled not accepted, cordoned
        kbed.api.request(
            "PATCH",
            f"/api/v1/nodes/{host}",
            {
                "metadata": {"labels": {"fjord.io/accepted": "false"}},
                "spec": {"taints": [taint], "unschedulable": True},
            },
            "application/merge-patch+json",
        )
    gate: dict[str, dict[str, Any]] = {h: {"gpu_validate_required": ["os_release"]} for h in HOSTS}
    gate[bad] |= {"gpu_validate_os": "ubuntu-22.04"}
    checked, _ = kbed.run("acceptance.yml", monkeypatch, gate, gpu_validate_report_dir=str(tmp_path))
    assert checked.ok, {h: r.failures for h, r in checked.hosts.items()}
    accepted = [h for h in HOSTS if evaluate(h, _report(tmp_path / f"{h}.json"), ["os_release"]).accepted]
    assert accepted == [h for h in HOSTS if h != bad]

    evidence = {h: f"acceptance/run-1/{h}.json" for h in accepted}
    entered, _ = kbed.run(
        "enter-service.yml",
        monkeypatch,
        limit=accepted,
        fjord_acceptance_run="run-1",
        fjord_acceptance_evidence=evidence,
        fjord_kube_host="localhost",
        fjord_kubeconfig=str(kbed.api.kubeconfig),
    )
    assert entered.ok, {h: r.failures for h, r in entered.hosts.items()}
    for host in HOSTS:
        node = kbed.api.node(host)
        taints = [t["key"] for t in node["spec"].get("taints", [])]
        labels = node["metadata"]["labels"]
        if host == bad:
            assert node["spec"]["unschedulable"] is True
            assert taints == ["fjord.io/acceptance"]
            assert labels["fjord.io/accepted"] == "false"
        else:
            assert not node["spec"].get("unschedulable"), host
            assert "fjord.io/acceptance" not in taints, host
            assert (labels["fjord.io/accepted"], labels["fjord.io/acceptance-run"]) == ("true", "run-1")
    # A rerun on an accepted node (no taint left to remove) is no failure.
    rerun, _ = kbed.run(
        "enter-service.yml",
        monkeypatch,
        limit=accepted[:1],
        fjord_acceptance_run="run-1",
        fjord_acceptance_evidence=evidence,
        fjord_kube_host="localhost",
        fjord_kubeconfig=str(kbed.api.kubeconfig),
    )
    assert rerun.ok, {h: r.failures for h, r in rerun.hosts.items()}


def _report(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
