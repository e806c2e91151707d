"""Who owns the GPU driver and the container toolkit on a cluster's nodes: the one switch both sides read.

`Cluster.gpu_stack` says 'host' (fjord's Ansible roles install and upgrade it) or 'operator' (the NVIDIA GPU
Operator does). The Kubernetes platform (`fjord.platform`) turns it into the GPU Operator's `driver.enabled` /
`toolkit.enabled`; the Ansible roles read `host_vars()` (`nvidia_driver_manage`,
`nvidia_container_toolkit_manage`). Both come from `gpu_stack_roles()`, so they cannot disagree: exactly one side
manages each part, and the other only verifies it.
"""

from __future__ import annotations

from typing import Literal

from fjord.spec.models import Cluster

Owner = Literal["host", "operator"]
PARTS = ("driver", "container_toolkit")


def gpu_stack_roles(cluster: Cluster) -> dict[str, Owner]:
    """Owner per part of the GPU stack: {"driver": "host"|"operator", "container_toolkit": ...}."""
    return {"driver": cluster.gpu_stack.driver, "container_toolkit": cluster.gpu_stack.container_toolkit}


def operator_manages(cluster: Cluster) -> dict[str, bool]:
    """What the GPU Operator deploys on this cluster's nodes, per part."""
    return {part: owner == "operator" for part, owner in gpu_stack_roles(cluster).items()}


def host_vars(cluster: Cluster) -> dict[str, bool]:
    """Variables the Ansible roles consume: `True` means the role installs and upgrades the part itself.

    `nvidia_driver_manage: false` / `nvidia_container_toolkit_manage: false` leave the part to the GPU Operator
    (the roles then only verify it).
    """
    roles = gpu_stack_roles(cluster)
    return {
        "nvidia_driver_manage": roles["driver"] == "host",
        "nvidia_container_toolkit_manage": roles["container_toolkit"] == "host",
    }
