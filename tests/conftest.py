"""Shared test set-up: Pulumi's mock runtime (set before any program module is imported), site helpers, and
the labs several modules start: sushy-emulator BMCs (tests/redfish_lab.py) and a Ceph RGW (tests/ceph_cluster.py).

The mock root stack persists for the whole process, so every test that registers resources reads the
registrations it made through the `registrations` fixture, which clears the record first.

A lab that cannot start skips its tests with the reason, except under FJORD_REQUIRE_INTEGRATION=1 (CI), where
that fails them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pytest

from fjord.plan.mocks import PlanMocks, RecordingMonitor, Registration
from tests.kube_env import KubeAPI, Kubelet, require_kube
from tests.kube_env import kube_apiserver as start_kube_apiserver

if TYPE_CHECKING:
    from .ceph_cluster import CephCluster
    from .redfish_lab import Emulator, FaultProxy

REPO = Path(__file__).resolve().parents[1]
STACKS = REPO / "stacks"


# The tests run under the same mocks as `fjord plan`, so they check what the plan shows.
MOCKS = PlanMocks()
MONITOR = RecordingMonitor(MOCKS)
pulumi.runtime.set_mocks(MOCKS, project="fjord", stack="test", preview=False, monitor=MONITOR)


@pytest.fixture(autouse=True, scope="session")
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """fjord's per-machine state (the multipart upload journal) goes to a temp dir, not the user's home."""
    os.environ.setdefault("FJORD_STATE_DIR", str(tmp_path_factory.mktemp("fjord-state")))


@pytest.fixture
def registrations() -> list[Registration]:
    """The resources registered during the test (the monitor's record, cleared before the test)."""
    MONITOR.reset()
    return MONITOR.registrations


@pytest.fixture
def dev_site() -> dict[str, Any]:
    from fjord.spec.load import default_site

    return copy.deepcopy(default_site())


def stack_site(name: str) -> dict[str, Any]:
    from fjord.spec.load import read_stack

    return copy.deepcopy(read_stack(name, STACKS).site)


def integration_required() -> bool:
    """CI sets FJORD_REQUIRE_INTEGRATION=1: a lab that cannot start fails the tests there instead of skipping."""
    return os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1"


DEV_NODES = [f"dev-h100-su000-n{i:03d}" for i in range(4)]
"""The embedded dev site's nodes (its one H100 unit)."""


def emulated_bmcs(systems: list[dict[str, Any]]) -> Iterator[Emulator]:
    """A sushy-emulator serving `systems` (redfish_lab.fake_system), stopped afterwards; for a fixture to yield from."""
    from .redfish_lab import Emulator

    em = Emulator(systems)
    try:
        em.start()
    except (OSError, RuntimeError) as exc:
        em.stop()
        if integration_required():
            pytest.fail(f"sushy-emulator did not start: {exc}")
        pytest.skip(f"sushy-emulator did not start: {exc}")
    try:
        yield em
    finally:
        em.stop()


@pytest.fixture(scope="module")
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """One sushy-emulator for the test module, serving the systems the module lists in `EMULATED`."""
    yield from emulated_bmcs(request.module.EMULATED)


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    """The fault-injecting proxy (redfish_lab.FaultProxy) in front of the module's emulator, for one test."""
    from .redfish_lab import FaultProxy

    p = FaultProxy(emulator.url).start()
    yield p
    p.stop()


@pytest.fixture
def dev_bmcs() -> Iterator[Emulator]:
    """A fresh emulator for each test serving the dev site's four nodes, powered off (the engine tests stop and
    resume it, and power nodes on)."""
    from .redfish_lab import fake_system

    yield from emulated_bmcs([fake_system(n, i) for i, n in enumerate(DEV_NODES)])


@pytest.fixture(scope="module")
def engine() -> Path:
    """The folder of the Pulumi CLI .ci/setup-pulumi.sh builds; without it the module skips (fails in CI). Engine
    modules use it first (`usefixtures`), so that no lab starts for tests that cannot run."""
    from .engine_env import require_engine

    return require_engine()


@pytest.fixture(scope="module")
def ceph() -> Iterator[CephCluster]:
    """A single-node Ceph cluster with RGW for the test module (2 GiB memstore), torn down at its end, also on
    failure; the teardown itself is checked (nothing left running, its folder gone)."""
    from .ceph_cluster import CephCluster, CephUnavailable, missing_binaries

    missing = missing_binaries()
    if missing and not integration_required():
        pytest.skip(f"Ceph is not installed ({', '.join(missing)}); run .ci/setup-ceph.sh as root")
    cluster = CephCluster(memstore_gib=2)
    try:
        cluster.start()
    except CephUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.dir.exists()
    assert all(p.poll() is not None for p in cluster.procs.values())


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A real etcd + kube-apiserver for the session (tests/kube_env.py): `.kubeconfig`, `.kubectl_path`, REST calls.
    Skipped with the reason where .ci/setup-kube.sh has not built them; fails under FJORD_REQUIRE_INTEGRATION=1."""
    bin_dir = require_kube()
    with start_kube_apiserver(tmp_path_factory.mktemp("kube-apiserver"), bin_dir) as api:
        yield api


@pytest.fixture(scope="session")
def kubelet(kube_apiserver: KubeAPI) -> Iterator[Kubelet]:
    """Plays the kubelets of the nodes a test registers, through the API only (see tests/kube_env.Kubelet)."""
    kubelet = Kubelet(kube_apiserver)
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()
