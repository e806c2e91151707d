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

The stacks are made Slurm-only (their Kubernetes platforms off): no Kubernetes resource plugin can be built
here (docs/engine.md), and without one the engine cannot preview Kubernetes resources. Rows alternate fjord and
bare per round; medians of --repeat rounds. Target (issue 27): narvik under 60 s, within 1.5x of bare.
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
    def __init__(self, name, props):
        super().__init__(Accept(), name, props)
"""
"""The bare program's dynamic resource, in a module of its own: pickled by reference, as fjord's providers are."""

BARE = r"""
import os, sys
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

opts = auto.LocalWorkspaceOptions(
    work_dir=root,
    pulumi_command=auto.PulumiCommand(root=str(Path(bin_dir).parent)),
    env_vars={"PULUMI_BACKEND_URL": backend, "PULUMI_SKIP_UPDATE_CHECK": "true", "PYTHONPATH": root,
              "PULUMI_RUNTIME_VIRTUALENV": sys.prefix, "PATH": bin_dir + os.pathsep + os.environ["PATH"]},
    secrets_provider="passphrase",
)
st = auto.create_or_select_stack(stack, project_name="bare", program=program, opts=opts)
st.preview(color="never", on_output=lambda _l: None)
"""


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


def time_bare(tmp: Path, stack: str, env: dict[str, str], components: int, dynamic: int) -> float:
    bare_root = tmp / "bare"
    (bare_root / "state").mkdir(parents=True, exist_ok=True)
    (bare_root / "Pulumi.yaml").write_text("name: bare\nruntime: python\n", encoding="utf-8")
    (bare_root / "bench_bare_provider.py").write_text(BARE_PROVIDER, encoding="utf-8")
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BARE,
            str(components),
            str(dynamic),
            str(bare_root),
            stack,
            f"file://{bare_root / 'state'}",
            env["BIN"],
        ],
        cwd=bare_root,
        env={**env, "PYTHONPATH": str(bare_root)},
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"the bare program ({components} components, {dynamic} dynamic) failed:\n{done.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", nargs="+", default=["dev", "uk", "narvik"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for stack in args.stacks:
        with tempfile.TemporaryDirectory(prefix=f"fjord-bench-engine-{stack}-") as tmp_name:
            tmp = Path(tmp_name)
            env = project(tmp, stack)
            fj, bare = [], []
            counts = (0, 0)
            for _ in range(args.repeat):
                seconds, report = time_fjord(tmp, stack, env)
                fj.append(seconds)
                steps = report["steps"]
                dynamic = sum(1 for s in steps if s["type"].startswith("pulumi-python:dynamic"))
                counts = (len(steps) - dynamic - 1, dynamic)  # the stack itself is registered by both
                bare.append(time_bare(tmp, stack, env, *counts))
            f, b = statistics.median(fj), statistics.median(bare)
            rows.append(
                {
                    "stack": stack,
                    "resources": sum(counts) + 1,
                    "components": counts[0],
                    "dynamic": counts[1],
                    "fjord_preview_s": round(f, 2),
                    "bare_preview_s": round(b, 2),
                    "ratio": round(f / b, 2),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'stack':8} {'resources':>9} {'components':>10} {'dynamic':>7} {'fjord s':>8} {'bare s':>7} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['stack']:8} {r['resources']:>9,} {r['components']:>10,} {r['dynamic']:>7,} "
            f"{r['fjord_preview_s']:>8.2f} {r['bare_preview_s']:>7.2f} {r['ratio']:>6.2f}"
        )


if __name__ == "__main__":
    main()
