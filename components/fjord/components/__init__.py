"""Pulumi ComponentResources: Site > Network, Storage, GpuCluster > ScalableUnit.

Components hold no logic of their own: they register what `fjord.sizing` computed. Anything that talks to
the outside world does so through adapters and dynamic providers, never from here.
"""

from fjord.components.gpu_cluster import (
    BareMetalArgs,
    GpuCluster,
    GpuClusterArgs,
    ScalableUnit,
    ScalableUnitArgs,
)
from fjord.components.network import Network, NetworkArgs
from fjord.components.site import Site, SiteArgs
from fjord.components.storage import Storage, StorageArgs

__all__ = [
    "BareMetalArgs",
    "GpuCluster",
    "GpuClusterArgs",
    "Network",
    "NetworkArgs",
    "ScalableUnit",
    "ScalableUnitArgs",
    "Site",
    "SiteArgs",
    "Storage",
    "StorageArgs",
]
