"""The site model: what a site is, validated before anything is touched. Pure: no Pulumi, no I/O clients.

The names below are loaded on first use. Importing any `fjord.spec` module imports this package first, and
the commands that only read stack files (`fjord stacks`, `fjord plan`, whose worker validates) should not
pay for pydantic and the models (~80 ms).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fjord.spec.catalog import GPU_CATALOG, SWITCH_CATALOG, GpuSku, SwitchModel
    from fjord.spec.errors import Problem, SiteError
    from fjord.spec.load import StackConfig, load_site, read_stack
    from fjord.spec.models import Cluster, Fabric, Hall, IpPlan, Power, Site, Software, StorageTier

_HOMES = {
    "fjord.spec.catalog": ("GPU_CATALOG", "SWITCH_CATALOG", "GpuSku", "SwitchModel"),
    "fjord.spec.errors": ("Problem", "SiteError"),
    "fjord.spec.load": ("StackConfig", "load_site", "read_stack"),
    "fjord.spec.models": ("Cluster", "Fabric", "Hall", "IpPlan", "Power", "Site", "Software", "StorageTier"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
