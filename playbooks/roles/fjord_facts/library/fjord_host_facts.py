#!/usr/bin/python
# Copyright: fjord contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: what GPU-site hardware a host has, read from sysfs (no pciutils needed)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: fjord_host_facts
short_description: Count NVIDIA GPUs, NVSwitches and Mellanox/NVIDIA network adapters from sysfs
description:
  - Reads C(vendor) and C(class) of every device under C(/sys/bus/pci/devices), so it works on minimal hosts
    without C(lspci), and reports the counts as the fact C(fjord_hw).
  - Also reports whether the NVIDIA kernel driver is loaded (C(/proc/driver/nvidia/version)) and its version.
options:
  sysfs_root:
    description: Directory holding the PCI devices.
    type: path
    default: /sys/bus/pci/devices
author: fjord contributors
"""

EXAMPLES = r"""
- name: Fjord facts | Count GPUs, NVSwitches and NICs
  fjord_host_facts:
"""

RETURN = r"""
ansible_facts:
  description: C(fjord_hw) with C(nvidia_gpus), C(nvswitches), C(nvidia_nics), C(infiniband_nics),
    C(gpu_pci_addresses), C(nvidia_driver_loaded), C(nvidia_driver_version).
  returned: always
  type: dict
"""

import os  # noqa: E402 (Ansible modules put their documentation first)
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

NVIDIA = "0x10de"
MELLANOX = "0x15b3"
# PCI class codes (base class, subclass): 03 00 VGA, 03 02 3D controller (datacenter GPUs), 06 80 bridge (NVSwitch),
# 02 00 Ethernet, 02 07 InfiniBand.
GPU_CLASSES = ("0x0300", "0x0302")
NVSWITCH_CLASS = "0x0680"
ETHERNET_CLASS = "0x0200"
INFINIBAND_CLASS = "0x0207"


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def scan(sysfs_root: str) -> dict[str, object]:
    gpus: list[str] = []
    nvswitches = 0
    nics = 0
    ib_nics = 0
    # A virtual function is not a physical adapter: count physical functions only.
    devices = sorted(os.listdir(sysfs_root)) if os.path.isdir(sysfs_root) else []
    for address in devices:
        device = os.path.join(sysfs_root, address)
        vendor = _read(os.path.join(device, "vendor"))
        pci_class = _read(os.path.join(device, "class"))[:6]
        if os.path.exists(os.path.join(device, "physfn")):
            continue
        if vendor == NVIDIA and pci_class in GPU_CLASSES:
            gpus.append(address)
        elif vendor == NVIDIA and pci_class == NVSWITCH_CLASS:
            nvswitches += 1
        elif vendor in (MELLANOX, NVIDIA) and pci_class in (ETHERNET_CLASS, INFINIBAND_CLASS):
            nics += 1
            ib_nics += pci_class == INFINIBAND_CLASS
    version_text = _read("/proc/driver/nvidia/version")
    match = re.search(r"Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)", version_text)
    return {
        "nvidia_gpus": len(gpus),
        "gpu_pci_addresses": gpus,
        "nvswitches": nvswitches,
        "nvidia_nics": nics,
        "infiniband_nics": ib_nics,
        "nvidia_driver_loaded": bool(version_text),
        "nvidia_driver_version": match.group(1) if match else "",
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={"sysfs_root": {"type": "path", "default": "/sys/bus/pci/devices"}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, ansible_facts={"fjord_hw": scan(module.params["sysfs_root"])})


if __name__ == "__main__":
    main()
