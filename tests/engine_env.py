"""The real Pulumi engine for tests: where .ci/setup-pulumi.sh put the CLI, and a throwaway project to run it in.

A test project is a folder with fjord's Pulumi.yaml and a `stacks/` folder holding the test's stack file; the
engine's own home (PULUMI_HOME) and a file:// backend live in it too, so nothing outside the test's temp
folder is touched. `fjord(...)` runs the real `fjord` CLI in a subprocess (the mock runtime of this process
plays no part).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fjord.engine import EngineUnavailable, engine_bin

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "fjord-engine-test-passphrase"
FJORD = [str(Path(sys.executable).parent / "fjord")]


def require_engine() -> Path:
    """The folder of the CLI built by .ci/setup-pulumi.sh; skip (fail in CI) when it is not there."""
    try:
        return engine_bin()
    except EngineUnavailable as exc:
        if os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"the Pulumi engine is required (FJORD_REQUIRE_INTEGRATION=1) but: {exc}")
        pytest.skip(str(exc))


@dataclass
class Project:
    """A throwaway fjord project with one stack, a file:// (or given) backend and its own PULUMI_HOME."""

    root: Path
    stack: str
    backend: str
    bin_dir: Path

    @property
    def stack_file(self) -> Path:
        return self.root / "stacks" / f"Pulumi.{self.stack}.yaml"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PULUMI_HOME": str(self.root / ".pulumi-home"),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_BACKEND_URL": self.backend,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "FJORD_PULUMI_BIN": str(self.bin_dir),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("FJORD_STACKS_DIR", None)
        env |= extra
        return {k: v for k, v in env.items() if v != "" or k not in ("PULUMI_BACKEND_URL",)}

    def write_stack(self, site: dict[str, Any], **config: Any) -> None:
        """Write the stack's `fjord:site` (and other `fjord:` keys), keeping what the CLI added (the salt, secrets)."""
        doc: dict[str, Any] = {}
        if self.stack_file.is_file():
            doc = yaml.safe_load(self.stack_file.read_text(encoding="utf-8")) or {}
        cfg = doc.setdefault("config", {})
        cfg["fjord:site"] = site
        cfg.update({f"fjord:{k}": v for k, v in config.items()})
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        # The program requires the stack's allocation record (racks, addresses): write it as an operator would.
        done = self.fjord_raw("alloc")
        assert done.returncode == 0, done.stderr

    def pulumi(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bin_dir / "pulumi"), *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.root,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed: {done.stdout}\n{done.stderr}")
        return done

    def init(self, bmc_password: str | None = None, **env: str) -> None:
        """Create the stack (passphrase secrets) and set the BMC password as a secret."""
        self.pulumi("stack", "init", "--secrets-provider", "passphrase", env=env)
        if bmc_password is not None:
            self.pulumi("config", "set", "--secret", "fjord:bmcPassword", bmc_password, env=env)

    def fjord(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
        """`fjord <args> <stack> --project <root> --json` in a subprocess; stdout is the JSON report."""
        return subprocess.run(
            [*FJORD, *args, self.stack, "--project", str(self.root), "--json"],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def fjord_raw(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`fjord <args> <stack> --stacks-dir <root>/stacks` (no --project, no --json)."""
        return subprocess.run(
            [*FJORD, *args, self.stack, "--stacks-dir", str(self.root / "stacks")],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def report(self, *args: str, expect_rc: int = 0, **env: str) -> dict[str, Any]:
        done = self.fjord(*args, **env)
        assert done.returncode == expect_rc, f"fjord {' '.join(args)}: rc {done.returncode}\n{done.stderr[-6000:]}"
        report: dict[str, Any] = json.loads(done.stdout)
        report["stderr"] = done.stderr
        return report

    def state(self) -> dict[str, Any]:
        """The stack's checkpoint as the engine stores it (`pulumi stack export`)."""
        exported: dict[str, Any] = json.loads(self.pulumi("stack", "export").stdout)
        return exported

    def state_text(self) -> str:
        """Every state file of the file:// backend, as stored (what someone with the bucket would read)."""
        folder = Path(self.backend.removeprefix("file://")) / ".pulumi"
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*.json"))


def make_project(tmp: Path, stack: str, backend: str | None = None) -> Project:
    bin_dir = require_engine()
    (tmp / "stacks").mkdir(parents=True, exist_ok=True)
    (tmp / "state").mkdir(exist_ok=True)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))
    project["runtime"]["options"]["virtualenv"] = sys.prefix
    (tmp / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return Project(tmp, stack, backend or f"file://{tmp / 'state'}", bin_dir)
