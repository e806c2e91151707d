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


def _cli_modules(*args: str) -> set[str]:
    """The modules loaded by the `fjord` process itself for `fjord <args>`, run in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from fjord.cli.main import app\n"
        f"try:\n    app({list(args)!r})\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(proc.stderr.splitlines()[-1]))


# Each costs more than Python's start: boto3 ~90 ms, sushy with requests ~50 ms, fjord's site model ~35 ms (with
# the sizing modules), Pulumi's SDK ~140 ms. `fjord --help` went from ~0.5 s to ~0.2 s (bench/cli_start.py).
# pydantic is not among them: Typer itself loads it to convert a command's arguments (typer._adapters).
CLIENT_LIBRARIES = ("boto3", "botocore", "sushy", "requests", "ansible_runner", "ansible", "pulumi")
SITE_MODEL = ("fjord.spec.models", "fjord.sizing.site", "fjord.platform.build", "fjord.hosts.inventory")


def test_starting_the_cli_loads_no_client_library() -> None:
    """`fjord --help` and `fjord stacks` load none of the libraries a command talks to the world with, nor the
    site model: each is imported by the command that uses it."""
    for args in (
        ["--help"],
        ["stacks"],
        ["bmc", "--help"],
        ["state", "--help"],
        ["artifacts", "--help"],
        ["up", "--help"],
    ):
        loaded = _cli_modules(*args)
        assert "fjord.cli.main" in loaded
        assert not {m.split(".")[0] for m in loaded} & set(CLIENT_LIBRARIES), (args, loaded)
        assert not loaded & set(SITE_MODEL), (args, loaded & set(SITE_MODEL))


def test_plan_and_validate_load_only_what_they_use() -> None:
    """`fjord plan` validates and plans in its worker process (tests above pin what that loads): the `fjord`
    process itself loads neither the site model nor Pulumi. `fjord validate` loads the model and sizing, and no
    client library."""
    planned = _cli_modules("plan", "dev", "--json")
    assert "fjord.plan.runner" in planned
    assert not {m.split(".")[0] for m in planned} & set(CLIENT_LIBRARIES)
    assert not planned & set(SITE_MODEL)
    validated = _cli_modules("validate", "dev")
    assert {"fjord.spec.models", "fjord.sizing.site"} <= validated
    assert not {m.split(".")[0] for m in validated} & set(CLIENT_LIBRARIES)
