"""What each storage tier offers the Kubernetes platform: the data its storage classes are made from.

Pure: a site's tiers in, one `TierOffer` per tier out. The platform turns a parallel-fs or block offer into a
StorageClass (name, access modes, volume modes, which one is the default); an object tier gets no
StorageClass but an S3 endpoint that workloads reach directly (bucket claims).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from fjord.spec.models import StorageTier

Interface = Literal["csi-filesystem", "csi-block", "s3"]


@dataclass(frozen=True)
class TierOffer:
    name: str
    """The tier's name; also the StorageClass name for parallel-fs and block tiers."""
    kind: Literal["parallel-fs", "object", "block"]
    capacity_pb: float
    hall: str
    endpoint: str | None
    """The S3 URL of an object tier (or a file system's service address, when the spec gives one)."""
    interface: Interface
    storage_class: str | None
    """StorageClass name, or None for an object tier (no PersistentVolumes: S3 buckets)."""
    access_modes: tuple[str, ...]
    volume_modes: tuple[str, ...]
    default: bool
    """The cluster's default StorageClass: the first block tier, else the first parallel-fs tier."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["access_modes"], d["volume_modes"] = list(self.access_modes), list(self.volume_modes)
        return d


_MODES: dict[str, tuple[Interface, tuple[str, ...], tuple[str, ...]]] = {
    "parallel-fs": ("csi-filesystem", ("ReadWriteMany", "ReadOnlyMany", "ReadWriteOnce"), ("Filesystem",)),
    "block": ("csi-block", ("ReadWriteOnce", "ReadWriteOncePod"), ("Filesystem", "Block")),
    "object": ("s3", (), ()),
}


def tier_offers(tiers: tuple[StorageTier, ...]) -> list[TierOffer]:
    """One offer per tier, in the site's order; at most one is the default StorageClass."""
    default = next((t.name for t in tiers if t.kind == "block"), None) or next(
        (t.name for t in tiers if t.kind == "parallel-fs"), None
    )
    offers = []
    for t in tiers:
        interface, access, volume = _MODES[t.kind]
        offers.append(
            TierOffer(
                name=t.name,
                kind=t.kind,
                capacity_pb=t.capacity_pb,
                hall=t.hall,
                endpoint=t.endpoint,
                interface=interface,
                storage_class=None if t.kind == "object" else t.name,
                access_modes=access,
                volume_modes=volume,
                default=t.name == default,
            )
        )
    return offers
