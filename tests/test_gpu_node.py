"""validate.yml for real on an NVIDIA GPU machine (marker `gpu`): skipped, with the reason, where there is none.

The module needs nothing but the standard library, pytest, ansible-core and the catalog (loaded by file path),
so it also runs on a GPU machine that has PyTorch but not fjord's own dependencies:
`python3 -m pytest -m gpu --noconftest tests/test_gpu_node.py`.

What it proves on the machine:
- the playbook runs end to end with a local connection and fetches one JSON report for the node;
- the validator reads the machine right: the GPU model and count and the driver branch it was told to expect
  (taken from `nvidia-smi` here, since a lent machine is not a node of any stack) all pass;
- the HBM and BF16 GEMM micro-benchmarks ran (not skipped) and measured a figure between zero and the catalog's
  peak for that GPU (a figure over the peak means the arithmetic is wrong);
- a node that does not match the spec (told to expect one GPU more than it has) fails the play, named with the
  failed check.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "playbooks" / "validate.yml"
CATALOG = REPO / "components" / "fjord" / "spec" / "catalog.py"

pytestmark = pytest.mark.gpu


def _machine_gpus() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        return []
    rows = [line.split(",") for line in out.stdout.splitlines() if line.strip()]
    return [{"name": name.strip(), "driver": driver.strip()} for name, driver in rows]


GPUS = _machine_gpus()
if not GPUS:
    pytest.skip("needs an NVIDIA GPU: nvidia-smi is missing or finds no GPU on this machine", allow_module_level=True)


@functools.cache
def _catalog_sku(gpu_name: str) -> Any:
    spec = importlib.util.spec_from_file_location("fjord_catalog_by_path", CATALOG)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    matches = [sku for sku in module.GPU_CATALOG.values() if sku.name.split("-")[0].lower() in gpu_name.lower()]
    if not matches:
        pytest.skip(f"the catalog has no SKU for {gpu_name!r}; the peaks to compare with are unknown")
    return matches[0]


def _ansible_playbook() -> str:
    found = shutil.which("ansible-playbook", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        pytest.fail("ansible-playbook is not installed next to this Python nor on PATH")
    return found


def _validate(tmp_path: Path, **overrides: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    sku = _catalog_sku(GPUS[0]["name"])
    extra = {
        # Expected from the machine itself (model prefix as the inventory writes it, count, branch) ...
        "gpu_validate_expected_model": sku.name.split("-")[0],
        "gpu_validate_expected_count": len(GPUS),
        "nvidia_driver_branch": int(GPUS[0]["driver"].split(".")[0]),
        # ... the peaks from the catalog, as fjord's inventory sets them for a node of that SKU.
        "gpu_validate_bf16_peak_tflops": sku.bf16_dense_tflops,
        "gpu_validate_hbm_peak_tbps": sku.hbm_tbps,
        "gpu_validate_python": sys.executable,
        "ansible_python_interpreter": sys.executable,
        "gpu_validate_node_dir": str(tmp_path / "node"),
        "gpu_validate_report_dir": str(tmp_path / "reports"),
        "gpu_validate_labels": {"site": "lab", "cluster": "lent-gpu-machine"},
        **overrides,
    }
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    argv = [_ansible_playbook(), "-i", "localhost,", "-c", "local", str(PLAYBOOK), "-e", f"@{tmp_path / 'vars.json'}"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false"}
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=1800, check=False)
    report = tmp_path / "reports" / "localhost.json"
    return out, (json.loads(report.read_text()) if report.exists() else None)


def test_validate_playbook_measures_this_node(tmp_path: Path) -> None:
    out, report = _validate(tmp_path, gpu_validate_fail_on_error=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert report is not None, out.stdout[-4000:]
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["gpu_count"] == status["gpu_model"] == status["driver_branch"] == "passed", report["checks"]
    assert {status["hbm_bandwidth"], status["bf16_gemm"]} <= {"passed", "failed"}, report["checks"]
    sku = _catalog_sku(GPUS[0]["name"])
    assert len(report["benchmarks"]["per_gpu"]) == len(GPUS), report["benchmarks"]
    for gpu in report["benchmarks"]["per_gpu"]:
        assert 0 < gpu["hbm_tbps"] <= sku.hbm_tbps, gpu
        assert 0 < gpu["bf16_tflops"] <= sku.bf16_dense_tflops, gpu
    if os.environ.get("FJORD_VALIDATION_REPORT"):
        Path(os.environ["FJORD_VALIDATION_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")


def test_a_node_that_does_not_match_the_spec_is_failed_by_name(tmp_path: Path) -> None:
    out, report = _validate(tmp_path, gpu_validate_expected_count=len(GPUS) + 1, gpu_validate_benchmarks=False)
    assert out.returncode != 0, out.stdout[-4000:]
    assert "node validation failed: gpu_count" in out.stdout, out.stdout[-4000:]
    assert report is not None
    assert report["status"] == "failed"
