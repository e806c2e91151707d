"""The hardware catalog: GPU SKUs and fabric switch models, as plain data.

This is the one place where vendor figures live. Every figure is dense (no sparsity) and per GPU unless
the name says otherwise; each SKU carries the datasheet it comes from. Sizing, power and the validation
thresholds of later work read these figures and never repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FormFactor = Literal["hgx", "nvl72"]
Cooling = Literal["air", "liquid"]


@dataclass(frozen=True, slots=True)
class GpuSku:
    """One GPU product as deployed: an HGX 8-GPU node or an NVL72 rack of 18 compute trays."""

    name: str
    form_factor: FormFactor
    gpus_per_node: int
    """GPUs in one node: 8 for an HGX baseboard, 4 for an NVL72 compute tray."""
    default_nodes_per_rack: int
    """Nodes a rack holds by default (NVL72 racks always hold 18 trays)."""
    default_nodes_per_su: int
    """Nodes in one scalable unit: 32 HGX nodes, or 8 NVL72 racks (144 trays)."""
    compute_rails: int
    """Compute-fabric NICs per node (one rail each): 8 per HGX node, 4 per NVL72 tray."""
    hbm_gb: float
    hbm_tbps: float
    bf16_dense_tflops: float
    nvlink_gbps: float
    gpu_tdp_w: int
    node_max_kw: float
    """Max power of one node (HGX) or of one compute tray's share of its rack (NVL72)."""
    rack_max_kw: float | None
    """Max power of a whole rack, where the rack is the product (NVL72); None for HGX."""
    cooling: Cooling
    """The cooling the product needs at minimum: liquid-only products cannot go into an air hall."""
    min_driver_branch: int
    """The oldest NVIDIA datacenter driver branch that supports the GPU."""
    source: str
    rack_devices: tuple[tuple[str, int], ...] = ()
    """Devices of a rack-scale product besides its compute trays, each with a BMC on the out-of-band network, as
    (kind, per rack): an NVL72 rack's 9 NVLink switch trays and its power shelves (SUPERPOD_SOURCES["NVL72"]).
    None for HGX nodes."""

    @property
    def rack_managed_devices(self) -> int:
        """Managed devices per rack besides the compute trays."""
        return sum(n for _, n in self.rack_devices)

    @property
    def rack_scale(self) -> bool:
        return self.rack_max_kw is not None


NVL72_SWITCH_TRAYS = 9
"""NVLink switch trays per NVL72 rack (DGX GB200 user guide, rack configuration), each with a BMC."""
NVL72_POWER_SHELVES = 8
"""Power shelves per NVL72 rack, each managed over the out-of-band network: NVIDIA's MGX NVL72 rack takes 8 shelves
of 33 kW (the DGX GB200 user guide says "power shelves"; vendors' racks range 6-8): fjord plans for 8."""

GPU_CATALOG: dict[str, GpuSku] = {
    sku.name: sku
    for sku in (
        GpuSku(
            name="H100-SXM",
            form_factor="hgx",
            gpus_per_node=8,
            default_nodes_per_rack=4,
            default_nodes_per_su=32,
            compute_rails=8,
            hbm_gb=80,
            hbm_tbps=3.35,
            bf16_dense_tflops=989,
            nvlink_gbps=900,
            gpu_tdp_w=700,
            node_max_kw=10.2,
            rack_max_kw=None,
            cooling="air",
            min_driver_branch=525,
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM5); NVIDIA DGX H100 datasheet (10.2 kW max)",
        ),
        GpuSku(
            name="H200-SXM",
            form_factor="hgx",
            gpus_per_node=8,
            default_nodes_per_rack=4,
            default_nodes_per_su=32,
            compute_rails=8,
            hbm_gb=141,
            hbm_tbps=4.8,
            bf16_dense_tflops=989,
            nvlink_gbps=900,
            gpu_tdp_w=700,
            node_max_kw=10.2,
            rack_max_kw=None,
            cooling="air",
            min_driver_branch=535,
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM); NVIDIA DGX H200 datasheet (~10.2 kW max)",
        ),
        GpuSku(
            name="B200",
            form_factor="hgx",
            gpus_per_node=8,
            default_nodes_per_rack=4,
            default_nodes_per_su=32,
            compute_rails=8,
            hbm_gb=180,
            hbm_tbps=8.0,
            bf16_dense_tflops=2250,
            nvlink_gbps=1800,
            gpu_tdp_w=1000,
            node_max_kw=14.3,
            rack_max_kw=None,
            cooling="air",
            min_driver_branch=570,
            source=(
                "NVIDIA HGX B200 platform specifications (36 PFLOPS BF16 sparse per 8 GPUs, 1.44 TB HBM3e,"
                " 64 TB/s); NVIDIA DGX B200 datasheet (~14.3 kW max)"
            ),
        ),
        GpuSku(
            name="GB200-NVL72",
            form_factor="nvl72",
            gpus_per_node=4,
            default_nodes_per_rack=18,
            default_nodes_per_su=144,
            compute_rails=4,
            hbm_gb=186,
            hbm_tbps=8.0,
            bf16_dense_tflops=2500,
            nvlink_gbps=1800,
            gpu_tdp_w=1200,
            node_max_kw=132 / 18,
            rack_max_kw=132,
            cooling="liquid",
            min_driver_branch=570,
            source=(
                "NVIDIA GB200 NVL72 datasheet (360 PFLOPS BF16 sparse, 13.4 TB HBM3e, 576 TB/s,"
                " 130 TB/s NVLink per 72 GPUs); rack ~120-132 kW, liquid cooled"
            ),
            rack_devices=(("nvswitch", NVL72_SWITCH_TRAYS), ("power-shelf", NVL72_POWER_SHELVES)),
        ),
        GpuSku(
            name="GB300-NVL72",
            form_factor="nvl72",
            gpus_per_node=4,
            default_nodes_per_rack=18,
            default_nodes_per_su=144,
            compute_rails=4,
            hbm_gb=288,
            hbm_tbps=8.0,
            bf16_dense_tflops=2500,
            nvlink_gbps=1800,
            gpu_tdp_w=1400,
            node_max_kw=140 / 18,
            rack_max_kw=140,
            cooling="liquid",
            min_driver_branch=580,
            source=(
                "NVIDIA GB300 NVL72 datasheet (360 PFLOPS BF16 sparse, up to 21 TB HBM3e, 576 TB/s,"
                " 130 TB/s NVLink per 72 GPUs); rack ~135-140 kW, liquid cooled"
            ),
            rack_devices=(("nvswitch", NVL72_SWITCH_TRAYS), ("power-shelf", NVL72_POWER_SHELVES)),
        ),
    )
}

SwitchTechnology = Literal["infiniband-ndr", "infiniband-xdr", "spectrum-x", "ethernet"]


@dataclass(frozen=True, slots=True)
class SwitchModel:
    """A fabric switch: its radix and how a leaf splits it between nodes (down) and the next tier (up)."""

    name: str
    technology: SwitchTechnology
    radix: int
    """Ports at the fabric's link speed (an NDR QM9700 has 64 x 400G)."""
    leaf_downlinks: int
    leaf_uplinks: int
    port_gbps: int
    max_power_w: int
    source: str
    spine: str | None = None
    """The model of the fabric's spines and cores when this one is a leaf only: a switch with few uplink ports (an
    SN2201 has 48 x 1G down and 4 x 100G up) is never a spine; its uplinks go to this model. None: itself."""


SUPERPOD_SOURCES = {
    "H100": "NVIDIA DGX SuperPOD with DGX H100 systems RA, Network Fabrics, Table 4 (compute fabric component count)",
    "B200": (
        "NVIDIA DGX SuperPOD with DGX B200 systems RA, DGX SuperPOD Architecture (larger SuperPOD component counts)"
    ),
    "XDR": (
        "NVIDIA DGX SuperPOD with DGX B300 systems (InfiniBand XDR) RA, DGX SuperPOD Architecture, Table 3 (example"
        " compute fabric components): Quantum-X800 Q3400 leaves of 72 node ports, 8 leaves per scalable unit of 576"
        " XDR endpoints, spines 4/8/18/36/72 for 1/2/4/8/18 units; the same 576 endpoints make a GB200/GB300 NVL72"
        " unit (8 racks x 18 trays x 4 NICs), whose 8-unit fabric NVIDIA sizes at 36 spines"
    ),
    "NVL72": (
        "NVIDIA DGX GB200 user guide, Hardware (rack configuration): per 72-GPU rack 18 compute trays, 9 NVLink switch"
        " trays, power shelves; NVIDIA DGX SuperPOD GB200 RA, Network Fabrics: NVLink switch trays and power shelves"
        " are managed out of band (BMC) like the compute trays"
    ),
}
"""The published DGX SuperPOD tables sizing is tested against (tests/test_sizing.py), by reference architecture."""

SWITCH_CATALOG: dict[str, SwitchModel] = {
    sw.name: sw
    for sw in (
        SwitchModel("QM9700", "infiniband-ndr", 64, 32, 32, 400, 1720, "NVIDIA Quantum-2 QM9700 datasheet"),
        SwitchModel("QM9790", "infiniband-ndr", 64, 32, 32, 400, 1720, "NVIDIA Quantum-2 QM9790 datasheet"),
        SwitchModel("Q3400-RA", "infiniband-xdr", 144, 72, 72, 800, 3600, "NVIDIA Quantum-X800 Q3400 brief (approx.)"),
        SwitchModel("SN5600", "spectrum-x", 64, 32, 32, 800, 2300, "NVIDIA Spectrum SN5600 datasheet"),
        SwitchModel("SN4600C", "ethernet", 64, 32, 32, 100, 800, "NVIDIA Spectrum SN4600C datasheet"),
        SwitchModel(
            "SN2201",
            "ethernet",
            52,
            48,
            4,
            1,
            100,
            "NVIDIA Spectrum SN2201 datasheet (48x1G + 4x100G); a leaf only: the out-of-band leaves of DGX BasePOD"
            " and SuperPOD uplink to the SN4600C Ethernet backbone (DGX BasePOD deployment guide, network overview)",
            spine="SN4600C",
        ),
    )
}

# Minimum driver branch for each CUDA minor release (NVIDIA CUDA toolkit release notes, table 3).
CUDA_MIN_DRIVER_BRANCH: dict[str, int] = {
    "12.0": 525,
    "12.1": 530,
    "12.2": 535,
    "12.3": 545,
    "12.4": 550,
    "12.5": 555,
    "12.6": 560,
    "12.8": 570,
    "12.9": 575,
    "13.0": 580,
}

OPERATOR_DRIVER_RELEASES: dict[int, str] = {570: "570.86.15", 580: "580.65.06"}
"""The datacenter driver release fjord pins per branch for clusters whose GPU Operator owns the driver (the
GPU Operator's driver container is published per release: NVIDIA GPU Operator component matrix). A site
whose operator-owned driver is of any other branch is rejected by validation (`Site`), not by the platform."""
