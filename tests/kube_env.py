"""A real Kubernetes API server for tests: etcd and kube-apiserver built by .ci/setup-kube.sh, started here.

What runs (docs/testing.md, "Kubernetes API server"):
- `etcd` on 127.0.0.1 (free ports), its data in the session's temp folder;
- `kube-apiserver` on 127.0.0.1 with TLS (a serving certificate it makes for itself in --cert-dir, which the
  kubeconfig trusts as its CA), a random bearer token per session (static token file, user in `system:masters`),
  RBAC authorization, the service-account flags it requires (an RSA key made here with `cryptography`), and its
  default admission plugins;
- a kubeconfig in the temp folder for that token; `kubectl` from the same build.

No kubelet, scheduler or controller manager runs. What a kubelet would do to the API, `Kubelet` does, and only
that: it registers Node objects with status Ready, reports pods bound to its nodes as Running, and finishes the
graceful deletion of those pods (the kubelet deletes a terminating pod with grace period 0 once its containers
have stopped; with no containers, at once). Everything else (cordon, eviction, drain's filters, taints) is the
real API server's and kubectl's own behaviour.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BINARIES = ("etcd", "kube-apiserver", "kubectl")


class KubeUnavailable(RuntimeError):
    pass


class ApiError(RuntimeError):
    """An error status from the API server: its HTTP code and the Status object's message."""

    def __init__(self, method: str, path: str, code: int, message: str) -> None:
        super().__init__(f"{method} {path}: {code} {message}")
        self.code = code
        self.message = message


def kube_version() -> str:
    """The Kubernetes release .ci/kube/go.mod pins (what .ci/setup-kube.sh builds)."""
    text = (REPO / ".ci/kube/go.mod").read_text(encoding="utf-8")
    found = re.search(r"^require k8s\.io/kubernetes (v[0-9.]+)", text, re.MULTILINE)
    if found is None:
        raise KubeUnavailable("no 'require k8s.io/kubernetes vX.Y.Z' in .ci/kube/go.mod")
    return found.group(1)


def kube_bin() -> Path:
    """The folder holding etcd, kube-apiserver and kubectl of the pinned release."""
    cache = Path(os.environ.get("FJORD_KUBE_CACHE", "/var/cache/fjord-kube"))
    folder = cache / kube_version() / "bin"
    missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
    if missing:
        raise KubeUnavailable(f"{', '.join(missing)} not in {folder}: run .ci/setup-kube.sh")
    return folder


def require_kube() -> Path:
    """kube_bin(), or skip the test with the reason (fail under FJORD_REQUIRE_INTEGRATION=1, as in CI)."""
    try:
        return kube_bin()
    except KubeUnavailable as exc:
        if os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"a Kubernetes API server is required (FJORD_REQUIRE_INTEGRATION=1) but: {exc}")
        pytest.skip(f"Kubernetes API server: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _service_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


@dataclass
class KubeAPI:
    """A running API server: its address, a kubeconfig for it, kubectl, and a small REST client."""

    server: str
    kubeconfig: Path
    kubectl_path: Path
    ca: Path
    token: str = field(repr=False)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: rc {done.returncode}\n{done.stderr}")
        return done

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One API call; the decoded JSON answer. Raises ApiError on an error status."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode(errors="replace")
            try:
                message = str(json.loads(text).get("message", text))
            except ValueError:
                message = text
            raise ApiError(method, path, exc.code, message) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def node(self, name: str) -> dict[str, Any]:
        node: dict[str, Any] = self.get(f"/api/v1/nodes/{name}")
        return node

    def cordoned(self, name: str) -> bool:
        return bool(self.node(name).get("spec", {}).get("unschedulable", False))

    def pods_on(self, node: str, namespace: str | None = None) -> list[dict[str, Any]]:
        where = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        items: list[dict[str, Any]] = self.get(f"{where}?fieldSelector=spec.nodeName%3D{node}")["items"]
        return items

    def ready(self) -> bool:
        try:
            req = urllib.request.Request(self.server + "/readyz")
            req.add_header("Authorization", f"Bearer {self.token}")
            context = ssl.create_default_context(cafile=str(self.ca))
            with urllib.request.urlopen(req, context=context, timeout=5) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False


class Kubelet:
    """What the kubelets of the registered nodes would do through the API, and nothing more.

    `register(name)` creates the Node object with the labels given and status Ready (a kubelet's registration and
    first status update). A background thread reports each pod bound to a registered node as Running and Ready
    (the kubelet's status update once the containers started), and finishes the graceful deletion of such pods:
    a pod with a deletionTimestamp is deleted with gracePeriodSeconds=0 and its UID as precondition, which is
    the kubelet's last step once the pod's containers have stopped (here there are none to stop).
    """

    def __init__(self, api: KubeAPI, interval_s: float = 0.2) -> None:
        self.api = api
        self.nodes: set[str] = set()
        self.finalised: list[tuple[str, str, str]] = []
        """(node, namespace/name, uid) of each pod whose deletion this kubelet finished, in order."""
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-kubelet", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def register(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        }
        try:
            self.api.request("POST", "/api/v1/nodes", body)
        except ApiError as exc:
            if exc.code != 409:  # already registered: a kubelet restarting updates its status only
                raise
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "capacity": {"cpu": "224", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "8"},
                "allocatable": {"cpu": "220", "memory": "2000Gi", "pods": "110", "nvidia.com/gpu": "8"},
            }
        }
        node: dict[str, Any] = self.api.request(
            "PATCH", f"/api/v1/nodes/{name}/status", status, "application/merge-patch+json"
        )
        with self._lock:
            self.nodes.add(name)
        return node

    def _run(self, pod: dict[str, Any]) -> None:
        """Report a pod bound to one of its nodes as running and ready (what the kubelet posts once the pod's
        containers have started)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta = pod["metadata"]
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        containers = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        status = {
            "status": {
                "phase": "Running",
                "startTime": now,
                "conditions": conditions,
                "containerStatuses": containers,
            }
        }
        self.api.request(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            status,
            "application/merge-patch+json",
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(OSError, ApiError, ValueError):
                self._finish_deletions()

    def _finish_deletions(self) -> None:
        with self._lock:
            nodes = set(self.nodes)
        for pod in self.api.get("/api/v1/pods")["items"]:
            meta, node = pod["metadata"], pod.get("spec", {}).get("nodeName", "")
            if node not in nodes:
                continue
            if not meta.get("deletionTimestamp"):
                if pod.get("status", {}).get("phase", "Pending") == "Pending":
                    self._run(pod)
                continue
            body = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]},
            }
            try:
                self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
                continue
            self.finalised.append((node, f"{meta['namespace']}/{meta['name']}", meta["uid"]))


def _wait(proc: subprocess.Popen[bytes], ok: Any, what: str, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KubeUnavailable(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        if ok():
            return
        time.sleep(0.2)
    raise KubeUnavailable(f"{what} not ready in {timeout_s:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def kube_apiserver(tmp: Path, bin_dir: Path | None = None) -> Iterator[KubeAPI]:
    """Start etcd and kube-apiserver under `tmp`, wait for /readyz, yield the API; stop both on exit."""
    bin_dir = bin_dir or kube_bin()
    tmp.mkdir(parents=True, exist_ok=True)
    etcd_port, etcd_peer, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd_log = tmp / "etcd.log"
    api_log = tmp / "kube-apiserver.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with etcd_log.open("wb") as out:
            etcd = subprocess.Popen(
                [
                    str(bin_dir / "etcd"),
                    "--name=fjord-test",
                    f"--data-dir={tmp / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-cluster=fjord-test=http://127.0.0.1:{etcd_peer}",
                    "--unsafe-no-fsync",  # a test's throwaway store: no fsync per write on the shared disk
                    "--log-level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(etcd)

        def etcd_healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{etcd_url}/health", timeout=2) as answer:
                    return bool(json.loads(answer.read()).get("health") == "true")
            except (OSError, urllib.error.URLError, ValueError):
                return False

        _wait(etcd, etcd_healthy, "etcd", etcd_log)

        token = secrets.token_hex(24)
        tokens = tmp / "tokens.csv"
        tokens.write_text(f'{token},fjord-test-admin,fjord-test-admin,"system:masters"\n', encoding="utf-8")
        tokens.chmod(0o600)
        sa_key = tmp / "sa.key"
        _service_account_key(sa_key)
        certs = tmp / "certs"
        with api_log.open("wb") as out:
            api = subprocess.Popen(
                [
                    str(bin_dir / "kube-apiserver"),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    # The `kubernetes` Service's endpoints would name the advertised address, which may not be a
                    # loopback one; nothing in the tests runs in a pod, so no endpoints are kept.
                    "--endpoint-reconciler-type=none",
                    f"--secure-port={api_port}",
                    f"--cert-dir={certs}",
                    f"--token-auth-file={tokens}",
                    "--authorization-mode=RBAC",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    f"--service-account-key-file={sa_key}",
                    f"--service-account-signing-key-file={sa_key}",
                    "--api-audiences=https://kubernetes.default.svc",
                    "--v=1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(api)
        kube = KubeAPI(
            server=f"https://127.0.0.1:{api_port}",
            kubeconfig=tmp / "kubeconfig",
            kubectl_path=bin_dir / "kubectl",
            ca=certs / "apiserver.crt",
            token=token,
        )
        # The serving certificate appears in --cert-dir before the port opens; /readyz needs it to be trusted.
        _wait(api, lambda: kube.ca.is_file() and kube.ready(), "kube-apiserver", api_log, timeout_s=180)
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fjord-test",
                    "cluster": {
                        "server": kube.server,
                        "certificate-authority-data": base64.b64encode(kube.ca.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "fjord-test-admin", "user": {"token": token}}],
            "contexts": [{"name": "fjord-test", "context": {"cluster": "fjord-test", "user": "fjord-test-admin"}}],
            "current-context": "fjord-test",
        }
        kube.kubeconfig.write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
        kube.kubeconfig.chmod(0o600)
        yield kube
    finally:
        for proc in reversed(procs):
            _stop(proc)


def kubectl_on_path(kube: KubeAPI, folder: Path) -> Path:
    """A folder holding only `kubectl` (a link to the built one): put it on PATH where a playbook runs kubectl."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "kubectl"
    if not link.exists():
        link.symlink_to(kube.kubectl_path)
    return folder


def place_workload(api: KubeAPI, namespace: str, nodes: list[str], per_node: int = 2) -> dict[str, list[str]]:
    """A training job's pods on `nodes` as a cluster would run them: a namespace with its default service account
    (the controller manager's job, done here), a ReplicaSet owning `per_node` pods on each node and a DaemonSet
    (say, the GPU operator's device plugin) owning one pod on each node, each pod bound to its node as the
    scheduler would bind it. No controller runs: evicted pods are not recreated. Returns node -> the
    ReplicaSet's pod names (what a drain must evict; the DaemonSet's pods stay, as `--ignore-daemonsets` says)."""
    with contextlib.suppress(ApiError):
        api.request(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
    with contextlib.suppress(ApiError):
        api.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        )
    labels = {"app": "train"}
    template: dict[str, Any] = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.testbed.local/train:1"}]},
    }
    owners: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any]
    for kind, plural, extra in (
        ("ReplicaSet", "replicasets", {"replicas": per_node * len(nodes)}),
        ("DaemonSet", "daemonsets", {}),
    ):
        name = f"{kind.lower()}-{secrets.token_hex(3)}"
        body = {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": labels | {"owner": name}},
                "template": template | {"metadata": {"labels": labels | {"owner": name}}},
                **extra,
            },
        }
        owners[kind] = api.request("POST", f"/apis/apps/v1/namespaces/{namespace}/{plural}", body)
    placed: dict[str, list[str]] = {}
    for node in nodes:
        for kind, count in (("ReplicaSet", per_node), ("DaemonSet", 1)):
            owner = owners[kind]["metadata"]
            for _ in range(count):
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "generateName": f"{owner['name']}-",
                        "labels": labels | {"owner": owner["name"]},
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": kind,
                                "name": owner["name"],
                                "uid": owner["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": template["spec"] | {"nodeName": node},
                }
                made = api.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
                if kind == "ReplicaSet":
                    placed.setdefault(node, []).append(made["metadata"]["name"])
    return placed
