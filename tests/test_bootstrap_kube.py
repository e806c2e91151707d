"""The Kubernetes control plane in `fjord bootstrap`'s scheduler phase: the API's node objects read on the control
plane host (kube-nodes.yml, kubectl) and what they say (fjord.bootstrap.kube, pure), against the tests' real
kube-apiserver (tests/kube_env.py). What enter-service does to the nodes through the API after the gate is in
tests/test_bootstrap_e2e.py."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fjord.bootstrap.kube import registration
from fjord.bootstrap.plan import NodeState
from tests.kube_env import ApiError, KubeAPI, Kubelet, kubectl_on_path

TAINT = {"key": "fjord.io/acceptance", "value": "pending", "effect": "NoSchedule"}


def forget_nodes(api: KubeAPI, names: list[str]) -> None:
    """Delete these Node objects (the API server is the session's: another test may have registered them)."""
    for n in names:
        try:
            api.request("DELETE", f"/api/v1/nodes/{n}")
        except ApiError as exc:
            if exc.code != 404:
                raise


def _node(name: str, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"taints": taints} if taints is not None else {}}


def test_registration_names_nodes_that_could_take_work_before_acceptance() -> None:
    api = {"items": [_node("a", [TAINT]), _node("b"), _node("c"), _node("other")]}
    seen = registration(api, ["a", "b", "c", "d"], accepted=["c"])
    assert seen.registered == ("a", "b", "c")
    assert seen.tainted == ("a",)
    assert seen.missing == ("d",)
    assert seen.untainted_pending == ("b",)  # c is untainted because the gate let it in
    assert seen.line() == "3 of 4 nodes registered, 1 with the acceptance taint; without it before acceptance: b"
    assert registration({}, ["a"], []).line() == "0 of 1 nodes registered, 0 with the acceptance taint"


@pytest.mark.kube
def test_the_scheduler_phase_reads_the_registration_from_the_api_server(
    kube_apiserver: KubeAPI,
    kubelet: Kubelet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from fjord.cli.bootstrap import PhaseFailed, Run, _kube_registration
    from fjord.sizing.site import size_site
    from fjord.spec.load import default_site, load_site

    site = load_site(default_site())
    size = size_site(site)
    nodes = [h.name for h in size.hosts()][:3]
    # Registered as their kubelets would (through the API; there is no kubelet): two with the acceptance taint,
    # one without it; the third node has not joined.
    forget_nodes(kube_apiserver, nodes)
    request.addfinalizer(lambda: forget_nodes(kube_apiserver, nodes))
    for n, taints in ((nodes[0], [TAINT]), (nodes[1], [])):
        kubelet.register(n)
        kube_apiserver.request(
            "PATCH", f"/api/v1/nodes/{n}", {"spec": {"taints": taints}}, "application/merge-patch+json"
        )
    monkeypatch.setenv("PATH", f"{kubectl_on_path(kube_apiserver, tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    run: Any = SimpleNamespace(
        site=site,
        size=size,
        host_vars={},
        extra_vars={"fjord_kube_host": "localhost", "fjord_kubeconfig": str(kube_apiserver.kubeconfig)},
        playbooks_dir=None,
        states={n: NodeState() for n in nodes},
    )
    run.node = lambda n: run.states[n]
    run.inventory = lambda names: Run.inventory(run, names)
    run.playbook = lambda playbook, names, extra=None: Run.playbook(run, playbook, names, extra)

    with pytest.raises(PhaseFailed) as info:
        _kube_registration(run, "h100", nodes, "localhost")
    assert str(info.value).startswith(
        f"h100 (kubernetes): 2 of 3 nodes registered, 1 with the acceptance taint; without it before acceptance:"
        f" {nodes[1]} (they could take work before the acceptance gate"
    )
    # Accepted by the gate, the untainted node is where it should be.
    run.states[nodes[1]] = NodeState("accepted", "accepted", "acceptance")
    assert _kube_registration(run, "h100", nodes, "localhost") == "2 of 3 nodes registered, 1 with the acceptance taint"

    # A control plane that does not answer (a wrong kubeconfig) stops the phase, saying so.
    run.extra_vars["fjord_kubeconfig"] = str(tmp_path / "missing-kubeconfig")
    with pytest.raises(PhaseFailed, match=r"h100 \(kubernetes\): the control plane on localhost did not answer: "):
        _kube_registration(run, "h100", nodes, "localhost")
