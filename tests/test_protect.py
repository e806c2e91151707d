"""`protect` on what deletion would destroy: clusters and tenant namespaces, unless the stack's fjord:allowRemove
lists the cluster; scalable units stay deletable, so that shrinking a cluster releases them.

The mock monitor records each registration's `protect` as the engine receives it.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from fjord.components.site import Site, SiteArgs
from fjord.plan.mocks import Registration
from fjord.sizing.site import size_site
from fjord.spec.load import load_site

from .conftest import stack_site

PROVIDER_SECRET = pulumi.Output.secret("bmc-password")


def register(allow_remove: tuple[str, ...] = ()) -> None:
    spec = load_site(stack_site("uk"))
    size = size_site(spec)

    @pulumi.runtime.test
    def run() -> Any:
        args = SiteArgs(spec=spec, size=size, bmc_password=PROVIDER_SECRET, allow_remove=allow_remove)
        return Site("uk", args).summary

    run()


def by_type(registrations: list[Registration], type_: str) -> dict[str, bool]:
    return {r.name: r.protect for r in registrations if r.type == type_}


def test_clusters_and_namespaces_are_protected_units_are_not(registrations: list[Registration]) -> None:
    register()
    assert by_type(registrations, "fjord:components:GpuCluster") == {"uk-h200": True, "uk-b200": True}
    namespaces = by_type(registrations, "kubernetes:core/v1:Namespace")
    assert namespaces
    assert set(namespaces.values()) == {True}
    for releasable in (
        "fjord:components:ScalableUnit",
        "pulumi-python:dynamic/baremetal:NodePool",
        "pulumi-python:dynamic/hosts:HostConfig",
        "pulumi-python:dynamic/hosts:ClusterRollout",
        "kubernetes:helm.sh/v3:Release",
    ):
        found = by_type(registrations, releasable)
        assert found, releasable
        assert set(found.values()) == {False}, releasable


def test_allow_remove_unprotects_exactly_that_cluster(registrations: list[Registration]) -> None:
    register(("b200",))
    assert by_type(registrations, "fjord:components:GpuCluster") == {"uk-h200": True, "uk-b200": False}
    assert set(by_type(registrations, "kubernetes:core/v1:Namespace").values()) == {False}  # b200's platform


def test_allow_remove_as_the_stack_file_and_pulumi_give_it() -> None:
    from fjord.spec.errors import SiteError
    from fjord.spec.load import parse_allow_remove

    assert parse_allow_remove(["h200", "b200"]) == ("h200", "b200")
    assert parse_allow_remove('["h200"]') == ("h200",)  # a list as Pulumi hands it to the program: JSON text
    assert parse_allow_remove("h200, b200") == ("h200", "b200")
    assert parse_allow_remove(None) == ()
    with pytest.raises(SiteError, match="must list cluster names"):
        parse_allow_remove({"h200": True})
