"""fjord installs like a product: the wheel carries the playbooks, installs into a fresh virtual environment outside
the checkout, and that install configures the testbed's hosts (`fjord configure --check`); the lock file covers
every dependency pyproject.toml declares."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from fjord.sizing.site import size_site
from fjord.spec.load import default_site, load_site
from tests import testbed as tb

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "components", "playbooks")
TESTBED_VARS = {"k8s_node_install_kube_packages": False, "fjord_apply_kernel_settings": False}


def _locked() -> dict[str, str]:
    """Package name (normalised) -> pinned version, from requirements.lock."""
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", LOCK.read_text(), flags=re.M)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def test_the_lock_file_pins_every_declared_dependency_within_its_bounds() -> None:
    """`make install` installs requirements.lock; a dependency added to pyproject.toml without `make lock` fails
    here, naming it, instead of going unpinned."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    locked = _locked()
    problems = []
    for req in declared:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name not in locked:
            problems.append(f"{req.name}: not in requirements.lock (run `make lock`)")
        elif not req.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{req.name}: locked {locked[name]} is outside {req.specifier} (run `make lock`)")
    assert problems == []
    assert "--hash=sha256:" in LOCK.read_text()


def _build_wheel(into: Path) -> Path:
    """The wheel as `pip wheel` builds it, from a copy of the sources (the checkout is left as it is)."""
    src = into / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into / "dist"), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = (into / "dist").glob("fjord-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_carries_the_playbooks(tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(_build_wheel(tmp_path)).namelist())
    shipped = {n.removeprefix("fjord/_playbooks/") for n in names if n.startswith("fjord/_playbooks/")}
    in_checkout = {
        p.relative_to(REPO / "playbooks").as_posix()
        for p in (REPO / "playbooks").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == in_checkout
    assert "fjord/spec/default_site.yaml" in names


@pytest.mark.slow
@pytest.mark.testbed
def test_an_installed_wheel_configures_the_testbed_as_an_operator_would(tmp_path: Path) -> None:
    """Build the wheel, install it (with the locked versions) into a fresh venv in a folder outside the checkout,
    and from there configure the testbed's four hosts as operators run Ansible: logged in as a non-root user
    (the site's `host_access.ssh_user`) that becomes root with sudo. The `base` role (by its tag) for real, whose
    files must be root's, then `--check`, which must find nothing to change and change nothing."""
    reason = tb.unavailable_reason()
    if reason is not None:
        if os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"testbed required (FJORD_REQUIRE_INTEGRATION=1) but: {reason}")
        pytest.skip(f"testbed: {reason}")
    wheel = _build_wheel(tmp_path)
    outside = Path(tempfile.mkdtemp(prefix="fj-install-"))  # not under the checkout, nor its parent's tmp
    try:
        venv = outside / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        constraints = outside / "constraints.txt"  # the lock's versions, without hashes (pip takes them as limits)
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in _locked().items()))
        subprocess.run(
            [str(venv / "bin/pip"), "install", "--quiet", "--no-compile", "-c", str(constraints), str(wheel)],
            check=True,
            capture_output=True,
            text=True,
        )
        fjord = venv / "bin" / "fjord"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FJORD_", "PYTHON", "VIRTUAL_ENV"))}
        env["FJORD_ANSIBLE_STATE"] = str(outside / "ansible")
        env["PATH"] = (
            f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"  # the installed ansible-playbook, not the checkout's
        )
        located = subprocess.run(
            [
                str(venv / "bin/python"),
                "-c",
                "from fjord.adapters.playbooks import default_playbooks_dir as d; print(d())",
            ],
            cwd=outside,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert located.startswith(str(venv)), located
        assert located.endswith("fjord/_playbooks"), located

        names = [n.name for n in size_site(load_site(default_site())).hosts()]
        with tb.testbed(names) as bed:
            site = copy.deepcopy(default_site())
            site["software"] |= {"os": "debian-12", "driver_source": "mirror"}
            site["air_gap"] = {
                "packages": bed.mirror_url,
                "registry": "registry.testbed.local",
                "charts": "https://c.local",
            }
            site["host_access"] = {"ssh_user": tb.OPERATOR}  # become: sudo, the default for a non-root user
            stacks = outside / "stacks"
            stacks.mkdir()
            (stacks / "Pulumi.testbed.yaml").write_text(yaml.safe_dump({"config": {"fjord:site": site}}))
            host_vars = outside / "host-vars.json"
            host_vars.write_text(json.dumps({h: v | TESTBED_VARS for h, v in bed.host_vars(user=None).items()}))

            def configure(*args: str) -> dict[str, Any]:
                proc = subprocess.run(
                    [str(fjord), "configure", "testbed", *args, "--host-vars", str(host_vars), "--json"],
                    cwd=outside,
                    env=env | {"FJORD_STACKS_DIR": str(stacks)},
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
                assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
                doc, end = json.JSONDecoder().raw_decode(proc.stdout)
                assert proc.stdout[end:].strip() == "", proc.stdout[end:][:3000]  # --json: nothing but the JSON
                return dict(doc)

            # Root may not log in: the runs below must come in as the operator. The host's files are read and
            # restored from the controller (the host's root filesystem), not over SSH.
            root_keys = [h.root() / "root/.ssh/authorized_keys" for h in bed.hosts]
            for key in root_keys:
                key.rename(key.with_suffix(".off"))
            try:
                # The base role (its tag) for real: packages installed, files written as root, through sudo.
                hosts = configure("--tags", "base")["hosts"]
                assert sorted(hosts) == sorted(names)
                assert all(h["failed"] == h["unreachable"] == 0 < h["changed"] for h in hosts.values()), hosts
                for host in bed.hosts:
                    conf = host.root() / "etc/sysctl.d/90-fjord.conf"
                    assert conf.stat().st_uid == 0
                    status = (host.root() / "var/lib/dpkg/status").read_text()
                    assert "Package: chrony\nStatus: install ok installed" in status
                # Check mode on the configured hosts: every task of the role runs and finds nothing to change.
                before = {h.name: (h.root() / "etc/sysctl.d/90-fjord.conf").stat().st_mtime_ns for h in bed.hosts}
                hosts = configure("--tags", "base", "--check")["hosts"]
                assert all(h["failed"] == h["changed"] == 0 < h["ok"] for h in hosts.values()), hosts
                after = {h.name: (h.root() / "etc/sysctl.d/90-fjord.conf").stat().st_mtime_ns for h in bed.hosts}
                assert after == before
            finally:
                for key in root_keys:
                    key.with_suffix(".off").rename(key)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
