"""Credentials: they reach the Pulumi engine only as secrets, and a credential kept in plain text is refused.

The engine encrypts in state every value that arrives as a secret (an input wrapped in Pulumi's secret
envelope) and every output the request names in `additionalSecretOutputs`; whatever else arrives is stored
in plain text. So these tests read the very requests the program sends (fjord's plan worker, in a child
process under the plan's mocks, with a spy on the monitor), and check that the BMC password and a cluster's
kubeconfig, set as Pulumi secrets the way the Pulumi CLI passes them to the program (decrypted, their keys
named secret), appear nowhere but inside a secret envelope: not in any request, component output, the
plan's result, the stack's exports or the process's output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key

from fjord.cli.main import EXIT_REJECTED

from .test_cli import CIPHERTEXT, fjord, write_stack

PASSWORD = "bmc-pw-never-in-state-7351"
KUBECONFIG = "apiVersion: v1\nkind: Config\n# kubeconfig-never-in-state-9146\n"
POOL = "pulumi-python:dynamic/baremetal:NodePool"
K8S_PROVIDER = "pulumi:providers:kubernetes"

PROBE = """
import dataclasses, json, sys
from pathlib import Path
from google.protobuf import json_format
from fjord.plan import mocks, worker
from fjord.spec.errors import SiteError
from fjord.spec.load import read_stack

config, secret_keys, folder = json.loads(sys.argv[1])
requests, outputs = [], []

class Spy(mocks.RecordingMonitor):
    def RegisterResource(self, request):
        requests.append({
            "type": request.type,
            "name": request.name,
            "object": json_format.MessageToDict(request.object),
            "secret_outputs": list(request.additionalSecretOutputs),
        })
        return super().RegisterResource(request)

    def RegisterResourceOutputs(self, request):
        outputs.append(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)

cfg = read_stack("dev", Path(folder))
cfg = dataclasses.replace(cfg, config={**cfg.config, **config}, secret_keys=tuple(secret_keys))
result = exports = error = None
try:
    result = worker.run(cfg, monitor_type=Spy)
    exports = worker.stack_outputs()
except SiteError as exc:
    error = str(exc)
print(json.dumps({"requests": requests, "outputs": outputs, "result": result, "exports": exports, "error": error}))
"""


def plan_dev(tmp_path: Path, config: dict[str, str], secret_keys: list[str]) -> tuple[dict[str, Any], str]:
    """Plan the embedded `dev` site in a child with this config handed to the program; (what it sent, stderr)."""
    args = json.dumps([config, secret_keys, str(tmp_path)])
    proc = subprocess.run([sys.executable, "-c", PROBE, args], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def is_secret_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_special_sig_key) == _special_secret_sig


def plain_places(value: Any, needle: str, path: str = "") -> list[str]:
    """Where `needle` occurs in `value` outside a secret envelope (dict keys included)."""
    if is_secret_envelope(value):
        return []
    if isinstance(value, dict):
        found = [f"{path}.<key {k}>" for k in value if needle in str(k)]
        return found + [p for k, v in value.items() for p in plain_places(v, needle, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in plain_places(v, needle, f"{path}[{i}]")]
    return [path or "."] if needle in str(value) else []


def test_credentials_reach_the_engine_only_as_secrets(tmp_path: Path) -> None:
    keys = {"fjord:bmcPassword": PASSWORD, "fjord:kubeconfig-h100": KUBECONFIG}
    sent, stderr = plan_dev(tmp_path, keys, list(keys))
    assert sent["error"] is None
    pools = [r for r in sent["requests"] if r["type"] == POOL]
    providers = [r for r in sent["requests"] if r["type"] == K8S_PROVIDER]
    assert len(pools) == 1
    assert len(providers) == 1
    # The password goes in as a secret, and its output of the same name is marked secret: both encrypted.
    assert pools[0]["object"]["password"] == {_special_sig_key: _special_secret_sig, "value": PASSWORD}
    assert "password" in pools[0]["secret_outputs"]
    assert providers[0]["object"]["kubeconfig"] == {_special_sig_key: _special_secret_sig, "value": KUBECONFIG}
    for needle in (PASSWORD, "kubeconfig-never-in-state-9146"):
        assert plain_places(sent["requests"], needle) == []
        assert plain_places(sent["outputs"], needle) == []
        assert needle not in json.dumps(sent["result"])
        assert needle not in json.dumps(sent["exports"])
        assert needle not in stderr
    # The probe would find a plain copy: the envelopes it skips do hold the values.
    assert plain_places(pools[0]["object"]["password"]["value"], PASSWORD) == ["."]


@pytest.mark.parametrize("key", ["fjord:bmcPassword", "fjord:kubeconfig-h100"])
def test_program_refuses_a_credential_set_without_secret_before_registering(tmp_path: Path, key: str) -> None:
    """`pulumi config set` without --secret keeps the value in plain text and hands it to the program
    unmarked: the program refuses it, naming the key and not the value, before its first resource."""
    sent, stderr = plan_dev(tmp_path, {key: PASSWORD}, [])
    assert sent["error"] is not None
    assert key in sent["error"]
    assert "plain text" in sent["error"]
    assert "pulumi config set --secret" in sent["error"]
    assert PASSWORD not in sent["error"] + stderr
    assert [r["type"] for r in sent["requests"]] == ["pulumi:pulumi:Stack"]


@pytest.mark.parametrize(
    "key", ["fjord:bmcPassword", "bmcPassword", "fjord:s3SecretAccessKey", "fjord:kubeconfig-h100"]
)
def test_a_stack_file_with_a_plain_credential_is_refused_without_showing_it(tmp_path: Path, key: str) -> None:
    write_stack(tmp_path, "dev", None, {key: PASSWORD})
    full = key if ":" in key else f"fjord:{key}"
    for args in (["validate", "dev"], ["size", "dev"], ["plan", "dev", "--json"]):
        proc = fjord(*args, "--stacks-dir", str(tmp_path))
        assert proc.returncode == EXIT_REJECTED, proc.stdout + proc.stderr
        assert full in proc.stderr
        assert "plain text" in proc.stderr
        assert f"pulumi config set --secret {full}" in proc.stderr
        assert PASSWORD not in proc.stdout + proc.stderr


def test_the_same_credentials_encrypted_are_accepted(tmp_path: Path) -> None:
    keys = ["fjord:bmcPassword", "fjord:s3SecretAccessKey", "fjord:kubeconfig-h100"]
    write_stack(tmp_path, "dev", None, {k: {"secure": CIPHERTEXT} for k in keys})
    proc = fjord("plan", "dev", "--json", "--stacks-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert CIPHERTEXT not in proc.stdout + proc.stderr
