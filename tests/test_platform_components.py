"""The Platform component under Pulumi's mocks: every Kubernetes GPU cluster gets the operators, quotas match
the spec, nothing is registered twice, the ownership switch reaches the Helm release, the kubeconfig stays secret."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.components.platform import Platform
from fjord.components.site import Site, SiteArgs
from fjord.plan.mocks import Registration
from fjord.sizing.site import size_site
from fjord.spec.load import load_site
from fjord.spec.ownership import host_vars

from .conftest import MONITOR, STACKS, stack_site


def build(raw: dict[str, Any], name: str) -> Site:
    spec = load_site(raw)
    built: list[Site] = []

    @pulumi.runtime.test
    def run() -> Any:
        built.append(Site(name, SiteArgs(spec=spec, size=size_site(spec))))
        return built[0].summary

    run()
    return built[0]


def resolve(output: pulumi.Output[Any]) -> Any:
    got: list[Any] = []

    @pulumi.runtime.test
    def run() -> Any:
        return output.apply(got.append)

    run()
    return got[0]


def test_every_kubernetes_cluster_gets_the_operators(registrations: list[Registration]) -> None:
    site = build(stack_site("narvik"), "narvik")
    assert MONITOR.duplicates == []
    urns = [r.urn for r in registrations]
    assert len(urns) == len(set(urns))
    assert len(urns) < 2000
    by_urn = {r.urn: r for r in registrations}
    platforms = [r for r in registrations if r.type == "fjord:components:Platform"]
    assert sorted(by_urn[p.parent].name for p in platforms) == ["narvik-gb200-a", "narvik-gb300-a", "narvik-gb300-b"]
    assert site.clusters["gb200-b"].platform is None  # Slurm
    releases = Counter(
        (by_urn[r.parent].name, r.name.removeprefix(by_urn[r.parent].name + "-"))
        for r in registrations
        if r.type == "kubernetes:helm.sh/v3:Release"
    )
    for cluster in ("gb200-a", "gb300-a", "gb300-b"):
        for chart in ("gpu-operator", "network-operator", "kueue"):
            assert releases[(f"narvik-{cluster}-platform", chart)] == 1
    for p in platforms:  # one provider per cluster, every object a child of its cluster's platform
        kids = [r for r in registrations if r.parent == p.urn]
        assert sum(k.type == "pulumi:providers:kubernetes" for k in kids) == 1
        assert sum(k.type == "kubernetes:mellanox.com/v1alpha1:NicClusterPolicy" for k in kids) == 1


def test_quotas_registered_match_the_spec(registrations: list[Registration]) -> None:
    raw = stack_site("uk")
    site = build(raw, "uk")
    platform = site.clusters["b200"].platform
    assert isinstance(platform, Platform)
    expected = {f"tenant-{t['name']}": q["gpus"] for t in raw["tenants"] for q in t.get("gpu_quotas", [])}
    got = {}
    for key, res in platform.objects.items():
        if key.startswith("ResourceQuota/"):
            spec = resolve(res.spec)  # type: ignore[attr-defined]
            got[key.split("/")[1]] = int(spec["hard"]["requests.nvidia.com/gpu"])
    assert got == expected == {"tenant-sovereign-ai": 3072, "tenant-universities": 1024}
    assert resolve(platform.tenant_quotas) == {"sovereign-ai": 3072, "universities": 1024}


@pytest.mark.parametrize("owner", ["host", "operator"])
def test_ownership_switch_reaches_the_helm_release(registrations: list[Registration], owner: str) -> None:
    raw = stack_site("uk")
    raw["clusters"][1]["gpu_stack"] = {"driver": owner, "container_toolkit": owner}
    site = build(raw, "uk")
    platform = site.clusters["b200"].platform
    assert isinstance(platform, Platform)
    values = resolve(platform.releases["gpu-operator"].values)
    ansible = host_vars(load_site(raw).clusters[1])
    assert values["driver"]["enabled"] is (owner == "operator") is not ansible["nvidia_driver_manage"]
    assert values["toolkit"]["enabled"] is (owner == "operator") is not ansible["nvidia_container_toolkit_manage"]


def test_kubeconfig_comes_from_a_secret(registrations: list[Registration]) -> None:
    kubeconfig = "apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: s3cr3t-token}}]\n"
    pulumi.runtime.set_all_config({"fjord:kubeconfig-h100": kubeconfig}, secret_keys=["fjord:kubeconfig-h100"])
    try:
        site = build(stack_site("dev"), "dev")
    finally:
        pulumi.runtime.set_all_config({})
    platform = site.clusters["h100"].platform
    assert isinstance(platform, Platform)
    assert platform.kubeconfig is not None
    checked: list[tuple[bool, str]] = []

    @pulumi.runtime.test
    def run() -> Any:
        kc = platform.kubeconfig
        assert kc is not None

        async def check(value: str) -> None:
            checked.append((await kc.is_secret(), value))

        return kc.apply(check)

    run()
    assert checked == [(True, kubeconfig)]
    # Without the secret, the provider uses the cluster's own named context, never the current one.
    plain_site = build(stack_site("dev"), "dev")
    assert plain_site.clusters["h100"].platform is not None
    assert plain_site.clusters["h100"].platform.kubeconfig is None


def test_plan_and_render_never_show_the_kubeconfig(tmp_path: Path) -> None:
    """A stack's encrypted kubeconfig is opaque to the offline plan and render: neither prints it."""
    doc = yaml.safe_load((STACKS / "Pulumi.uk.yaml").read_text())
    ciphertext = "v1:ZmpvcmQta3ViZWNvbmZpZy1jaXBoZXJ0ZXh0LXNob3VsZC1uZXZlci1sZWFr"
    doc["config"]["fjord:kubeconfig-b200"] = {"secure": ciphertext}
    (tmp_path / "Pulumi.uk.yaml").write_text(yaml.safe_dump(doc))
    shutil.copy(STACKS / "Pulumi.uk.alloc.yaml", tmp_path)  # the program requires the allocation record
    runner = CliRunner()
    plan = runner.invoke(app, ["plan", "uk", "--stacks-dir", str(tmp_path), "--json"])
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.stdout)
    assert data["plans"][0]["by_type"]["kubernetes:helm.sh/v3:Release"] == 3
    out = tmp_path / "out"
    render = runner.invoke(app, ["render", "uk", "b200", "--stacks-dir", str(tmp_path), "--out", str(out)])
    assert render.exit_code == 0, render.output
    for text in [plan.output, render.output, *(p.read_text() for p in out.rglob("*") if p.is_file())]:
        assert ciphertext not in text


def test_render_writes_valid_manifests_and_values(tmp_path: Path) -> None:
    from .platform_schemas import chart_defaults, unknown_value_paths, validate_object

    out = tmp_path / "b200"
    (out / "manifests").mkdir(parents=True)
    stale = out / "manifests" / "99-configmap-old.yaml"
    stale.write_text("{}")
    result = CliRunner().invoke(app, ["render", "uk", "b200", "--stacks-dir", str(STACKS), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not stale.exists()  # re-rendering replaces what fjord wrote before
    manifests = sorted((out / "manifests").glob("*.yaml"))
    objects = [yaml.safe_load(p.read_text()) for p in manifests]
    assert [o["kind"] for o in objects[:5]] == ["Namespace"] * 5  # namespaces first
    for obj in objects:
        validate_object(obj, "1.32")
    quotas = {o["metadata"]["namespace"]: o["spec"]["hard"] for o in objects if o["kind"] == "ResourceQuota"}
    assert quotas == {
        "tenant-sovereign-ai": {"requests.nvidia.com/gpu": "3072"},
        "tenant-universities": {"requests.nvidia.com/gpu": "1024"},
    }
    values = yaml.safe_load((out / "helm" / "gpu-operator.values.yaml").read_text())
    assert values["driver"]["enabled"] is True  # uk's b200: the operator owns the driver
    assert unknown_value_paths(values, chart_defaults("gpu-operator")) == []
    assert yaml.safe_load((out / "host_vars.yaml").read_text()) == {
        "nvidia_driver_manage": False,
        "nvidia_container_toolkit_manage": False,
    }
    releases = yaml.safe_load((out / "helm" / "releases.yaml").read_text())["releases"]
    assert {r["name"]: r["version"] for r in releases}["gpu-operator"].startswith("v")


@pytest.mark.parametrize(
    ("cluster", "message"),
    [("h200", "'h200' is scheduled by slurm; allowed: b200"), ("nope", "'nope' is not a cluster of this site")],
)
def test_render_rejects_clusters_without_a_platform(tmp_path: Path, cluster: str, message: str) -> None:
    result = CliRunner().invoke(
        app, ["render", "uk", cluster, "--stacks-dir", str(STACKS), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert message in result.stderr
    assert not (tmp_path / "x").exists()
