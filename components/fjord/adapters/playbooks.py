"""Where the playbooks are: kept apart from the Ansible adapter, so that the Pulumi program (which only
digests the folder) does not import the adapter, which only running a playbook needs."""

from __future__ import annotations

import os
from pathlib import Path

PLAYBOOKS_ENV = "FJORD_PLAYBOOKS_DIR"
PACKAGED = Path(__file__).resolve().parents[1] / "_playbooks"
"""Where an installed wheel carries the playbooks (setup.py copies `playbooks/` there when building it)."""


def default_playbooks_dir() -> Path:
    """$FJORD_PLAYBOOKS_DIR; else the playbooks inside the installed package; else `playbooks/` of this checkout
    (an editable install)."""
    env = os.environ.get(PLAYBOOKS_ENV)
    if env:
        return Path(env)
    return PACKAGED if PACKAGED.is_dir() else Path(__file__).resolve().parents[3] / "playbooks"
