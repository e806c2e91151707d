"""`fjord bootstrap` end to end on the dev site: sushy-emulator BMCs (powered off), four testbed hosts, Ceph RGW.

One run is killed (SIGKILL to its process group) in the middle of host configuration; `--resume` continues it
without redoing bare metal or the hosts already configured; a node whose OS is not the spec's is kept out of
service by the acceptance gate, with its reason, until a resume after the fix lets it in. The evidence is read
back from the site's artifacts bucket. GPU checks are marked not required explicitly in the spec: the testbed
hosts have no GPU. Needs root, Ceph and the testbed (skipped with the reason elsewhere, failed under
FJORD_REQUIRE_INTEGRATION=1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fjord.adapters.s3 import NotFound, ObjectStore, S3Credentials
from fjord.bootstrap.store import STATE_KEY, index_key
from fjord.engine import EngineUnavailable, engine_bin
from fjord.sizing.site import size_site
from fjord.spec.load import default_site, load_site
from tests import testbed as tb
from tests.ceph_cluster import CephCluster, CephUnavailable, S3User, missing_binaries
from tests.kube_env import KubeAPI, Kubelet, kubectl_on_path
from tests.redfish_lab import PASSWORD, USERNAME, Emulator, fake_system
from tests.test_bootstrap_kube import forget_nodes
from tests.test_hosts_testbed import TESTBED_VARS, air_gapped_site

pytestmark = [pytest.mark.slow, pytest.mark.testbed, pytest.mark.bmc, pytest.mark.rgw, pytest.mark.kube]
ACCEPTANCE_TAINT = {"key": "fjord.io/acceptance", "value": "pending", "effect": "NoSchedule"}

FJORD = Path(sys.executable).parent / "fjord"
REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "fjord-bootstrap-test-passphrase"
GPU_CHECKS_OFF = {
    # The testbed hosts have no GPU: every GPU check is taken out of the gate, explicitly. What is left
    # required is the OS release; the GPU checks still run and are recorded (skipped, not required).
    "os": True,
    "gpu_inventory": False,
    "ecc": False,
    "nvlink": False,
    "pcie": False,
    "dcgm_level": 0,
    "gemm_min_fraction": None,
    "hbm_min_fraction": None,
}


def _unavailable() -> None:
    reason = tb.unavailable_reason()
    try:
        engine_bin()  # the bare-metal phase runs through the Pulumi engine (.ci/setup-pulumi.sh builds it)
    except EngineUnavailable as exc:
        reason = reason or str(exc)
    missing = missing_binaries()
    if reason is None and missing:
        reason = f"Ceph is not installed ({', '.join(missing)}); run .ci/setup-ceph.sh as root"
    if reason is not None:
        if os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"bootstrap end to end required (FJORD_REQUIRE_INTEGRATION=1) but: {reason}")
        pytest.skip(reason)


@dataclass
class Lab:
    folder: Path
    bed: tb.Testbed
    emulator: Emulator
    user: S3User
    store: ObjectStore
    bucket: str
    nodes: list[str]
    kube: KubeAPI

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "FJORD_S3_ACCESS_KEY_ID": self.user.access_key,
            "FJORD_S3_SECRET_ACCESS_KEY": self.user.secret_key,
            "FJORD_BMC_PASSWORD": PASSWORD,
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            # The engine: its own home in the test's folder, the passphrase of the stack's secrets; no backend
            # given, so the state goes to the site's own state bucket on the RGW.
            "PULUMI_HOME": str(self.folder / ".pulumi-home"),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }
        env.pop("PULUMI_BACKEND_URL", None)
        env.pop("FJORD_STACKS_DIR", None)
        # kubectl for enter-service.yml, which runs it on the control plane host given (here the controller).
        env["PATH"] = f"{kubectl_on_path(self.kube, self.folder / 'kubectl')}{os.pathsep}{env.get('PATH', '')}"
        return env

    def extra_vars(self) -> Path:
        """The Kubernetes control plane: the tests' real API server, reached with kubectl from the controller."""
        path = self.folder / "extra-vars.json"
        path.write_text(
            json.dumps({"fjord_kube_host": "localhost", "fjord_kubeconfig": str(self.kube.kubeconfig)}),
            encoding="utf-8",
        )
        return path

    def k8s_node(self, name: str) -> tuple[bool, list[dict[str, Any]], dict[str, str]]:
        """(cordoned, taints, labels) of the node object in the API server."""
        node = self.kube.node(name)
        spec = node.get("spec", {})
        return bool(spec.get("unschedulable", False)), list(spec.get("taints") or []), node["metadata"]["labels"]

    @property
    def stacks(self) -> Path:
        return self.folder / "stacks"

    def host_vars(self, **extra: dict[str, Any]) -> Path:
        hv = {h: v | TESTBED_VARS | extra.get(h, {}) for h, v in self.bed.host_vars().items()}
        path = self.folder / "host-vars.json"
        path.write_text(json.dumps(hv), encoding="utf-8")
        return path

    def args(self, *more: str, host_vars: Path | None = None) -> list[str]:
        return [
            str(FJORD),
            "bootstrap",
            "lab",
            "--stacks-dir",
            str(self.stacks),
            "--host-vars",
            str(host_vars or self.host_vars()),
            "--batch-size",
            "2",
            "--extra-vars",
            str(self.extra_vars()),
            *more,
        ]

    def run(self, *more: str, host_vars: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(*more, host_vars=host_vars), env=self.env(), capture_output=True, text=True, timeout=900
        )

    def state(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(self.store.get_bytes(self.bucket, STATE_KEY))
        except NotFound:
            return None
        return doc

    def get(self, key: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.store.get_bytes(self.bucket, key))
        return doc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, kube_apiserver: KubeAPI, kubelet: Kubelet) -> Iterator[Lab]:
    _unavailable()
    nodes = [n.name for n in size_site(load_site(default_site())).hosts()]
    folder = tmp_path_factory.mktemp("bootstrap")
    ceph = CephCluster(memstore_gib=2)
    try:
        ceph.start()
    except CephUnavailable as exc:
        pytest.fail(str(exc))
    emulator = Emulator([fake_system(n, i, power="Off") for i, n in enumerate(nodes)])
    try:
        emulator.start()
        user = ceph.create_user("fjord-admin")
        with tb.testbed(nodes) as bed:
            site = air_gapped_site(bed.mirror_url)
            site["bmc"] = {
                "scheme": "http",
                "endpoint": emulator.url,
                "username": USERNAME,
                "power_timeout_s": 60,
                "retries": 2,
                "backoff_s": 0.2,
            }
            site["object_store"] = {"endpoint": ceph.endpoint, "jurisdiction": "EEA", "max_attempts": 3}
            site["clusters"][0]["acceptance"] = GPU_CHECKS_OFF
            write_project(folder, site)
            store = ObjectStore(ceph.endpoint, S3Credentials(user.access_key, user.secret_key))
            # The nodes as their kubelets register them before acceptance (there is no kubelet here: through the
            # API): tainted fjord.io/acceptance=pending (k8s_node's --register-with-taints), and cordoned.
            forget_nodes(kube_apiserver, nodes)  # the session's API server: start from no node objects
            for n in nodes:
                kubelet.register(n, {"fjord.io/accepted": "false"})
                kube_apiserver.request(
                    "PATCH",
                    f"/api/v1/nodes/{n}",
                    {"spec": {"unschedulable": True, "taints": [ACCEPTANCE_TAINT]}},
                    "application/merge-patch+json",
                )
            yield Lab(folder, bed, emulator, user, store, "dev-artifacts", nodes, kube_apiserver)
    finally:
        emulator.stop()
        ceph.stop()


def write_project(folder: Path, site: dict[str, Any], stack: str = "lab") -> None:
    """A fjord project as an operator has it: Pulumi.yaml beside stacks/ holding the stack file and its
    allocation record (written by `fjord alloc`, as `fjord site new` does)."""
    (folder / "stacks").mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))
    project["runtime"]["options"]["virtualenv"] = sys.prefix
    (folder / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    doc = {"config": {"fjord:site": site}}
    (folder / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    done = subprocess.run(
        [str(FJORD), "alloc", stack, "--stacks-dir", str(folder / "stacks")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def engine_state(lab: Lab, state_bucket: str = "dev-state") -> dict[str, Any]:
    """The stack's checkpoint as the engine stored it in the site's state bucket (read back with S3)."""
    keys = [o.key for o in lab.store.list(state_bucket, prefix=".pulumi/stacks/") if o.key.endswith("/lab.json")]
    assert len(keys) == 1, keys
    doc: dict[str, Any] = json.loads(lab.store.get_bytes(state_bucket, keys[0]))
    return doc


def _secrets_absent(lab: Lab, *texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert lab.user.secret_key not in text


def test_bootstrap_killed_in_host_configuration_resumes_to_every_node_in_service(lab: Lab) -> None:
    assert {lab.emulator.system(n)["PowerState"] for n in lab.nodes} == {"Off"}

    # 1. A run killed while the second batch of hosts is being configured.
    proc = subprocess.Popen(
        lab.args(), env=lab.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 600
    killed_at: dict[str, Any] | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        state = lab.state()
        if state and state["phases"]["hosts"]["status"] == "running":
            configured = [n for n, v in state["nodes"].items() if v["status"] == "configured"]
            if len(configured) == 2:
                time.sleep(1.0)  # into the second batch's play
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = state
                break
        time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    assert killed_at is not None, f"never saw the first batch configured; rc={proc.returncode}\n{out}\n{err}"
    assert proc.returncode == -signal.SIGKILL
    state = lab.state()
    assert state is not None
    assert state["status"] == "running"
    assert state["phases"]["hosts"]["status"] == "running"
    assert state["phases"]["bare-metal"]["status"] == "done"
    statuses = {n: v["status"] for n, v in state["nodes"].items()}
    assert sorted(statuses.values()) == ["configured", "configured", "provisioned", "provisioned"], statuses
    first_batch = sorted(n for n, s in statuses.items() if s == "configured")
    # bare metal really happened: powered on, PXE boot override, inventory recorded
    for n in lab.nodes:
        system = lab.emulator.system(n)
        assert system["PowerState"] == "On"
        assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe"
        assert state["nodes"][n]["facts"]["bmc"]["system_id"] == n
        assert state["nodes"][n]["facts"]["provision"]["power"] == "On"  # the NodePool's record of the node
    run_id = state["run_id"]
    # ... through the Pulumi engine: the site's state bucket holds the stack with the unit's NodePool and its
    # parents only (no host configuration, no Kubernetes objects: the up was targeted), the BMC password
    # encrypted.
    assert (
        "through the Pulumi engine: a targeted up of 1 NodePool(s) (4 nodes recorded)"
        in (state["phases"]["bare-metal"]["detail"])
    )
    checkpoint = engine_state(lab)
    resources = checkpoint["checkpoint"]["latest"]["resources"]
    types = sorted({r["type"] for r in resources})
    assert types == sorted(
        {
            "pulumi:pulumi:Stack",
            "pulumi:providers:pulumi-python",
            "fjord:components:Site",
            "fjord:components:GpuCluster",
            "fjord:components:ScalableUnit",
            "pulumi-python:dynamic/baremetal:NodePool",
        }
    ), types
    pool = next(r for r in resources if r["type"] == "pulumi-python:dynamic/baremetal:NodePool")
    assert sorted(pool["outputs"]["state"]) == sorted(lab.nodes)
    assert pool["outputs"]["failed"] == {}
    assert PASSWORD not in json.dumps(checkpoint)

    # 2. Without --resume a stopped run is not started over.
    again = lab.run()
    assert again.returncode == 1
    assert f"run {run_id} of site dev did not finish (phase hosts running); allowed: --resume" in again.stderr

    # 3. Resume, with one host's OS not the spec's: the gate keeps that node out of service, with its reason.
    bad = lab.nodes[3]
    resumed = lab.run("--resume", host_vars=lab.host_vars(**{bad: {"gpu_validate_os": "ubuntu-22.04"}}))
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert "phase hosts: done" in resumed.stderr
    assert "2 of 2 nodes configured" in resumed.stderr
    state = lab.state()
    assert state is not None
    assert state["run_id"] == run_id
    assert state["phases"]["bare-metal"]["attempts"] == 1  # not redone
    assert state["phases"]["hosts"]["attempts"] == 2
    assert {n: v["status"] for n, v in state["nodes"].items()} == {
        **dict.fromkeys(lab.nodes[:3], "in_service"),
        bad: "failed",
    }, {n: v["reason"] for n, v in state["nodes"].items()}
    reason = state["nodes"][bad]["reason"]
    assert reason.startswith("gate: os_release: failed: expected ubuntu-22.04, got debian-12"), reason
    assert state["nodes"][bad]["last_good"] == "configured"
    assert f"node {bad} failed in acceptance: gate: os_release" in resumed.stderr
    kubelet = lab.bed.ssh(lab.bed.hosts[3], "cat /etc/default/kubelet").stdout
    assert "--register-with-taints=fjord.io/acceptance=pending:NoSchedule" in kubelet
    assert lab.bed.ssh(lab.bed.hosts[3], "test -e /var/lib/fjord/acceptance.json", check=False).returncode == 1
    # The scheduler phase read the control plane: every node registered, each with the acceptance taint.
    assert state["phases"]["scheduler"]["detail"] == (
        "h100 (kubernetes): control plane on localhost: 4 of 4 nodes registered, 4 with the acceptance taint"
    )
    # The Kubernetes API: the three accepted nodes uncordoned, the acceptance taint removed, labelled accepted with
    # the run; the node the gate kept out is as it registered (cordoned, tainted, not labelled accepted).
    for n in lab.nodes[:3]:
        cordoned, taints, labels = lab.k8s_node(n)
        assert not cordoned, n
        assert ACCEPTANCE_TAINT["key"] not in {t["key"] for t in taints}, (n, taints)
        assert (labels["fjord.io/accepted"], labels["fjord.io/acceptance-run"]) == ("true", run_id), labels
    assert lab.k8s_node(bad) == (
        True,
        [ACCEPTANCE_TAINT],
        {"kubernetes.io/hostname": bad, "fjord.io/accepted": "false"},
    )

    # 4. Resume after the fix: the node is checked again and enters service; nothing else is redone.
    final = lab.run("--resume", "--json")
    assert final.returncode == 0, final.stdout + final.stderr
    report = json.loads(final.stdout)
    assert report["status"] == "done"
    assert report["run"] == run_id
    assert {n: v["status"] for n, v in report["nodes"].items()} == dict.fromkeys(lab.nodes, "in_service")
    assert report["phases"]["hosts"]["attempts"] == 2  # done in step 3: not run again
    assert report["phases"]["acceptance"]["detail"].startswith("1 checked, 0 rejected by the gate; 1 of 1 put into")

    # The evidence, read back from the site's own S3: one object per node and an index for the run.
    index = lab.get(index_key(run_id))
    assert sorted(index["nodes"]) == sorted(lab.nodes)
    assert all(v["accepted"] for v in index["nodes"].values())
    keys = {o.key for o in lab.store.list(lab.bucket, prefix=f"acceptance/{run_id}/")}
    assert keys == {f"acceptance/{run_id}/{n}.json" for n in lab.nodes} | {index_key(run_id)}
    for n in lab.nodes:
        evidence = lab.get(index["nodes"][n]["evidence"])
        assert evidence["accepted"] is True
        assert evidence["node"] == n
        assert evidence["required"] == ["os_release"]
        decisions = {d["check"]: d for d in evidence["verdict"]["decisions"]}
        assert decisions["os_release"] == {"check": "os_release", "required": True, "status": "passed", "reason": ""}
        assert decisions["bf16_gemm"]["required"] is False
        assert decisions["bf16_gemm"]["status"] == "skipped"
        checks = {c["check"]: c for c in evidence["report"]["checks"]}
        assert checks["gpu_count"]["actual"] == "no NVIDIA GPU here: nvidia-smi is not installed"
        # The pair NCCL test ran through the acceptance play (pairs among the nodes checked together): on these
        # GPU-less hosts its leader says why it could not run; the node checked alone (step 4) had no partner.
        pair = checks["nccl_pair"]
        assert (pair["status"], pair["required"]) == ("skipped", False)
        if n == bad:
            assert pair["actual"].startswith("no other node under acceptance in its cluster"), pair
        else:
            assert "no NVIDIA GPU here: nvidia-smi is not installed" in pair["actual"], pair
        assert evidence["tools"]["os"] == "debian-12"
        assert evidence["catalog"]["sku"] == "H100-SXM"
        host = next(h for h in lab.bed.hosts if h.name == n)
        record = json.loads(lab.bed.ssh(host, "cat /var/lib/fjord/acceptance.json").stdout)
        assert record == {"run": run_id, "evidence": index["nodes"][n]["evidence"]}
        kubelet = lab.bed.ssh(host, "cat /etc/default/kubelet").stdout
        assert "register-with-taints" not in kubelet
        assert "--node-labels=fjord.io/accepted=true" in kubelet
    # ... and now the fixed node too, through the API.
    for n in lab.nodes:
        cordoned, taints, labels = lab.k8s_node(n)
        assert (cordoned, taints, labels["fjord.io/accepted"], labels["fjord.io/acceptance-run"]) == (
            False,
            [],
            "true",
            run_id,
        ), n
    handover = lab.get(f"bootstrap/{run_id}/handover.json")
    assert handover["counts"]["in_service"] == 4
    assert first_batch  # the first batch was not configured again: step 3 configured only the other two
    _secrets_absent(
        lab, out, err, again.stderr, resumed.stdout, resumed.stderr, final.stdout, final.stderr, json.dumps(state)
    )

    # 5. A rerun with nothing to do: a new run, no node touched.
    rerun = lab.run("--json")
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["run"] != run_id
    assert doc["phases"]["bare-metal"]["detail"] == "every node is provisioned already"
    assert doc["phases"]["acceptance"]["detail"] == "every node is in service already"
