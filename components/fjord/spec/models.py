"""The site description: pydantic v2 models, frozen, unknown keys rejected, cross-field rules checked.

A site is read from the structured stack config `fjord:site` in `stacks/Pulumi.<stack>.yaml`. The models
check what can be checked from the description alone; checks that need sizing (power, address space,
hall capacity) live in `fjord.sizing` and run before anything is registered.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from fjord.spec.catalog import (
    CUDA_MIN_DRIVER_BRANCH,
    GPU_CATALOG,
    OPERATOR_DRIVER_RELEASES,
    SWITCH_CATALOG,
    GpuSku,
    SwitchModel,
)
from fjord.spec.errors import HIDDEN, Problem, SpecProblems


def _matching(regex: str, allowed: str) -> BeforeValidator:
    """A string check whose error says what is allowed, in words rather than as a regular expression."""
    compiled = re.compile(regex)

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a quoted string (YAML reads 1.30 as the number 1.3); allowed: {allowed}")
        if not compiled.fullmatch(value):
            raise ValueError(f"invalid value; allowed: {allowed}")
        return value

    # Editors validating a stack file with `fjord schema` see the same rule as a pattern.
    return BeforeValidator(check, json_schema_input_type=Annotated[str, Field(pattern=f"^(?:{regex})$")])


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _url(schemes: tuple[str, ...], what: str, *, path: bool = True) -> BeforeValidator:
    """A URL check: one of `schemes`, a host (DNS name or IP address), an optional port of 1-65535, no user or
    password in it (a credential is never part of the site), a path only where `path` allows one. The error
    says what was wrong and what is allowed; the value is kept as written."""
    others = [s for s in schemes if s not in ("http", "https")]
    kinds = " or ".join(["http(s)", *others])
    form = f"{'|'.join(['http(s)', *others])}://host[:port]{'[/path]' if path else ''}"
    allowed = f"an {kinds} URL {what}, {form}"

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string; allowed: {allowed}")
        if not value or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"is empty or holds spaces or control characters; allowed: {allowed}")
        parts = urlsplit(value)
        if "://" not in value or parts.scheme.lower() not in schemes:
            got = f"scheme {parts.scheme!r}" if "://" in value and parts.scheme else "no scheme"
            raise ValueError(f"has {got}; allowed: {allowed}")
        if "@" in parts.netloc:  # the value is not shown: it holds a credential
            message = f"holds a user or password; allowed: {allowed}, the credential set as a Pulumi secret"
            raise SpecProblems([Problem("", HIDDEN, message)])
        host = parts.hostname or ""
        if not _valid_host(host):
            raise ValueError(f"has no valid host ({host or 'none'}); allowed: {allowed}")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or parts.netloc.endswith(":"):
            raise ValueError(f"has an invalid port; allowed: {allowed}, the port a number of 1-65535")
        if not path and parts.path not in ("", "/"):
            raise ValueError(f"has a path ({parts.path}); allowed: {allowed}")
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            raise ValueError(f"has a query or fragment; allowed: {allowed}")
        return value

    return BeforeValidator(check)


def _valid_host(host: str) -> bool:
    """A DNS name of labels of 1-63 characters (253 in all), or an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return 0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) and not host[0].isdigit()


def _cidr(value: object) -> object:
    if not (isinstance(value, str) and "/" in value):
        raise ValueError("must be an IPv4 network in CIDR form; allowed: a string such as 10.16.0.0/14")
    return value


Name = Annotated[
    str,
    _matching(r"[a-z][a-z0-9-]{0,30}[a-z0-9]", "a lower-case DNS label of 2-32 characters (a-z, 0-9, '-')"),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _a(word: str) -> str:
    """The indefinite article before a fabric technology or a GPU SKU as read aloud: an infiniband, an H100."""
    return "an" if word[:1].lower() in "aeiouh" else "a"


def _duplicates(names: Iterable[str]) -> list[str]:
    return sorted(n for n, c in Counter(names).items() if c > 1)


class Power(_Spec):
    """The site's grid connection and how efficiently it turns power into compute."""

    grid_budget_mw: StrictFloat = Field(gt=0, description="Power the grid connection delivers to the site, MW.")
    pue: StrictFloat = Field(ge=1.0, le=3.0, description="Power usage effectiveness: facility power / IT power.")
    energy_source: Literal["hydro", "wind", "solar", "nuclear", "geothermal", "grid-mix"]


class Hall(_Spec):
    """A data hall: rack positions and what each rack position can power and cool."""

    name: Name
    rack_positions: StrictInt = Field(gt=0, description="Rack positions the hall has.")
    rack_power_kw: StrictFloat = Field(gt=0, description="Power (and heat) one rack position can take, kW.")
    cooling: Literal["air", "liquid"] = Field(description="'liquid' halls also take air-cooled racks.")


class Fabric(_Spec):
    """A network fabric design. Compute fabrics are built once per cluster; others serve the whole site."""

    name: Name
    role: Literal["compute", "storage", "oob"]
    technology: Literal["infiniband-ndr", "infiniband-xdr", "spectrum-x", "ethernet"]
    topology: Literal["rail-optimised", "leaf-spine"]
    switch: str = Field(description="Switch model from the catalog, e.g. QM9700; it sets the radix.")
    ports_per_node: StrictInt = Field(
        default=1,
        gt=0,
        le=16,
        description="Ports per node on a non-compute fabric (compute uses the SKU's rails).",
    )
    ufm_node_slots: StrictInt = Field(
        default=0,
        ge=0,
        le=8,
        description="Node slots of each cluster given to UFM appliances (H100 SuperPOD: 1).",
    )
    ufm_cables: StrictInt = Field(default=0, ge=0, le=64, description="Fabric cables of the UFM appliances (H100: 4).")
    radix: StrictInt | None = Field(
        default=None,
        gt=0,
        description="Ports per switch as cabled: the model's own radix (default), or twice it with 2:1 breakout"
        " cables at half speed (e.g. an SN5600 as 128 x 400G). Leaves split it half down, half up.",
    )

    @field_validator("switch")
    @classmethod
    def _known_switch(cls, v: str) -> str:
        if v not in SWITCH_CATALOG:
            raise ValueError(f"unknown switch model; allowed: {', '.join(SWITCH_CATALOG)}")
        return v

    @model_validator(mode="after")
    def _switch_fits(self) -> Fabric:
        sw = SWITCH_CATALOG[self.switch]
        if sw.technology != self.technology:
            raise SpecProblems(
                [
                    Problem(
                        "switch",
                        self.switch,
                        f"is {_a(sw.technology)} {sw.technology} switch; this fabric is {self.technology}; allowed: "
                        + ", ".join(n for n, m in SWITCH_CATALOG.items() if m.technology == self.technology),
                    )
                ]
            )
        if self.role == "compute" and self.technology == "ethernet":
            raise SpecProblems(
                [
                    Problem(
                        "technology",
                        self.technology,
                        "a compute fabric must be InfiniBand or Spectrum-X; allowed: "
                        + ", ".join(sorted({m.technology for m in SWITCH_CATALOG.values()} - {"ethernet"})),
                    )
                ]
            )
        symmetric = sw.leaf_downlinks == sw.leaf_uplinks
        allowed = (sw.radix, 2 * sw.radix) if symmetric else (sw.radix,)
        if self.radix is not None and self.radix not in allowed:
            raise SpecProblems(
                [
                    Problem(
                        "radix",
                        self.radix,
                        f"a {sw.name} cables as {' or '.join(str(a) for a in allowed)} ports;"
                        f" allowed: {', '.join(str(a) for a in allowed)}",
                    )
                ]
            )
        return self

    @property
    def switch_model(self) -> SwitchModel:
        """The switch as this fabric cables it (breakout doubles the radix at half the port speed)."""
        sw = SWITCH_CATALOG[self.switch]
        if self.radix is None or self.radix == sw.radix:
            return sw
        half = self.radix // 2
        return replace(sw, radix=self.radix, leaf_downlinks=half, leaf_uplinks=half, port_gbps=sw.port_gbps // 2)


class GpuStack(_Spec):
    """Who owns the GPU driver and the container toolkit on a cluster's nodes.

    'host' means fjord's Ansible roles install and upgrade it; 'operator' means the NVIDIA GPU Operator
    does, and the Ansible roles leave it alone (verify only). The Ansible roles and the Kubernetes
    platform both read this one switch, so they never fight over a node.
    """

    driver: Literal["host", "operator"] = "host"
    container_toolkit: Literal["host", "operator"] = "host"


class Upgrade(_Spec):
    """How a rolling upgrade of the GPU stack moves through a cluster."""

    batch_percent: StrictInt = Field(
        default=10, ge=1, le=100, description="Share of the cluster's nodes upgraded at once (Ansible 'serial')."
    )
    max_fail_percentage: StrictInt = Field(
        default=0, ge=0, le=100, description="Failed nodes in a batch, in percent, that still let the upgrade go on."
    )

    def batch_nodes(self, nodes: int) -> int:
        """Nodes in one batch of a cluster of `nodes` nodes in service: `batch_percent` of them, rounded up, at
        least one (fjord.hosts.rollout, `fjord diff`)."""
        return max(1, -(-nodes * self.batch_percent // 100))


class Acceptance(_Spec):
    """The acceptance gate: the checks a node must pass before it enters service (Slurm resume, Kubernetes
    taint removed and label set). Every check set here is required: a required check that fails, or that is
    skipped (its tool missing, no GPU, no PyTorch), fails the node. `false`, 0 or null takes a check out of
    the gate; it is still run and recorded where it can be, but does not decide. Thresholds are shares of
    the SKU's catalog figures, so one spec serves every SKU.
    """

    os: bool = Field(default=True, description="The node runs the spec's OS release (software.os).")
    gpu_inventory: bool = Field(
        default=True, description="GPU count and model as the SKU says, the spec's driver branch, persistence mode."
    )
    ecc: bool = Field(default=True, description="No volatile uncorrected ECC errors on any GPU.")
    nvlink: bool = Field(default=True, description="Every NVLink link active, the same count on every GPU.")
    pcie: bool = Field(default=True, description="Every GPU's PCIe link at its maximum width.")
    dcgm_level: StrictInt = Field(
        default=1, ge=0, le=4, description="DCGM diagnostics level that must pass (0 = not required; 1-4)."
    )
    gemm_min_fraction: StrictFloat | None = Field(
        default=0.7, gt=0, le=1, description="BF16 GEMM must reach this share of the SKU's dense peak (null: off)."
    )
    hbm_min_fraction: StrictFloat | None = Field(
        default=0.8, gt=0, le=1, description="Device memory copy must reach this share of the SKU's HBM bandwidth."
    )
    nccl_node_min_fraction: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1,
        description="NCCL all-reduce bus bandwidth across the node's GPUs (nccl-tests all_reduce_perf) as a share of"
        " the SKU's NVLink bandwidth per direction (H100: ~365 of 450 GB/s is 0.81); null: not required.",
    )
    nccl_pair_min_fraction: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1,
        description="NCCL all-reduce bus bandwidth between node pairs over the compute fabric, as a share of the"
        " node's rails x port speed; null: not required. Needs clusters of two nodes or more.",
    )
    ib_min_fraction: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1,
        description="RDMA write bandwidth per compute NIC (perftest ib_write_bw) as a share of the compute fabric's"
        " port speed (NDR 400G: 46-49 of 50 GB/s); null: not required.",
    )

    @model_validator(mode="after")
    def _something_required(self) -> Acceptance:
        if not self.required():
            raise SpecProblems(
                [
                    Problem(
                        "os",
                        self.os,
                        "the gate requires no check at all, so every node would enter service unchecked; allowed:"
                        " at least one check required (os: true is the least)",
                    )
                ]
            )
        return self

    def required(self) -> tuple[str, ...]:
        """The checks the gate requires, by the names the node's report gives them (see ACCEPTANCE_CHECKS)."""
        on = {
            "os_release": self.os,
            "gpu_count": self.gpu_inventory,
            "gpu_model": self.gpu_inventory,
            "driver_branch": self.gpu_inventory,
            "persistence_mode": self.gpu_inventory,
            "ecc_uncorrected": self.ecc,
            "nvlink": self.nvlink,
            "pcie_link_width": self.pcie,
            "dcgm_diag": self.dcgm_level > 0,
            "bf16_gemm": self.gemm_min_fraction is not None,
            "hbm_bandwidth": self.hbm_min_fraction is not None,
            "nccl_node": self.nccl_node_min_fraction is not None,
            "nccl_pair": self.nccl_pair_min_fraction is not None,
            "ib_bandwidth": self.ib_min_fraction is not None,
        }
        return tuple(name for name in ACCEPTANCE_CHECKS if on[name])


ACCEPTANCE_CHECKS = (
    "os_release",
    "gpu_count",
    "gpu_model",
    "driver_branch",
    "persistence_mode",
    "ecc_uncorrected",
    "nvlink",
    "pcie_link_width",
    "dcgm_diag",
    "bf16_gemm",
    "hbm_bandwidth",
    "nccl_node",
    "nccl_pair",
    "ib_bandwidth",
)
"""Every check a node's acceptance report can hold, in the order they run."""


HostName = Annotated[
    str,
    _matching(
        r"[a-z][a-z0-9-]{0,61}[a-z0-9]",
        "a node name of this cluster, e.g. uk-h200-su000-n000 (<site>-<cluster>-suNNN-nNNN)",
    ),
]
SlurmRelease = Annotated[str, _matching(r"\d{2}\.\d{2}", "a Slurm major release such as '22.05' or '24.11'")]


class Slurm(_Spec):
    """The Slurm control plane of a cluster whose scheduler is 'slurm'.

    The controllers and the accounting daemon run on nodes of the cluster (fjord's inventory holds only its
    GPU nodes); default: the cluster's first node runs slurmctld and slurmdbd, with no backup controller.
    """

    controllers: tuple[HostName, ...] = Field(
        default=(),
        max_length=2,
        description="slurmctld hosts: the primary, then an optional backup (default: the cluster's first node).",
    )
    accounting_host: HostName | None = Field(
        default=None, description="The host of slurmdbd and its MariaDB database (default: the primary controller)."
    )
    state_dir: Annotated[str, _matching(r"/[A-Za-z0-9._/-]*", "an absolute path")] = Field(
        default="/var/lib/slurm/slurmctld",
        description="slurmctld's StateSaveLocation; with a backup controller it must be on storage both share.",
    )
    release: SlurmRelease | None = Field(
        default=None,
        description="The Slurm major release the site's mirror ships; the roles refuse to configure another"
        " (default: whatever the mirror has, 23.11 or newer for NVL72 block topology).",
    )
    containers: bool = Field(
        default=True, description="Pyxis and enroot for container jobs, where the site's mirror has their packages."
    )
    health_check_interval_s: StrictInt = Field(
        default=300, ge=0, le=86_400, description="How often slurmd runs fjord's node health check (0: never)."
    )

    @model_validator(mode="after")
    def _distinct(self) -> Slurm:
        if len(set(self.controllers)) != len(self.controllers):
            raise SpecProblems(
                [
                    Problem(
                        "controllers",
                        list(self.controllers),
                        "names one host twice; allowed: a primary and a different backup host",
                    )
                ]
            )
        return self


class Cluster(_Spec):
    """A GPU cluster: one SKU, sized in GPUs or in scalable units, owned by one tenant."""

    name: Name
    sku: str = Field(description="GPU SKU from the catalog.")
    # The caps are far above any one cluster (a site of fjord's plans has ~100,000 GPUs); they keep a typo of a few
    # extra digits from sizing billions of nodes before the fabric's port limit rejects it.
    gpus: StrictInt | None = Field(
        default=None, gt=0, le=1_000_000, description="Size in GPUs; give this or scalable_units."
    )
    scalable_units: StrictInt | None = Field(default=None, gt=0, le=10_000, description="Size in whole scalable units.")
    tenant: Name
    scheduler: Literal["kubernetes", "slurm"]
    hall: Name = Field(description="The hall the cluster's racks go into.")
    compute_fabric: Name = Field(description="Name of a fabric with role 'compute'.")
    nodes_per_rack: StrictInt | None = Field(
        default=None,
        gt=0,
        le=64,
        description="HGX nodes per rack (default from the SKU); fixed at 18 for NVL72.",
    )
    gpu_stack: GpuStack = Field(default_factory=GpuStack, description="Who owns the driver and the toolkit.")
    upgrade: Upgrade = Field(default_factory=Upgrade, description="Rolling upgrade batches and failure budget.")
    acceptance: Acceptance = Field(
        default_factory=Acceptance, description="The checks a node must pass before it enters service."
    )
    slurm: Slurm | None = Field(
        default=None, description="Slurm's controllers and accounting (only with scheduler 'slurm')."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "validation" in data:
            raise SpecProblems(
                [
                    Problem(
                        "validation",
                        data["validation"],
                        "is now 'acceptance' (dcgm_level, gemm_min_fraction and hbm_min_fraction kept their names,"
                        " with more checks beside them); allowed: acceptance",
                    )
                ]
            )
        return data

    @field_validator("sku")
    @classmethod
    def _known_sku(cls, v: str) -> str:
        if v not in GPU_CATALOG:
            raise ValueError(f"unknown GPU SKU; allowed: {', '.join(GPU_CATALOG)}")
        return v

    @model_validator(mode="after")
    def _size(self) -> Cluster:
        problems: list[Problem] = []
        if (self.gpus is None) == (self.scalable_units is None):
            problems.append(
                Problem(
                    "gpus",
                    self.gpus,
                    "give exactly one of 'gpus' or 'scalable_units' to size the cluster; allowed: exactly one of them",
                )
            )
        sku = self.gpu
        if self.gpus is not None:
            unit = sku.gpus_per_node * (sku.default_nodes_per_rack if sku.rack_scale else 1)
            what = "NVL72 rack" if sku.rack_scale else "node"
            if self.gpus % unit:
                problems.append(
                    Problem(
                        "gpus",
                        self.gpus,
                        f"{sku.name} comes in whole {what}s of {unit} GPUs; allowed: a multiple of {unit}",
                    )
                )
        pairs = self.acceptance.nccl_pair_min_fraction
        if pairs is not None and self.gpus is not None and self.gpus // sku.gpus_per_node < 2:
            problems.append(
                Problem(
                    "acceptance.nccl_pair_min_fraction",
                    pairs,
                    f"needs node pairs and the cluster has {self.gpus // sku.gpus_per_node} node;"
                    " allowed: null for a one-node cluster",
                )
            )
        if sku.rack_scale and self.nodes_per_rack not in (None, sku.default_nodes_per_rack):
            problems.append(
                Problem(
                    "nodes_per_rack",
                    self.nodes_per_rack,
                    f"{_a(sku.name)} {sku.name} rack always holds {sku.default_nodes_per_rack} compute trays;"
                    f" allowed: {sku.default_nodes_per_rack}, or leave it unset",
                )
            )
        if self.scheduler != "kubernetes":
            problems += [
                Problem(
                    f"gpu_stack.{part}",
                    "operator",
                    f"the GPU Operator runs on Kubernetes and this cluster's scheduler is {self.scheduler!r};"
                    " allowed: 'host'",
                )
                for part, owner in (
                    ("driver", self.gpu_stack.driver),
                    ("container_toolkit", self.gpu_stack.container_toolkit),
                )
                if owner == "operator"
            ]
        if self.slurm is not None and self.scheduler != "slurm":
            problems.append(
                Problem(
                    "slurm",
                    list(self.slurm.controllers),
                    f"configures Slurm but this cluster's scheduler is {self.scheduler!r};"
                    " allowed: 'slurm' only with scheduler 'slurm'",
                )
            )
        if problems:
            raise SpecProblems(problems)
        return self

    @property
    def gpu(self) -> GpuSku:
        return GPU_CATALOG[self.sku]

    @property
    def rack_nodes(self) -> int:
        return self.nodes_per_rack or self.gpu.default_nodes_per_rack


_UNUSABLE = tuple(
    (kind, ipaddress.IPv4Network(net))
    for kind, net in (
        ("'this network'", "0.0.0.0/8"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
    )
)
"""Ranges no host interface can be numbered from (RFC 6890)."""


def _special_range(net: ipaddress.IPv4Network) -> str:
    """The unusable range `net` overlaps, as 'the multicast range 224.0.0.0/4'; '' for a usable supernet."""
    return next((f"in the {kind} range {bad}" for kind, bad in _UNUSABLE if net.overlaps(bad)), "")


IPv4Supernet = Annotated[
    ipaddress.IPv4Network,
    BeforeValidator(_cidr),
    Field(description="IPv4 network in CIDR form with no host bits set, e.g. 10.16.0.0/14"),
]


class IpPlan(_Spec):
    """Supernets per purpose. Every node interface gets one address from the supernet of its purpose."""

    bmc: IPv4Supernet
    management: IPv4Supernet
    compute: IPv4Supernet
    storage: IPv4Supernet
    kubernetes_pods: IPv4Supernet | None = None
    kubernetes_services: IPv4Supernet | None = None

    @model_validator(mode="after")
    def _no_overlap(self) -> IpPlan:
        nets = [(k, v) for k, v in self if v is not None]
        special = [(k, v, _special_range(v)) for k, v in nets]
        if any(kind for _, _, kind in special):
            raise SpecProblems(
                Problem(
                    k,
                    str(v),
                    f"is {kind}, which no interface can use; allowed: a unicast range, such as private 10.0.0.0/8,"
                    " 172.16.0.0/12 or 192.168.0.0/16",
                )
                for k, v, kind in special
                if kind
            )
        problems = [
            Problem(
                b, str(nb), f"overlaps {a} ({na}); supernets must not overlap; allowed: a supernet disjoint from {na}"
            )
            for i, (a, na) in enumerate(nets)
            for b, nb in nets[i + 1 :]
            if na.overlaps(nb)
        ]
        if problems:
            raise SpecProblems(problems)
        return self


class StorageTier(_Spec):
    """A storage tier the site offers: capacity, where it stands and what it draws."""

    name: Name
    kind: Literal["parallel-fs", "object", "block"]
    capacity_pb: StrictFloat = Field(gt=0, description="Usable capacity, PB.")
    hall: Name
    racks: StrictInt = Field(gt=0, description="Rack positions the tier takes.")
    power_kw: StrictFloat = Field(gt=0, description="Max power of the whole tier, kW.")
    endpoint: Annotated[str, _url(("http", "https", "nfs"), "of a storage service")] | None = Field(
        default=None,
        description="Service endpoint: the S3 URL (http(s)://host[:port]) of an object tier, the NFS or HTTP(S)"
        " address of a file system.",
    )

    @model_validator(mode="after")
    def _object_endpoint(self) -> StorageTier:
        if self.kind == "object" and self.endpoint is not None and not self.endpoint.lower().startswith("http"):
            raise SpecProblems(
                [
                    Problem(
                        "endpoint",
                        self.endpoint,
                        "an object tier is reached over S3; allowed: an http(s)://host[:port] URL",
                    )
                ]
            )
        return self


BucketName = Annotated[
    str,
    _matching(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", "an S3 bucket name of 3-63 characters (a-z, 0-9, '-'), no dots"),
]
Jurisdiction = Literal["EU", "EEA", "UK", "CH"]


class ObjectStore(_Spec):
    """Where the site keeps its Pulumi state, its artifacts (plans, inventories, reports) and tenant buckets.

    An S3 endpoint (Ceph RGW): one of this site's object tiers (`tier`), or an explicit `endpoint` with the
    `jurisdiction` it stands in. Sovereignty: a site's state and artifacts go only to an endpoint in the
    site's own jurisdiction; any other is rejected.
    """

    tier: Name | None = Field(default=None, description="An object tier of this site whose endpoint is used.")
    endpoint: Annotated[str, _url(("http", "https"), "of an S3 endpoint", path=False)] | None = Field(
        default=None, description="An S3 endpoint that is not one of this site's tiers (give `tier` or this)."
    )
    jurisdiction: Jurisdiction | None = Field(
        default=None,
        description="Legal area the endpoint stands in; required with `endpoint` (a tier is in the site's own).",
    )
    region: str = Field(default="default", min_length=1, max_length=64, description="S3 region (RGW zonegroup).")
    state_bucket: BucketName | None = Field(default=None, description="Pulumi state bucket; default <site>-state.")
    artifacts_bucket: BucketName | None = Field(
        default=None, description="Bucket of plans, inventories and reports; default <site>-artifacts."
    )
    noncurrent_days: StrictInt = Field(
        default=90, ge=1, le=3650, description="Days after which an overwritten (noncurrent) version expires."
    )
    object_lock: bool = Field(default=True, description="Object lock in governance mode on the state bucket.")
    lock_days: StrictInt = Field(
        default=7, ge=1, le=3650, description="Default governance retention of each state version, days."
    )
    max_attempts: StrictInt = Field(default=8, ge=1, le=20, description="Attempts per S3 request, first try included.")
    connect_timeout_s: StrictFloat = Field(default=5, gt=0, le=120, description="TCP connect timeout, seconds.")
    read_timeout_s: StrictFloat = Field(default=60, gt=0, le=900, description="Read timeout per request, seconds.")

    @model_validator(mode="after")
    def _where(self) -> ObjectStore:
        problems: list[Problem] = []
        if (self.tier is None) == (self.endpoint is None):
            problems.append(
                Problem(
                    "tier",
                    self.tier,
                    "give exactly one of 'tier' (an object tier of the site) or 'endpoint';"
                    " allowed: exactly one of them",
                )
            )
        if self.endpoint is not None and self.jurisdiction is None:
            problems.append(
                Problem(
                    "jurisdiction",
                    None,
                    "an explicit endpoint needs the jurisdiction it stands in; allowed: EU, EEA, UK, CH",
                )
            )
        if self.object_lock and self.noncurrent_days < self.lock_days:
            problems.append(
                Problem(
                    "noncurrent_days",
                    self.noncurrent_days,
                    f"old state versions are locked for lock_days={self.lock_days} days and cannot expire sooner;"
                    f" allowed: at least {self.lock_days}",
                )
            )
        if problems:
            raise SpecProblems(problems)
        return self


@dataclass(frozen=True)
class StoreTarget:
    """A site's object store, resolved: the endpoint, where it stands, and the bucket names."""

    endpoint: str
    jurisdiction: str
    region: str
    state_bucket: str
    artifacts_bucket: str
    spec: ObjectStore


class Software(_Spec):
    """The software baseline every GPU node runs."""

    os: Literal["ubuntu-22.04", "ubuntu-24.04", "debian-12"]
    driver_branch: StrictInt = Field(ge=470, le=999, description="NVIDIA datacenter driver branch, e.g. 570.")
    cuda: Annotated[str, _matching(r"\d+\.\d+", "a CUDA minor release such as 12.8")]
    kubernetes: Annotated[str, _matching(r"1\.(2[5-9]|3[0-7])", "a Kubernetes minor release 1.25-1.37, e.g. 1.31")]
    driver_source: Literal["repository", "mirror", "preinstalled"] = Field(
        default="repository",
        description="Where host-owned drivers come from: NVIDIA's repository, the site's mirror (air_gap.packages),"
        " or already in the image (verify only).",
    )

    @model_validator(mode="after")
    def _cuda_needs_driver(self) -> Software:
        need = CUDA_MIN_DRIVER_BRANCH.get(self.cuda)
        if need is None:
            raise SpecProblems(
                [
                    Problem(
                        "cuda",
                        self.cuda,
                        f"unknown CUDA release; allowed: {', '.join(CUDA_MIN_DRIVER_BRANCH)}",
                    )
                ]
            )
        if self.driver_branch < need:
            raise SpecProblems(
                [
                    Problem(
                        "driver_branch",
                        self.driver_branch,
                        f"CUDA {self.cuda} needs driver branch >= {need}; allowed: {need} or newer, or an older CUDA",
                    )
                ]
            )
        return self


class TenantQuota(_Spec):
    """GPUs a tenant may use in one cluster: a ResourceQuota on nvidia.com/gpu on Kubernetes, the GrpTRES of the
    tenant's QOS on Slurm."""

    cluster: Name
    gpus: StrictInt = Field(ge=0)


class Tenant(_Spec):
    """A tenant of the site: its GPU quotas per cluster and its object storage."""

    name: Name
    gpu_quotas: tuple[TenantQuota, ...] = ()
    object_quota_tb: StrictFloat | None = Field(default=None, gt=0, description="Quota over all its buckets, TB.")
    buckets: tuple[Name, ...] = Field(default=(), description="Buckets created for the tenant on the object tier.")


class AirGap(_Spec):
    """Where an air-gapped site gets everything it would otherwise download; set once for the whole site."""

    packages: Annotated[str, _url(("http", "https"), "of the site's package mirror")]
    registry: Annotated[
        str, _matching(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9._/-]+)?", "a registry host[:port][/path], no scheme")
    ]
    charts: Annotated[str, _url(("http", "https", "oci"), "of a Helm chart repository")]


BiosValue = str | int | bool


class Bmc(_Spec):
    """How fjord reaches every node's BMC (Redfish) and the state the bare-metal layer keeps nodes in.

    A node's BMC is `<scheme>://<its bmc address from the IP plan>[:port]`, serving one system. For a lab
    or an emulator, `endpoint` points every node at one Redfish service instead, and `systems` says which of
    its systems is which node (default: the node's name). The password is not part of the site: it is the
    Pulumi secret `fjord:bmcPassword` (`pulumi config set --secret fjord:bmcPassword`), and
    $FJORD_BMC_PASSWORD for the `fjord bmc` commands.
    """

    scheme: Literal["https", "http"] = Field(default="https", description="Redfish over HTTPS (default) or HTTP.")
    port: StrictInt | None = Field(default=None, ge=1, le=65535, description="BMC port (default: the scheme's).")
    username: str = Field(default="admin", min_length=1, max_length=64, description="BMC user with admin rights.")
    verify_tls: bool = Field(default=True, description="Check the BMCs' TLS certificates.")
    concurrency: StrictInt = Field(default=32, ge=1, le=512, description="BMCs talked to at once.")
    timeout_s: StrictFloat = Field(default=30, gt=0, le=600, description="Per-request timeout, seconds.")
    retries: StrictInt = Field(
        default=5,
        ge=0,
        le=10,
        description="Retries of one request, and of a node's whole operation, on dropped or refused connections,"
        " timeouts, 5xx and answers that are no Redfish (never on 4xx such as wrong credentials).",
    )
    backoff_s: StrictFloat = Field(
        default=1.0,
        ge=0,
        le=60,
        description="Backoff base: retry n waits a random time up to backoff_s * 2^(n-1) (full jitter), at most 30 s.",
    )
    deadline_s: StrictFloat = Field(
        default=600,
        gt=0,
        le=86400,
        description="Longest time spent on one node, retries included: no retry starts later and power waits end"
        " by then; a node still failing is reported failed.",
    )
    power_timeout_s: StrictFloat = Field(
        default=300, gt=0, le=3600, description="How long to wait for a power change to land on a node."
    )
    power: Literal["on", "off"] = Field(default="on", description="Power state the nodes are kept in.")
    boot: Literal["pxe", "virtual-media", "disk"] = Field(
        default="pxe",
        description="Boot override set on every node: PXE, the OS image as virtual media (image_url), or the disk.",
    )
    image_url: Annotated[str, _url(("http", "https"), "of an OS image (ISO)")] | None = Field(
        default=None, description="OS image inserted as virtual media when boot is 'virtual-media'."
    )
    bios: dict[str, BiosValue] = Field(
        default_factory=dict,
        description="BIOS attributes set on every node where the BMC exposes BIOS (e.g. SR-IOV, above-4G decoding).",
    )
    on_delete: Literal["leave", "power-off"] = Field(
        default="leave",
        description=(
            "What removing a scalable unit (or nodes of one) does to its nodes: leave them as they are, or power"
            " them off. A node in service (taken on by fjord and still on) is never powered off undrained: the"
            " removal stops naming it until it is drained and off."
        ),
    )
    endpoint: Annotated[str, _url(("http", "https"), "of one Redfish service")] | None = Field(
        default=None, description="Lab/emulator: every node's system is on this one Redfish service."
    )
    systems: dict[str, str] = Field(
        default_factory=dict, description="With endpoint: node name -> system id on it (default: the node name)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: object) -> object:
        # Reject a password written into the site before anything could echo its value in an error.
        if isinstance(data, dict) and "password" in data:
            raise SpecProblems(
                [
                    Problem(
                        "password",
                        "[hidden]",
                        "a password is never part of the site (it would be stored in plain text); allowed: the"
                        " Pulumi secret set with `pulumi config set --secret fjord:bmcPassword`",
                    )
                ]
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Bmc:
        problems: list[Problem] = []
        if self.boot == "virtual-media" and self.image_url is None:
            problems.append(
                Problem(
                    "image_url",
                    None,
                    "boot 'virtual-media' needs the OS image's URL; allowed: an http(s) URL of the image",
                )
            )
        if self.boot != "virtual-media" and self.image_url is not None:
            problems.append(
                Problem(
                    "boot", self.boot, "image_url is set but only used with virtual media; allowed: 'virtual-media'"
                )
            )
        if self.systems and self.endpoint is None:
            problems.append(
                Problem(
                    "systems",
                    sorted(self.systems)[:3],
                    "maps nodes to systems of one endpoint; set 'endpoint'; allowed: 'systems' only with 'endpoint'",
                )
            )
        if problems:
            raise SpecProblems(problems)
        return self


class HostAccess(_Spec):
    """How fjord reaches the site's hosts to configure them: an SSH user, and `become` (sudo) to act as root."""

    ssh_user: (
        Annotated[
            str,
            _matching(
                r"[a-z_][a-z0-9_-]{0,31}",
                "a POSIX user name: 1-32 of a-z, 0-9, '_', '-', not starting with a digit or '-'",
            ),
        ]
        | None
    ) = Field(
        default=None,
        description="The user fjord logs in as over SSH (key authentication); unset: Ansible's default, the user "
        "running fjord, or `ansible_user` from --host-vars.",
    )
    become: bool | None = Field(
        default=None,
        description="Run the roles as root through `become_method`. Default: true for a user other than root. "
        "A non-root user without become is rejected: the roles install packages and manage services.",
    )
    become_method: Literal["sudo", "su", "doas"] = Field(
        default="sudo", description="How the SSH user becomes root (sudo without a password prompt, by default)."
    )

    @model_validator(mode="after")
    def _can_act_as_root(self) -> HostAccess:
        if self.ssh_user not in (None, "root") and self.become is False:
            raise SpecProblems(
                [
                    Problem(
                        "become",
                        False,
                        f"ssh_user {self.ssh_user!r} is not root, and the roles must act as root; "
                        "allowed: true (or unset) with a non-root ssh_user, or ssh_user: root",
                    )
                ]
            )
        return self

    @property
    def needs_become(self) -> bool:
        return self.become if self.become is not None else self.ssh_user not in (None, "root")


class Site(_Spec):
    """One GPU site: identity, power, halls, fabrics, address plan, storage, clusters and software."""

    name: Name
    country: Annotated[str, _matching(r"[A-Z]{2}", "an ISO 3166-1 alpha-2 code such as NO or GB")]
    jurisdiction: Literal["EU", "EEA", "UK", "CH"] = Field(description="Legal area the site's data stays in.")
    region: str = Field(min_length=1, max_length=64)
    power: Power
    halls: tuple[Hall, ...] = Field(min_length=1)
    fabrics: tuple[Fabric, ...] = Field(min_length=1)
    ip_plan: IpPlan
    storage: tuple[StorageTier, ...] = ()
    clusters: tuple[Cluster, ...] = Field(min_length=1)
    software: Software
    tenants: tuple[Tenant, ...] = Field(default=(), description="Tenants, their GPU quotas and buckets.")
    air_gap: AirGap | None = Field(default=None, description="Set for a site without outbound network.")
    bmc: Bmc = Field(default_factory=Bmc, description="How the nodes' BMCs are reached (Redfish) and kept.")
    object_store: ObjectStore | None = Field(
        default=None,
        description="Where state, artifacts and tenant buckets live; default: the site's only object tier.",
    )
    host_access: HostAccess = Field(
        default_factory=HostAccess, description="How fjord logs in to the hosts (SSH user) and becomes root."
    )

    @model_validator(mode="after")
    def _references(self) -> Site:
        problems: list[Problem] = []
        named: dict[str, list[str]] = {
            "halls": [h.name for h in self.halls],
            "fabrics": [f.name for f in self.fabrics],
            "storage": [t.name for t in self.storage],
            "clusters": [c.name for c in self.clusters],
            "tenants": [t.name for t in self.tenants],
        }
        for field, names in named.items():
            for dup in _duplicates(names):
                first, *repeats = [k for k, n in enumerate(names) if n == dup]
                problems += [
                    Problem(
                        f"{field}[{k}].name",
                        dup,
                        f"is already the name of {field}[{first}]; names must be unique;"
                        f" allowed: a name no other of {field} has",
                    )
                    for k in repeats
                ]
        halls = {h.name: h for h in self.halls}
        fabrics = {f.name: f for f in self.fabrics}
        compute = sorted(n for n, f in fabrics.items() if f.role == "compute")
        for role in ("storage", "oob"):
            count = sum(f.role == role for f in self.fabrics)
            if count != 1:
                problems.append(
                    Problem(
                        "fabrics",
                        [f.name for f in self.fabrics],
                        f"needs exactly one '{role}' fabric, has {count}; allowed: exactly one",
                    )
                )
        for i, c in enumerate(self.clusters):
            hall = halls.get(c.hall)
            if hall is None:
                problems.append(
                    Problem(
                        f"clusters[{i}].hall",
                        c.hall,
                        f"is not a hall of this site; allowed: {', '.join(halls)}",
                    )
                )
            elif c.gpu.cooling == "liquid" and hall.cooling == "air":
                problems.append(
                    Problem(
                        f"clusters[{i}].hall",
                        c.hall,
                        f"{c.sku} needs liquid cooling and hall {hall.name!r} is air-cooled;"
                        f" allowed: a liquid-cooled hall",
                    )
                )
            if c.compute_fabric not in compute:
                problems.append(
                    Problem(
                        f"clusters[{i}].compute_fabric",
                        c.compute_fabric,
                        f"is not a compute fabric of this site; allowed: {', '.join(compute) or '(none defined)'}",
                    )
                )
            branch = self.software.driver_branch
            operator = c.scheduler == "kubernetes" and c.gpu_stack.driver == "operator"
            if operator and branch not in OPERATOR_DRIVER_RELEASES:
                problems.append(
                    Problem(
                        "software.driver_branch",
                        branch,
                        f"cluster {c.name!r} has an operator-owned driver (clusters[{i}].gpu_stack.driver) and fjord"
                        " pins no GPU Operator driver release of this branch;"
                        f" allowed: {', '.join(str(b) for b in OPERATOR_DRIVER_RELEASES)}, or gpu_stack.driver 'host'",
                    )
                )
            if c.gpu.min_driver_branch > self.software.driver_branch:
                problems.append(
                    Problem(
                        "software.driver_branch",
                        self.software.driver_branch,
                        f"cluster {c.name!r} ({c.sku}) needs driver branch >= {c.gpu.min_driver_branch};"
                        f" allowed: {c.gpu.min_driver_branch} or newer",
                    )
                )
        instances = {f"{c.name}-compute": c.name for c in self.clusters}  # a compute fabric per cluster, so named
        for j, f in enumerate(self.fabrics):
            if f.role != "compute" and f.name in instances:
                problems.append(
                    Problem(
                        f"fabrics[{j}].name",
                        f.name,
                        f"is also the name of the compute fabric of cluster {instances[f.name]!r};"
                        " allowed: a name not of the form <cluster>-compute",
                    )
                )
        for i, t in enumerate(self.storage):
            if t.hall not in halls:
                problems.append(
                    Problem(
                        f"storage[{i}].hall",
                        t.hall,
                        f"is not a hall of this site; allowed: {', '.join(halls)}",
                    )
                )
        problems += self._tenancy_problems()
        problems += self._object_store_problems()
        if self.air_gap is not None and self.software.driver_source == "repository":
            problems.append(
                Problem(
                    "software.driver_source",
                    "repository",
                    "an air-gapped site cannot reach NVIDIA's repository; allowed: 'mirror', 'preinstalled'",
                )
            )
        if self.air_gap is None and self.software.driver_source == "mirror":
            problems.append(
                Problem(
                    "software.driver_source",
                    "mirror",
                    "needs 'air_gap.packages', the site's mirror; none is set; allowed: 'repository', 'preinstalled',"
                    " or 'mirror' with air_gap.packages set",
                )
            )
        if problems:
            raise SpecProblems(problems)
        return self

    def _tenancy_problems(self) -> list[Problem]:
        if not self.tenants:
            return []
        problems: list[Problem] = []
        tenants = [t.name for t in self.tenants]
        clusters = {c.name: c for c in self.clusters}
        named = sorted(clusters)
        for i, c in enumerate(self.clusters):
            if c.tenant not in tenants:
                problems.append(
                    Problem(
                        f"clusters[{i}].tenant",
                        c.tenant,
                        f"is not a tenant of this site; allowed: {', '.join(tenants)}",
                    )
                )
        for i, t in enumerate(self.tenants):
            seen: set[str] = set()
            for j, q in enumerate(t.gpu_quotas):
                path = f"tenants[{i}].gpu_quotas[{j}].cluster"
                if q.cluster in seen:
                    problems.append(Problem(path, q.cluster, "has a quota already; one quota per cluster"))
                seen.add(q.cluster)
                if q.cluster not in named:
                    problems.append(
                        Problem(
                            path,
                            q.cluster,
                            "is not a cluster of this site (a quota is a ResourceQuota on Kubernetes, a QOS on"
                            f" Slurm); allowed: {', '.join(named)}",
                        )
                    )
            for dup in _duplicates(t.buckets):
                problems.append(
                    Problem(
                        f"tenants[{i}].buckets",
                        dup,
                        "is listed twice; bucket names must be unique; allowed: each name once",
                    )
                )
        return problems

    def _object_store_problems(self) -> list[Problem]:
        store = self.object_store
        problems: list[Problem] = []
        tiers = {t.name: t for t in self.storage}
        objects = sorted(n for n, t in tiers.items() if t.kind == "object" and t.endpoint)
        if store is not None and store.tier is not None:
            tier = tiers.get(store.tier)
            if tier is None or tier.kind != "object" or not tier.endpoint:
                problems.append(
                    Problem(
                        "object_store.tier",
                        store.tier,
                        "is not an object tier with an endpoint of this site;"
                        f" allowed: {', '.join(objects) or '(none defined)'}",
                    )
                )
        if store is not None and store.jurisdiction is not None and store.jurisdiction != self.jurisdiction:
            where = store.endpoint or f"tier {store.tier}"
            problems.append(
                Problem(
                    "object_store.jurisdiction",
                    store.jurisdiction,
                    f"site {self.name}'s state and artifacts stay in its jurisdiction {self.jurisdiction};"
                    f" {where} is in {store.jurisdiction}; allowed: {self.jurisdiction!r}",
                )
            )
        problems += self._bucket_clashes()
        if any(t.buckets for t in self.tenants):
            for i, t in enumerate(self.tenants):
                for b in t.buckets:
                    full = tenant_bucket(self.name, t.name, b)
                    if len(full) > 63:
                        problems.append(
                            Problem(
                                f"tenants[{i}].buckets",
                                b,
                                f"the bucket's name on the endpoint, {full!r}, has {len(full)} characters;"
                                " allowed: at most 63 (shorten the site, tenant or bucket name)",
                            )
                        )
        return problems

    def _bucket_clashes(self) -> list[Problem]:
        """Two of the site's buckets with one name on the endpoint: state, artifacts and every tenant bucket
        (`<site>-<tenant>-<bucket>`: tenant `a` bucket `b-c` and tenant `a-b` bucket `c` are one bucket)."""
        store = self.object_store
        state = (store.state_bucket if store else None) or f"{self.name}-state"
        artifacts = (store.artifacts_bucket if store else None) or f"{self.name}-artifacts"
        named = [("object_store.state_bucket", state, state), ("object_store.artifacts_bucket", artifacts, artifacts)]
        named += [
            (f"tenants[{i}].buckets", b, tenant_bucket(self.name, t.name, b))
            for i, t in enumerate(self.tenants)
            for b in dict.fromkeys(t.buckets)
        ]
        first: dict[str, str] = {}
        problems: list[Problem] = []
        for path, written, bucket in named:
            if bucket in first:
                problems.append(
                    Problem(
                        path,
                        written,
                        f"is the bucket {bucket!r} on the endpoint, as {first[bucket]} is;"
                        " allowed: a bucket name no other bucket of the site has",
                    )
                )
            first.setdefault(bucket, path)
        return problems

    def store(self) -> StoreTarget | None:
        """The resolved object store: the spec's `object_store`, else the site's only object tier; None if none."""
        spec = self.object_store
        if spec is None:
            objects = [t for t in self.storage if t.kind == "object" and t.endpoint]
            if len(objects) != 1:
                return None
            spec = ObjectStore(tier=objects[0].name)
        if spec.tier is not None:
            endpoint = next(t.endpoint for t in self.storage if t.name == spec.tier)
            assert endpoint is not None
        else:
            assert spec.endpoint is not None
            endpoint = spec.endpoint
        return StoreTarget(
            endpoint=endpoint.rstrip("/"),
            jurisdiction=spec.jurisdiction or self.jurisdiction,
            region=spec.region,
            state_bucket=spec.state_bucket or f"{self.name}-state",
            artifacts_bucket=spec.artifacts_bucket or f"{self.name}-artifacts",
            spec=spec,
        )

    def fabric(self, name: str) -> Fabric:
        return next(f for f in self.fabrics if f.name == name)

    def fabric_for(self, role: Literal["storage", "oob"]) -> Fabric:
        return next(f for f in self.fabrics if f.role == role)

    def hall(self, name: str) -> Hall:
        return next(h for h in self.halls if h.name == name)

    def cluster(self, name: str) -> Cluster:
        return next(c for c in self.clusters if c.name == name)


def tenant_bucket(site: str, tenant: str, bucket: str) -> str:
    """A tenant bucket's name on the endpoint: S3 bucket names are global there, so site and tenant prefix it."""
    return f"{site}-{tenant}-{bucket}"
