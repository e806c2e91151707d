"""Layering: spec and sizing are pure; components reach the outside world only through adapters."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPURE = ("pulumi", "pulumi_kubernetes", "boto3", "botocore", "ansible_runner", "ansible", "sushy", "redfish")


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
    assert "spec and sizing are pure" in proc.stdout


def test_spec_and_sizing_load_nothing_impure() -> None:
    """Importing and running spec + sizing in a fresh interpreter pulls in no Pulumi, boto3 or Ansible."""
    code = (
        "import json, sys\n"
        "from fjord.spec.load import default_site, load_site\n"
        "from fjord.sizing import size_site\n"
        "from fjord.platform import build_platform\n"
        "site = load_site(default_site())\n"
        "build_platform(site, size_site(site).clusters[0])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(proc.stdout))
    assert "fjord" in loaded
    assert loaded.isdisjoint(IMPURE), loaded & set(IMPURE)


def test_the_plan_loads_only_what_registering_needs() -> None:
    """`fjord plan` registers resources; it loads neither what only running them needs (ansible-runner and
    fjord's Ansible adapter, the Redfish client) nor pulumi-kubernetes' typed classes, whose imports cost more
    than a dev plan (fjord registers the same requests without them: tests/test_kubernetes_registration.py)."""
    code = (
        "import json, sys\n"
        "from fjord.plan.worker import run\n"
        "from fjord.spec.load import read_stack\n"
        "result = run(read_stack('dev'))\n"
        "assert result['by_type']['kubernetes:helm.sh/v3:Release'] == 3, result['by_type']\n"
        # pulumi-kubernetes puts its subpackages in sys.modules as lazy modules: count the loaded ones.
        "print(json.dumps(sorted(k for k, m in sys.modules.items() if type(m).__name__ != '_LazyModule')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert {"fjord.program", "pulumi_kubernetes", "fjord.providers.playbook"} <= loaded
    unwanted = ("ansible_runner", "ansible", "sushy", "requests", "fjord.adapters.ansible", "fjord.adapters.redfish")
    assert not {
        m for m in loaded if m in unwanted or m.startswith(("pulumi_kubernetes.helm", "pulumi_kubernetes.core"))
    }
    assert {m for m in loaded if m.startswith("pulumi_kubernetes.")} <= {
        "pulumi_kubernetes._inputs",
        "pulumi_kubernetes._utilities",
        "pulumi_kubernetes.provider",
    }
