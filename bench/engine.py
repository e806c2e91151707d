"""`fjord preview` through the real Pulumi engine, beside a bare Pulumi program of the same size, same run.

Run `.venv/bin/python bench/engine.py [--stacks dev uk narvik] [--repeat N] [--json]` after
`.ci/setup-pulumi.sh`. It prints and never asserts.

For each stack, one fresh project in a temporary folder (file:// backend, passphrase secrets, its own
PULUMI_HOME) runs:

- `fjord preview <stack> --json`: the whole command in a fresh process (site validation, sizing, the program
  under the engine, the dynamic providers' check and diff, the summary);
- the bare program: an inline Automation API program, also in a fresh process, registering the same number of
  component resources and of dynamic-provider resources (a provider that accepts everything) as fjord's
  preview reported, through the same CLI, backend and secrets provider: the floor any Pulumi program of that
  size pays on this machine.
- the bare program with fjord's data: the same inline program, registering fjord's very resources (the same
  component tree, each dynamic resource with the inputs fjord's program registers, the components' outputs
  and the stack's exports, captured from the program under Pulumi's mock runtime) through the same accepting
  provider. Its time is what the engine and the SDK cost for fjord's data; fjord minus it is fjord's own
  Python (validating and sizing the site, building inventories) and its providers' checks.

The stacks are made Slurm-only (their Kubernetes platforms off): no Kubernetes resource plugin can be built
here (docs/engine.md), and without one the engine cannot preview Kubernetes resources. Rows alternate fjord and
bare (then the bare program with fjord's data) per round; medians of --repeat rounds; each row counts the
resources each preview reported (the same for all three). Target (issue 27): narvik under 60 s, within 1.5x of bare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "components"))
PASSPHRASE = "bench-passphrase"

BARE_PROVIDER = """
import pulumi.dynamic as dyn


class Accept(dyn.ResourceProvider):
    def create(self, props):
        return dyn.CreateResult(id_="x", outs=props)


class Thing(dyn.Resource):
    def __init__(self, name, props, opts=None):
        super().__init__(Accept(), name, props, opts)
"""
"""The bare program's dynamic resource, in a module of its own: pickled by reference, as fjord's providers are."""

PREVIEW = r"""
opts = auto.LocalWorkspaceOptions(
    work_dir=root,
    pulumi_command=auto.PulumiCommand(root=str(Path(bin_dir).parent)),
    env_vars={"PULUMI_BACKEND_URL": backend, "PULUMI_SKIP_UPDATE_CHECK": "true", "PYTHONPATH": root,
              "PULUMI_RUNTIME_VIRTUALENV": sys.prefix, "PATH": bin_dir + os.pathsep + os.environ["PATH"]},
    secrets_provider="passphrase",
)
st = auto.create_or_select_stack(stack, project_name="@PROJECT@", program=program, opts=opts)
res = st.preview(color="never", on_output=lambda _l: None)
print(json.dumps({str(getattr(k, "value", k)): v for k, v in res.change_summary.items()}))
"""
"""The end both bare programs share: the same engine options, a preview, its change summary as JSON."""

BARE_DATA = r"""
import json, os, sys
from pathlib import Path
import pulumi
from pulumi import automation as auto
from bench_bare_provider import Thing

data_file, root, stack, backend, bin_dir = sys.argv[1:6]
SIG, SECRET = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"  # a secret, serialised
data = json.loads(Path(data_file).read_text())

def value(v):
    if isinstance(v, dict):
        if v.get(SIG) == SECRET:
            return pulumi.Output.secret(value(v["value"]))
        return {k: value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [value(x) for x in v]
    return v

def program():
    components = {}
    for r in data["resources"]:
        parent = components.get(r["parent"])
        opts = pulumi.ResourceOptions(parent=parent) if parent is not None else None
        if r["custom"]:
            Thing(r["name"], value(r["inputs"]), opts)
        else:
            c = pulumi.ComponentResource(r["type"], r["name"], None, opts)
            components[r["urn"]] = c
            c.register_outputs(value(data["outputs"].get(r["urn"], {})))
    for k, v in data["exports"].items():
        pulumi.export(k, value(v))

""" + PREVIEW.replace("@PROJECT@", "baredata")
"""The bare program registering fjord's data (see the module docstring); the same engine options as BARE."""

BARE = r"""
import json, os, sys
from pathlib import Path
import pulumi
from pulumi import automation as auto
from bench_bare_provider import Thing

components, dynamic, root, stack, backend, bin_dir = sys.argv[1:7]

def program():
    for i in range(int(components)):
        pulumi.ComponentResource("bench:components:Thing", f"c{i}", None)
    for i in range(int(dynamic)):
        Thing(f"d{i}", {"index": i, "payload": "x" * 64})

""" + PREVIEW.replace("@PROJECT@", "bare")


def slurm_only(site: dict[str, Any]) -> dict[str, Any]:
    for cluster in site.get("clusters", []):
        cluster["scheduler"] = "slurm"
        if "gpu_stack" in cluster:  # the GPU Operator needs Kubernetes: the hosts own the driver and toolkit
            cluster["gpu_stack"] = {**cluster["gpu_stack"], "driver": "host", "container_toolkit": "host"}
    for tenant in site.get("tenants", []):
        tenant["gpu_quotas"] = []
    return site


def project(tmp: Path, stack: str) -> dict[str, str]:
    from fjord.engine import engine_bin
    from fjord.spec.load import read_stack

    site = slurm_only(read_stack(stack, ROOT / "stacks").site)
    (tmp / "stacks").mkdir(parents=True)
    (tmp / "state").mkdir()
    proj = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    proj["runtime"]["options"]["virtualenv"] = sys.prefix
    (tmp / "Pulumi.yaml").write_text(yaml.safe_dump(proj), encoding="utf-8")
    (tmp / "stacks" / f"Pulumi.{stack}.yaml").write_text(
        yaml.safe_dump({"config": {"fjord:site": site}}), encoding="utf-8"
    )
    fjord = str(Path(sys.executable).parent / "fjord")
    subprocess.run([fjord, "alloc", stack, "--stacks-dir", str(tmp / "stacks")], check=True, capture_output=True)
    bin_dir = engine_bin()
    env = {
        **os.environ,
        "PULUMI_HOME": str(tmp / "home"),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "FJORD_PULUMI_BIN": str(bin_dir),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BIN": str(bin_dir),
    }
    cli = [str(bin_dir / "pulumi"), "--non-interactive"]
    subprocess.run(
        [*cli, "stack", "init", stack, "--secrets-provider", "passphrase"],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*cli, "config", "set", "--secret", "fjord:bmcPassword", "bench", "--stack", stack],
        cwd=tmp,
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def time_fjord(tmp: Path, stack: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    fjord = str(Path(sys.executable).parent / "fjord")
    start = time.perf_counter()
    done = subprocess.run(
        [fjord, "preview", stack, "--project", str(tmp), "--json"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fjord preview {stack} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def _run_bare(root: Path, env: dict[str, str], script: str, args: list[str], what: str) -> tuple[float, int]:
    """Time one bare program (a fresh process, its own project folder and file:// state); the seconds and the
    resources its preview counted (the engine's change summary)."""
    (root / "state").mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text(f"name: {root.name}\nruntime: python\n", encoding="utf-8")
    (root / "bench_bare_provider.py").write_text(BARE_PROVIDER, encoding="utf-8")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, *args, f"file://{root / 'state'}", env["BIN"]],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        check=False,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return seconds, sum(json.loads(done.stdout.strip().splitlines()[-1]).values())


def time_bare(tmp: Path, stack: str, env: dict[str, str], components: int, dynamic: int) -> tuple[float, int]:
    args = [str(components), str(dynamic), str(tmp / "bare"), stack]
    return _run_bare(tmp / "bare", env, BARE, args, f"the bare program ({components} components, {dynamic} dynamic)")


def time_bare_data(tmp: Path, stack: str, env: dict[str, str], data: Path) -> tuple[float, int]:
    root = tmp / "baredata"
    return _run_bare(root, env, BARE_DATA, [str(data), str(root), stack], "the bare program with fjord's data")


def capture(stack: str, folder: Path, out: Path) -> None:
    """fjord's registrations as the program makes them under Pulumi's mock runtime (as `fjord plan` runs it):
    every resource but the stack with its inputs (less the pickled provider), the components' outputs and the
    stack's exports, written to `out` for BARE_DATA. Run in a process of its own (the mock stack is per
    process)."""
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

    from fjord.plan import worker
    from fjord.plan.mocks import STACK_TYPE, RecordingMonitor
    from fjord.spec.load import read_stack

    resources: list[dict[str, Any]] = []
    outputs: dict[str, Any] = {}

    class Capture(RecordingMonitor):
        def RegisterResource(self, request: Any) -> Any:
            if request.type != STACK_TYPE:
                inputs = MessageToDict(request.object)
                inputs.pop("__provider", None)
                urn = self.make_urn(request.parent, request.type, request.name)
                resources.append(
                    {
                        "urn": urn,
                        "type": request.type,
                        "name": request.name,
                        "parent": request.parent,
                        "custom": request.custom,
                        "inputs": inputs,
                    }
                )
            return super().RegisterResource(request)

        def RegisterResourceOutputs(self, request: Any) -> Any:
            outputs[request.urn] = MessageToDict(request.outputs)
            return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    worker.run(read_stack(stack, folder), Capture)
    exports = {k: v for k, v in worker.stack_outputs().items() if v is not None}
    out.write_text(json.dumps({"resources": resources, "outputs": outputs, "exports": exports}), encoding="utf-8")


def capture_data(tmp: Path, stack: str) -> Path:
    out = tmp / "fjord-data.json"
    done = subprocess.run(
        [sys.executable, __file__, "--capture", stack, str(tmp / "stacks"), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"capturing {stack}'s registrations failed:\n{done.stderr[-3000:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", nargs="+", default=["dev", "uk", "narvik"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--capture", nargs=3, metavar=("STACK", "STACKS_DIR", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.capture:
        capture(args.capture[0], Path(args.capture[1]), Path(args.capture[2]))
        return
    rows = []
    for stack in args.stacks:
        with tempfile.TemporaryDirectory(prefix=f"fjord-bench-engine-{stack}-") as tmp_name:
            tmp = Path(tmp_name)
            env = project(tmp, stack)
            data = capture_data(tmp, stack)
            data_bytes = data.stat().st_size
            fj, bare, bare_data = [], [], []
            counts = (0, 0)
            load = os.getloadavg()[0]
            for _ in range(args.repeat):
                seconds, report = time_fjord(tmp, stack, env)
                fj.append(seconds)
                steps = report["steps"]
                dynamic = sum(1 for s in steps if s["type"].startswith("pulumi-python:dynamic"))
                counts = (len(steps) - dynamic - 1, dynamic)  # the stack itself is registered by both
                seconds, bare_count = time_bare(tmp, stack, env, *counts)
                bare.append(seconds)
                seconds, data_count = time_bare_data(tmp, stack, env, data)
                bare_data.append(seconds)
            f, b, d = statistics.median(fj), statistics.median(bare), statistics.median(bare_data)
            rows.append(
                {
                    "stack": stack,
                    "resources": sum(counts) + 1,
                    "resources_counted": {
                        "fjord": sum(report["changes"].values()),
                        "bare": bare_count,
                        "bare_with_data": data_count,
                    },
                    "components": counts[0],
                    "dynamic": counts[1],
                    "fjord_data_mb": round(data_bytes / 1e6, 2),
                    "fjord_preview_s": round(f, 2),
                    "bare_preview_s": round(b, 2),
                    "bare_fjord_data_s": round(d, 2),
                    "ratio": round(f / b, 2),
                    "ratio_to_bare_with_data": round(f / d, 2),
                    "load_before": round(load, 1),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'stack':8} {'resources':>9} {'dynamic':>7} {'data MB':>7} {'fjord s':>8} {'bare s':>7} {'bare+data s':>11}"
        f" {'fjord/bare':>10} {'fjord/bare+data':>15} {'load':>5}  counted (fjord/bare/bare+data)"
    )
    for r in rows:
        print(
            f"{r['stack']:8} {r['resources']:>9,} {r['dynamic']:>7,} {r['fjord_data_mb']:>7.2f}"
            f" {r['fjord_preview_s']:>8.2f} {r['bare_preview_s']:>7.2f} {r['bare_fjord_data_s']:>11.2f}"
            f" {r['ratio']:>10.2f} {r['ratio_to_bare_with_data']:>15.2f} {r['load_before']:>5.1f}"
            f"  {'/'.join(str(n) for n in r['resources_counted'].values())}"
        )


if __name__ == "__main__":
    main()
