"""Storage: the site's storage tiers (parallel file system, object, block) as outputs for the platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from fjord.components._outputs import plain
from fjord.spec.models import StorageTier


@dataclass(frozen=True)
class StorageTierArgs:
    tier: StorageTier
    """The tier as the site describes it."""


class Tier(pulumi.ComponentResource):
    """One storage tier."""

    kind: pulumi.Output[str]

    def __init__(self, name: str, args: StorageTierArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:storage:Tier", name, None, opts)
        self.kind = plain(args.tier.kind)
        self.register_outputs({**args.tier.model_dump(), "kind": self.kind})


@dataclass(frozen=True)
class StorageArgs:
    tiers: tuple[StorageTier, ...]
    """The site's storage tiers, in the order the site lists them."""


class Storage(pulumi.ComponentResource):
    """The site's storage: one Tier child per tier; `tiers` maps tier name to its description."""

    tiers: pulumi.Output[dict[str, dict[str, Any]]]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:components:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for t in args.tiers:
            Tier(f"{name}-{t.name}", StorageTierArgs(t), child)
        self.tiers = plain({t.name: t.model_dump() for t in args.tiers})
        self.register_outputs({"tiers": self.tiers})
