"""The Ansible inventory generated from the site model: groups, the variable interface, limits, scale."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fjord.cli.main import EXIT_REJECTED, app
from fjord.hosts import build_inventory
from fjord.hosts.inventory import UnknownTarget, cluster_vars, site_vars, upgrade_vars
from fjord.sizing.site import size_site
from fjord.spec.load import load_site
from tests.conftest import STACKS, stack_site

# The variables the roles read (i3-CONTRACT.md, "Interface"): every one is set for every host.
CONTRACT_VARS = {
    "fjord_site",
    "fjord_cluster",
    "fjord_scalable_unit",
    "fjord_rack",
    "fjord_hall",
    "fjord_node_role",
    "fjord_os",
    "fjord_package_mirror",
    "nvidia_driver_branch",
    "nvidia_driver_source",
    "nvidia_driver_manage",
    "nvidia_container_toolkit_manage",
    "cuda_toolkit_version",
    "fabric_manager_enabled",
    "doca_ofed_enabled",
    "k8s_node_enabled",
    "k8s_node_version",
    "gpu_validate_expected_model",
    "gpu_validate_expected_count",
    "gpu_validate_dcgm_level",
    "gpu_validate_gemm_min_fraction",
    "gpu_validate_hbm_min_fraction",
    "gpu_validate_bf16_peak_tflops",
    "gpu_validate_hbm_peak_tbps",
    "fjord_upgrade_batch_percent",
    "fjord_upgrade_max_fail_percentage",
    "fjord_gpu_sku",
    "fjord_gpu_min_driver_branch",
    "fjord_cuda_min_driver_branch",
    "fjord_compute_nics_expected",
}


def _inventory_host(inventory: dict[str, Any], host: str, tmp_path: Path) -> dict[str, Any]:
    """A host's variables as Ansible itself resolves them from the generated file."""
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(inventory), encoding="utf-8")
    exe = Path(sys.executable).with_name("ansible-inventory")
    proc = subprocess.run(
        [str(exe), "-i", str(path), "--host", host],
        capture_output=True,
        text=True,
        check=True,
        env={"ANSIBLE_INVENTORY_ENABLED": "yaml", "PATH": str(exe.parent), "HOME": str(tmp_path)},
    )
    assert "WARNING" not in proc.stderr, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_dev_inventory_as_ansible_reads_it(dev_site: dict[str, Any], tmp_path: Path) -> None:
    site = load_site(dev_site)
    inv = build_inventory(site, size_site(site))
    assert inv.hosts == tuple(f"dev-h100-su000-n{i:03d}" for i in range(4))
    assert {"site_dev", "hall_lab", "cluster_h100", "su_h100_000", "rack_lab_r0001"} <= set(inv.groups)
    hv = _inventory_host(inv.data, "dev-h100-su000-n002", tmp_path)
    assert set(hv) >= CONTRACT_VARS, CONTRACT_VARS - set(hv)
    assert hv["ansible_host"] == "10.0.4.4"
    assert (hv["fjord_site"], hv["fjord_cluster"], hv["fjord_scalable_unit"]) == ("dev", "h100", 0)
    assert (hv["fjord_rack"], hv["fjord_hall"], hv["fjord_node_role"]) == ("lab-r0001", "lab", "gpu")
    assert hv["nvidia_driver_branch"] == 570
    assert hv["cuda_toolkit_version"] == "12.8"
    assert hv["gpu_validate_expected_model"] == "H100"
    assert hv["gpu_validate_expected_count"] == 8
    assert hv["gpu_validate_bf16_peak_tflops"] == 989
    assert hv["gpu_validate_hbm_peak_tbps"] == 3.35
    assert hv["fabric_manager_enabled"] is True
    assert hv["k8s_node_enabled"] is True
    assert hv["fjord_package_mirror"] is None  # not an air-gapped site


def test_ownership_and_air_gap_reach_the_hosts() -> None:
    raw = stack_site("narvik")
    site = load_site(raw)
    sv = site_vars(site)
    assert sv["fjord_package_mirror"] == "https://mirror.narvik.fjord.example/apt"
    assert sv["nvidia_driver_source"] == "mirror"
    assert sv["fjord_os"] == "ubuntu-24.04"
    raw["clusters"][0]["gpu_stack"] = {"driver": "operator", "container_toolkit": "operator"}
    operated = load_site(raw)
    cv = cluster_vars(operated, operated.clusters[0])
    assert cv["nvidia_driver_manage"] is False
    assert cv["nvidia_container_toolkit_manage"] is False
    assert cv["fabric_manager_enabled"] is False  # NVL72 trays: the NVLink switches are in the rack
    assert cluster_vars(operated, operated.clusters[1])["nvidia_driver_manage"] is True


def test_narvik_every_host_once_in_one_unit_and_one_rack() -> None:
    site = load_site(stack_site("narvik"))
    size = size_site(site)
    inv = build_inventory(site, size)
    assert len(inv.hosts) == len(set(inv.hosts)) == 25_200
    groups = inv.data["all"]["children"]
    in_units = Counter(h for g, d in groups.items() if g.startswith("su_") for h in d["hosts"])
    in_racks = Counter(h for g, d in groups.items() if g.startswith("rack_") for h in d["hosts"])
    assert set(in_units) == set(in_racks) == set(inv.hosts)
    assert max(in_units.values()) == max(in_racks.values()) == 1
    assert sum(g.startswith("su_") for g in groups) == 176


def test_limit_to_unit_rack_and_host() -> None:
    site = load_site(stack_site("narvik"))
    size = size_site(site)
    unit = build_inventory(site, size, ["su_gb200_a_003"])
    assert len(unit.hosts) == 144
    assert all(h.startswith("narvik-gb200-a-su003-") for h in unit.hosts)
    assert {"site_narvik", "cluster_gb200_a", "su_gb200_a_003"} <= set(unit.groups)
    rack = build_inventory(site, size, ["rack_hall_a_r0002", "narvik-gb300-b-su001-n005"])
    assert len(rack.hosts) == 19
    assert "narvik-gb300-b-su001-n005" in rack.hosts
    # The limited inventory carries the same variables as the whole one.
    cluster = build_inventory(site, size, ["cluster_gb300_b"])
    whole = build_inventory(site, size)
    assert cluster.data["all"]["children"]["cluster_gb300_b"] == whole.data["all"]["children"]["cluster_gb300_b"]


@pytest.mark.parametrize("bad", ["bogus", "su_gb200_a_999", "narvik-gb200-a-su000-n999", "/etc/passwd"])
def test_unknown_limit_is_rejected_with_what_is_allowed(bad: str) -> None:
    site = load_site(stack_site("narvik"))
    with pytest.raises(UnknownTarget, match=r"is no group or host of site narvik; allowed: cluster_gb200_a"):
        build_inventory(site, size_site(site), [bad])


def test_digest_follows_the_spec(dev_site: dict[str, Any]) -> None:
    site = load_site(dev_site)
    first = build_inventory(site, size_site(site))
    assert build_inventory(site, size_site(site)).digest == first.digest
    dev_site["software"]["driver_branch"] = 575
    bumped = load_site(dev_site)
    assert build_inventory(bumped, size_site(bumped)).digest != first.digest


def test_upgrade_policy_is_the_one_of_the_clusters_in_the_limit() -> None:
    site = load_site(stack_site("uk"))  # b200 sets its own policy (5 %, 1 %), h200 keeps the spec's defaults
    assert upgrade_vars(site, ["b200"]) == {"fjord_upgrade_batch_percent": 5, "fjord_upgrade_max_fail_percentage": 1}
    assert upgrade_vars(site, ["h200"]) == {"fjord_upgrade_batch_percent": 10, "fjord_upgrade_max_fail_percentage": 0}
    with pytest.raises(ValueError, match=r"different upgrade policies .*\[\(5, 1\), \(10, 0\)\]; allowed: a --limit"):
        upgrade_vars(site, ["h200", "b200"])


UPGRADE_PROBE = """
- name: Probe | The upgrade policy the playbook is handed
  hosts: all
  gather_facts: false
  serial: "{{ fjord_upgrade_batch_percent }}%"
  max_fail_percentage: "{{ fjord_upgrade_max_fail_percentage }}"
  tasks:
    - name: Probe | Write it down
      ansible.builtin.copy:
        content: "{{ fjord_upgrade_batch_percent }} {{ fjord_upgrade_max_fail_percentage }}"
        dest: "OUT"
        mode: "0644"
      delegate_to: localhost
      run_once: true
"""


def test_configure_hands_the_upgrade_playbook_the_policy_of_its_cluster(tmp_path: Path) -> None:
    """`fjord configure --playbook upgrade-gpu-stack.yml` runs Ansible with the limited cluster's policy as extra
    vars (a stand-in playbook of that name writes down what it got, from this machine); a limit spanning two
    clusters with different policies is refused before Ansible runs."""
    policy = tmp_path / "policy"
    (tmp_path / "upgrade-gpu-stack.yml").write_text(UPGRADE_PROBE.replace("OUT", str(policy)))
    site = load_site(stack_site("uk"))
    host = next(h for h in build_inventory(site, size_site(site), ["cluster_b200"]).hosts)
    args = ["configure", "uk", "--playbook", "upgrade-gpu-stack.yml", "--playbooks-dir", str(tmp_path)]
    args += ["--stacks-dir", str(STACKS), "--json"]
    ran = CliRunner().invoke(app, [*args, "--limit", host])
    assert ran.exit_code == 0, ran.output
    assert policy.read_text() == "5 1"
    policy.unlink()
    refused = CliRunner().invoke(app, [*args, "--limit", "cluster_h200,cluster_b200"])
    assert refused.exit_code == EXIT_REJECTED
    assert "different upgrade policies" in refused.output
    assert "allowed: a --limit within one cluster" in refused.output
    assert not policy.exists()
