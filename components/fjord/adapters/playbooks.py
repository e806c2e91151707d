"""Where the playbooks are: kept apart from the Ansible adapter, so that the Pulumi program (which only
digests the folder) does not import the adapter, which only running a playbook needs."""

from __future__ import annotations

import os
from pathlib import Path

PLAYBOOKS_ENV = "FJORD_PLAYBOOKS_DIR"


def default_playbooks_dir() -> Path:
    """`playbooks/` of this checkout, or $FJORD_PLAYBOOKS_DIR."""
    env = os.environ.get(PLAYBOOKS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "playbooks"
