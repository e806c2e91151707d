"""The real Kubernetes API server of the tests (tests/kube_env.py) and what kubectl's cordon/drain does on it.

These are the semantics fjord's playbooks rely on (upgrade-gpu-stack.yml, enter-service.yml), checked against
kube-apiserver and kubectl of the release .ci/setup-kube.sh builds, not against a model of them.
"""

from __future__ import annotations

import pytest

from tests.kube_env import ApiError, KubeAPI, Kubelet, kube_version, place_workload

pytestmark = pytest.mark.kube


def test_the_server_is_the_pinned_release_behind_tls_and_a_token(kube_apiserver: KubeAPI) -> None:
    version = kube_apiserver.get("/version")
    assert version["gitVersion"] == kube_version()
    client = kube_apiserver.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{kube_version()}"' in client
    # Without the token the API answers 401: authentication is on, nothing is served anonymously but health.
    anonymous = KubeAPI(
        kube_apiserver.server, kube_apiserver.kubeconfig, kube_apiserver.kubectl_path, kube_apiserver.ca, "wrong"
    )
    with pytest.raises(ApiError) as refused:
        anonymous.get("/api/v1/nodes")
    assert refused.value.code == 401


def test_drain_cordons_evicts_the_workload_keeps_daemonsets_and_uncordon_returns(
    kube_apiserver: KubeAPI, kubelet: Kubelet
) -> None:
    node, other = "kube-env-n000", "kube-env-n001"
    for name in (node, other):
        registered = kubelet.register(name)
        ready = {c["type"]: c["status"] for c in registered["status"]["conditions"]}
        assert ready["Ready"] == "True"
    placed = place_workload(kube_apiserver, "kube-env", [node, other])
    daemon = {p["metadata"]["name"] for p in kube_apiserver.pods_on(node)} - set(placed[node])
    assert len(placed[node]) == 2
    assert len(daemon) == 1

    # Without --ignore-daemonsets kubectl refuses (the DaemonSet's pod would come straight back) and evicts nothing.
    refused = kube_apiserver.kubectl("drain", node, "--timeout=60s", check=False)
    assert refused.returncode != 0
    assert "DaemonSet-managed Pods" in refused.stderr
    assert kube_apiserver.cordoned(node)  # kubectl cordons first, then refuses to evict
    assert {p["metadata"]["name"] for p in kube_apiserver.pods_on(node)} == set(placed[node]) | daemon

    kube_apiserver.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
    assert kube_apiserver.cordoned(node)
    assert {p["metadata"]["name"] for p in kube_apiserver.pods_on(node)} == daemon
    # The pods went through the eviction API and a graceful delete the kubelet finished, one by one.
    assert {name.split("/")[1] for n, name, _ in kubelet.finalised if n == node} == set(placed[node])
    # The other node and its pods are untouched.
    assert not kube_apiserver.cordoned(other)
    assert {p["metadata"]["name"] for p in kube_apiserver.pods_on(other)} >= set(placed[other])

    kube_apiserver.kubectl("uncordon", node)
    assert not kube_apiserver.cordoned(node)
