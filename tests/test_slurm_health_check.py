"""fjord's Slurm node health check (playbooks/roles/slurm/files/fjord-slurm-health-check), run for real with a
stand-in scontrol that records what it is asked and a stand-in validation script that passes or fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "playbooks/roles/slurm/files/fjord-slurm-health-check"


def _setup(tmp_path: Path, expect_gpus: int, validate_rc: int | None, reason: str) -> tuple[dict[str, str], Path]:
    calls = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'if [ "$1" = show ]; then\n'
        "  echo 'NodeName=n001 Arch=x86_64'\n"
        f"  echo '   Reason={reason} [root@2026-12-06T20:00:00]'\n"
        "fi\n",
        encoding="utf-8",
    )
    scontrol.chmod(0o755)
    validate = tmp_path / "validate.py"
    if validate_rc is not None:
        report = {"checks": [{"check": "gpu count", "status": "failed" if validate_rc else "passed"}]}
        validate.write_text(
            "import json, sys\n"
            "out = sys.argv[sys.argv.index('--out') + 1]\n"
            f"json.dump({report!r}, open(out, 'w'))\n"
            f"sys.exit({validate_rc})\n",
            encoding="utf-8",
        )
    conf = tmp_path / "health.conf"
    conf.write_text(
        "FJORD_DRAIN_PREFIX='fjord:'\nFJORD_NODE='n001'\n"
        f"FJORD_EXPECT_GPUS='{expect_gpus}'\nFJORD_VALIDATE='{validate}'\n"
        "FJORD_VALIDATE_ARGS='--expected-count 4 --no-benchmarks'\n"
        f"FJORD_REPORT='{tmp_path / 'report.json'}'\n",
        encoding="utf-8",
    )
    return {"FJORD_CONF": str(conf), "FJORD_SCONTROL": str(scontrol), "PATH": "/usr/bin:/bin"}, calls


def _run(env: dict[str, str]) -> int:
    return subprocess.run(["/bin/sh", str(SCRIPT)], env=env, check=False, capture_output=True).returncode


def _updates(calls: Path) -> list[str]:
    if not calls.exists():
        return []
    return [line for line in calls.read_text().splitlines() if line.startswith("update")]


def test_a_failing_gpu_node_is_drained_with_fjords_reason_naming_the_check(tmp_path: Path) -> None:
    env, calls = _setup(tmp_path, expect_gpus=4, validate_rc=1, reason="none")
    assert _run(env) == 1
    assert _updates(calls) == ["update NodeName=n001 State=DRAIN Reason=fjord: health check failed: gpu count"]
    assert json.loads((tmp_path / "report.json").read_text())["checks"][0]["status"] == "failed"


def test_a_node_this_check_drained_is_resumed_once_it_passes(tmp_path: Path) -> None:
    env, calls = _setup(tmp_path, expect_gpus=4, validate_rc=0, reason="fjord: health check failed: gpu count")
    assert _run(env) == 0
    assert _updates(calls) == ["update NodeName=n001 State=RESUME"]


@pytest.mark.parametrize("reason", ["disk replacement (ops)", "fjord: upgrade-gpu-stack"])
def test_a_healthy_node_keeps_any_other_drain(tmp_path: Path, reason: str) -> None:
    env, calls = _setup(tmp_path, expect_gpus=4, validate_rc=0, reason=reason)
    assert _run(env) == 0
    assert _updates(calls) == []


def test_a_node_without_gpus_expected_runs_no_validation(tmp_path: Path) -> None:
    env, calls = _setup(tmp_path, expect_gpus=0, validate_rc=None, reason="none")
    assert _run(env) == 0
    assert _updates(calls) == []
    assert not (tmp_path / "report.json").exists()


def test_missing_validation_drains_a_gpu_node_and_says_why(tmp_path: Path) -> None:
    env, calls = _setup(tmp_path, expect_gpus=4, validate_rc=None, reason="none")
    assert _run(env) == 1
    (update,) = _updates(calls)
    assert update.startswith("update NodeName=n001 State=DRAIN Reason=fjord: health check failed: validation script")
    assert update.endswith("missing")
