"""Build step for the wheel: the playbooks ship inside the package, as `fjord/_playbooks/`.

Everything else about the package is in pyproject.toml. `playbooks/` stays at the top of the checkout (where
Ansible users expect it and where the tests and linters read it); building a wheel copies it into the package,
so that an installed fjord needs no checkout (`fjord.adapters.playbooks.default_playbooks_dir` looks there).
An editable install (`make install`) uses the checkout's folder directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithPlaybooks(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        source = Path(__file__).resolve().parent / "playbooks"
        target = Path(self.build_lib) / "fjord" / "_playbooks"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.retry", ".*"))


setup(cmdclass={"build_py": BuildPyWithPlaybooks})
