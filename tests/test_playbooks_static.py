"""Static checks of the Ansible content: every playbook passes `ansible-playbook --syntax-check`, the whole tree
passes ansible-lint at the production profile and yamllint, roles keep their conventions, and the two small
programs the roles ship (the PCI fact module and the node acceptance script) behave on inputs built here."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = REPO / "playbooks"
ROLES = PLAYBOOKS / "roles"
BIN = Path(sys.executable).parent
PLAYBOOK_FILES = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if p.is_dir())


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}: run `make install` (dev extra)")
    return str(path)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_the_expected_playbooks_exist() -> None:
    assert set(PLAYBOOK_FILES) >= {"site.yml", "preflight.yml", "gpu-node.yml", "validate.yml", "upgrade-gpu-stack.yml"}


@pytest.mark.parametrize("playbook", PLAYBOOK_FILES)
def test_playbook_syntax(playbook: str) -> None:
    out = _run([_tool("ansible-playbook"), "--syntax-check", "-i", "localhost,", str(PLAYBOOKS / playbook)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_ansible_lint_production_profile() -> None:
    out = _run([_tool("ansible-lint"), "--profile", "production", "--offline", "playbooks"])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]


def test_yamllint_strict() -> None:
    out = _run([_tool("yamllint"), "--strict", "playbooks", ".ansible-lint"])
    assert out.returncode == 0, out.stdout + out.stderr


def _tasks(path: Path) -> list[dict[str, Any]]:
    loaded = yaml.safe_load(path.read_text()) or []
    found: list[dict[str, Any]] = []
    for task in loaded:
        found.append(task)
        for key in ("block", "rescue", "always"):
            found += task.get(key, [])
    return found


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_conventions(role: str) -> None:
    """Names 'Role | Sentence', prefixed defaults, a README, OS vars for the three supported releases."""
    title = role.replace("_", " ").capitalize()
    for path in [*(ROLES / role / "tasks").glob("*.yml"), *(ROLES / role).glob("handlers/*.yml")]:
        for task in _tasks(path):
            assert str(task.get("name", "")).startswith(f"{title} | "), f"{path}: {task.get('name')!r}"
    defaults_text = (ROLES / role / "defaults" / "main.yml").read_text()
    defaults = yaml.safe_load(defaults_text) or {}
    assert all(key.startswith(f"{role}_") for key in defaults), sorted(defaults)
    # The README mirrors the defaults file, comments and groups included (regenerate it when they change).
    assert defaults_text in (ROLES / role / "README.md").read_text(), f"{role}: README.md does not mirror the defaults"
    if role != "fjord_facts":
        for release in ("Debian-12", "Ubuntu-22.04", "Ubuntu-24.04"):
            assert (ROLES / role / "vars" / f"{release}.yml").is_file(), f"{role}: no vars/{release}.yml"


SECRET_VAR = re.compile(r"\{\{[^}]*(join_command|token|password|secret)[^}]*\}\}", re.IGNORECASE)
"""A Jinja expression using a variable that holds a credential (the kubeadm join command carries a token)."""


def test_tasks_that_use_a_secret_are_no_log() -> None:
    """Statically: every task of a role or a playbook's task file that uses a credential variable is no_log,
    so Ansible puts neither its arguments nor its result in any event, log or callback output."""
    paths = [*ROLES.glob("*/tasks/*.yml"), *(PLAYBOOKS / "tasks").glob("*.yml")]
    hits = [(path.name, task) for path in paths for task in _tasks(path) if SECRET_VAR.search(json.dumps(task))]
    assert [task["name"] for _, task in hits] == ["K8s node | Join the cluster"]
    assert all(task.get("no_log") is True for _, task in hits)


def test_gpu_work_is_tagged() -> None:
    """Every include of GPU-bound task files carries the gpu tag, for the include and the included tasks."""
    includes = [
        task
        for path in [*ROLES.glob("*/tasks/main.yml"), PLAYBOOKS / "gpu-node.yml"]
        for task in (_tasks(path)[0]["tasks"] if path.name == "gpu-node.yml" else _tasks(path))
        if "fjord_facts_gpu_present" in str(task.get("when", ""))
        and "is not defined" not in str(task.get("when", ""))  # fjord_facts' own detect-once guard
        and "ansible.builtin.include_tasks" in task
    ]
    assert len(includes) >= 8
    for task in includes:
        assert "gpu" in task["tags"], task["name"]
        assert "gpu" in task["ansible.builtin.include_tasks"]["apply"]["tags"], task["name"]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pci(root: Path, address: str, vendor: str, pci_class: str, *, virtual: bool = False) -> None:
    device = root / address
    device.mkdir(parents=True)
    (device / "vendor").write_text(vendor + "\n")
    (device / "class").write_text(pci_class + "\n")
    if virtual:
        (device / "physfn").write_text("")


def test_host_facts_counts_gpus_nvswitches_and_nics(tmp_path: Path) -> None:
    facts = _load(ROLES / "fjord_facts" / "library" / "fjord_host_facts.py", "fjord_host_facts")
    for i in range(8):
        _pci(tmp_path, f"0000:{0x18 + i:02x}:00.0", "0x10de", "0x030200")  # H100 SXM: 3D controller
    for i in range(4):
        _pci(tmp_path, f"0000:{0x80 + i:02x}:00.0", "0x10de", "0x068000")  # NVSwitch: bridge
    for i in range(8):
        _pci(tmp_path, f"0000:{0x40 + i:02x}:00.0", "0x15b3", "0x020700")  # ConnectX-7 InfiniBand
    _pci(tmp_path, "0000:50:00.0", "0x15b3", "0x020000")  # BlueField Ethernet
    _pci(tmp_path, "0000:50:00.2", "0x15b3", "0x020000", virtual=True)  # SR-IOV VF: not an adapter
    _pci(tmp_path, "0000:00:02.0", "0x8086", "0x030000")  # on-board VGA: not NVIDIA
    hw = facts.scan(str(tmp_path))
    assert (hw["nvidia_gpus"], hw["nvswitches"], hw["nvidia_nics"], hw["infiniband_nics"]) == (8, 4, 9, 8)
    assert hw["gpu_pci_addresses"][0] == "0000:18:00.0"
    assert facts.scan(str(tmp_path / "absent"))["nvidia_gpus"] == 0


def test_validation_report_without_a_gpu_says_why(tmp_path: Path) -> None:
    """Without nvidia-smi the script still writes its report: every GPU check skipped with the reason, and the
    node failed because the default gate requires them (a skipped required check is no pass)."""
    report = tmp_path / "report.json"
    argv = [sys.executable, str(ROLES / "gpu_validate" / "files" / "fjord_gpu_validate.py")]
    argv += ["--expected-model", "H100", "--expected-count", "8", "--driver-branch", "570"]
    argv += ["--bf16-peak-tflops", "989", "--hbm-peak-tbps", "3.35", "--labels", '{"site": "dev"}']
    argv += ["--out", str(report)]
    out = subprocess.run(argv, capture_output=True, text=True, env={"PATH": str(tmp_path)}, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    data = json.loads(report.read_text())
    assert data["status"] == "failed"
    assert data["labels"] == {"site": "dev"}
    checks = {c["check"]: c for c in data["checks"]}
    assert checks["gpu_count"]["status"] == "skipped"
    assert checks["gpu_count"]["actual"] == "no NVIDIA GPU here: nvidia-smi is not installed"
    assert checks["bf16_gemm"]["required"] is True
    assert "gpu_count" in data["blocking"]
    assert "bf16_gemm" in data["blocking"]


def test_validation_checks_compare_inventory_with_the_spec() -> None:
    script = _load(ROLES / "gpu_validate" / "files" / "fjord_gpu_validate.py", "fjord_gpu_validate")
    args = script.parse(["--expected-model", "H100", "--expected-count", "2", "--driver-branch", "570",
                         "--bf16-peak-tflops", "989", "--hbm-peak-tbps", "3.35", "--out", "x"])  # fmt: skip
    gpu = dict.fromkeys(script.QUERY, "")
    good = {**gpu, "index": "0", "name": "NVIDIA H100 80GB HBM3", "driver_version": "570.124.06",
            "persistence_mode": "Enabled", "ecc.errors.uncorrected.volatile.total": "0",
            "pcie.link.width.current": "16", "pcie.link.width.max": "16"}  # fmt: skip
    bad = {**good, "index": "1", "driver_version": "565.57.01", "persistence_mode": "Disabled",
           "ecc.errors.uncorrected.volatile.total": "3", "pcie.link.width.current": "8"}  # fmt: skip
    script.nvlink_state = lambda: {0: {"active": 18, "inactive": 0}, 1: {"active": 16, "inactive": 2}}
    status = {c["check"]: c["status"] for c in script.inventory_checks(args, [good, bad])}
    assert status == {
        "gpu_count": "passed",
        "gpu_model": "passed",
        "driver_branch": "failed",
        "persistence_mode": "failed",
        "ecc_uncorrected": "failed",
        "pcie_link_width": "failed",
        "nvlink": "failed",
    }
    dcgm = {"tests": [{"name": "PCIe", "results": [{"status": "Fail"}]}, {"name": "Memory", "status": "Pass"}]}
    assert script.failed_tests(dcgm) == {"PCIe"}
