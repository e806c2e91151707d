"""The site model: what a site is, validated before anything is touched. Pure: no Pulumi, no I/O clients."""

from fjord.spec.catalog import GPU_CATALOG, SWITCH_CATALOG, GpuSku, SwitchModel
from fjord.spec.errors import Problem, SiteError
from fjord.spec.load import StackConfig, load_site, read_stack
from fjord.spec.models import Cluster, Fabric, Hall, IpPlan, Power, Site, Software, StorageTier

__all__ = [
    "GPU_CATALOG",
    "SWITCH_CATALOG",
    "Cluster",
    "Fabric",
    "GpuSku",
    "Hall",
    "IpPlan",
    "Power",
    "Problem",
    "Site",
    "SiteError",
    "Software",
    "StackConfig",
    "StorageTier",
    "SwitchModel",
    "load_site",
    "read_stack",
]
