"""Shared test set-up: Pulumi's mock runtime (set before any program module is imported) and site helpers.

The mock root stack persists for the whole process, so every test that registers resources reads the
registrations it made through the `registrations` fixture, which clears the record first.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pulumi
import pytest

from fjord.plan.mocks import PlanMocks, RecordingMonitor, Registration

REPO = Path(__file__).resolve().parents[1]
STACKS = REPO / "stacks"


# The tests run under the same mocks as `fjord plan`, so they check what the plan shows.
MOCKS = PlanMocks()
MONITOR = RecordingMonitor(MOCKS)
pulumi.runtime.set_mocks(MOCKS, project="fjord", stack="test", preview=False, monitor=MONITOR)


@pytest.fixture(autouse=True, scope="session")
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """fjord's per-machine state (the multipart upload journal) goes to a temp dir, not the user's home."""
    os.environ.setdefault("FJORD_STATE_DIR", str(tmp_path_factory.mktemp("fjord-state")))


@pytest.fixture
def registrations() -> list[Registration]:
    """The resources registered during the test (the monitor's record, cleared before the test)."""
    MONITOR.reset()
    return MONITOR.registrations


@pytest.fixture
def dev_site() -> dict[str, Any]:
    from fjord.spec.load import default_site

    return copy.deepcopy(default_site())


def stack_site(name: str) -> dict[str, Any]:
    from fjord.spec.load import read_stack

    return copy.deepcopy(read_stack(name, STACKS).site)
