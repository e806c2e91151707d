"""Storage: the site's storage tiers (parallel file system, object, block) as outputs for the platform.

`Storage.offers` is the list the Kubernetes platform builds its storage classes from, one dict per tier
(`fjord.sizing.storage.TierOffer.as_dict()`):

    {"name": "vast", "kind": "parallel-fs", "capacity_pb": 12.0, "hall": "hall-1", "endpoint": None,
     "interface": "csi-filesystem", "storage_class": "vast", "access_modes": ["ReadWriteMany", ...],
     "volume_modes": ["Filesystem"], "default": True}

An object tier has `interface: "s3"`, its `endpoint`, and `storage_class: None` (buckets, not volumes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from fjord.components._outputs import plain
from fjord.sizing.storage import TierOffer, tier_offers
from fjord.spec.models import StorageTier


@dataclass(frozen=True)
class StorageTierArgs:
    offer: TierOffer
    """What the tier offers the platform (from `fjord.sizing.storage.tier_offers`)."""


class Tier(pulumi.ComponentResource):
    """One storage tier, with what it offers the platform as typed outputs."""

    kind: pulumi.Output[str]
    capacity_pb: pulumi.Output[float]
    endpoint: pulumi.Output[str | None]
    storage_class: pulumi.Output[str | None]
    offer: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: StorageTierArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:storage:Tier", name, None, opts)
        o = args.offer
        self.kind = plain(o.kind)
        self.capacity_pb = plain(o.capacity_pb)
        self.endpoint = plain(o.endpoint)
        self.storage_class = plain(o.storage_class)
        self.offer = plain(o.as_dict())
        self.register_outputs({"offer": self.offer})


@dataclass(frozen=True)
class StorageArgs:
    tiers: tuple[StorageTier, ...]
    """The site's storage tiers, in the order the site lists them."""


class Storage(pulumi.ComponentResource):
    """The site's storage: one Tier child per tier; `offers` lists what each offers the platform, and `tiers`
    maps tier name to its description as the site gives it."""

    tier_resources: dict[str, Tier]
    tiers: pulumi.Output[dict[str, dict[str, Any]]]
    offers: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:components:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        offers = tier_offers(args.tiers)
        self.tier_resources = {o.name: Tier(f"{name}-{o.name}", StorageTierArgs(o), child) for o in offers}
        self.tiers = plain({t.name: t.model_dump() for t in args.tiers})
        self.offers = plain([o.as_dict() for o in offers])
        self.register_outputs({"tiers": self.tiers, "offers": self.offers})
