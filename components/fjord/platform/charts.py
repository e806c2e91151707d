"""Pinned Helm charts and component images of the Kubernetes GPU platform, and the air-gap mirror rule.

Every version lives here, once. The chart values fjord sets are checked in tests against the vendor
values.yaml and CRDs in ../shared/schemas (see `tests/test_platform.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fjord.spec.catalog import OPERATOR_DRIVER_RELEASES
from fjord.spec.models import AirGap

NVIDIA_HELM = "https://helm.ngc.nvidia.com/nvidia"


@dataclass(frozen=True, slots=True)
class ChartRef:
    """A released chart: its name, pinned version and upstream repository (https index or oci:// path)."""

    name: str
    version: str
    repository: str


GPU_OPERATOR = ChartRef("gpu-operator", "v25.3.0", NVIDIA_HELM)
NETWORK_OPERATOR = ChartRef("network-operator", "25.7.0", NVIDIA_HELM)
KUEUE = ChartRef("kueue", "0.13.4", "oci://registry.k8s.io/kueue/charts")

MELLANOX_IMAGES = "nvcr.io/nvidia/mellanox"
NETWORK_COMPONENT_TAG = f"network-operator-v{NETWORK_OPERATOR.version}"
"""The Network Operator release tags the images it deploys (multus, CNI plugins, RDMA plugin, ...) so."""
DOCA_DRIVER_VERSION = "doca3.1.0-25.07-0.9.7.0-0"
"""The DOCA-OFED driver container the Network Operator 25.7.0 release ships with."""
KUEUE_IMAGE = "registry.k8s.io/kueue/kueue"

DRIVER_RELEASES = OPERATOR_DRIVER_RELEASES
"""A datacenter driver release per branch, for clusters whose GPU Operator owns the driver (in the catalog, where
validation checks a site against it)."""


def chart_source(chart: ChartRef, air_gap: AirGap | None) -> tuple[str, str | None]:
    """(chart, repository) as `helm install` takes them: a name with an https repository, or a full oci:// ref.

    An air-gapped site serves every chart from its own chart repository (`air_gap.charts`).
    """
    repo = air_gap.charts.rstrip("/") if air_gap else chart.repository
    if repo.startswith("oci://"):
        return f"{repo}/{chart.name}", None
    return chart.name, repo


def mirror(image: str, air_gap: AirGap | None) -> str:
    """An image repository (or full image reference) as the site pulls it.

    Without an air gap: unchanged. With one: the site registry mirrors upstream repositories by path, the
    upstream host dropped (`nvcr.io/nvidia/k8s` -> `<registry>/nvidia/k8s`).
    """
    if air_gap is None:
        return image
    head, _, path = image.partition("/")
    if "." not in head and ":" not in head and head != "localhost":  # no registry host: Docker Hub library path
        path = image
    return f"{air_gap.registry.rstrip('/')}/{path}"
