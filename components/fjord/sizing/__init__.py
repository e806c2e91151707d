"""Sizing: pure functions from a Site to counts, placements, addresses and power. No Pulumi, no I/O."""

from fjord.sizing.fabric import FabricSize, size_fabric
from fjord.sizing.site import ClusterSize, Node, ScalableUnitSize, SiteSize, size_site

__all__ = ["ClusterSize", "FabricSize", "Node", "ScalableUnitSize", "SiteSize", "size_fabric", "size_site"]
