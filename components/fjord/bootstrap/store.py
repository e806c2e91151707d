"""Where a site's bootstrap keeps its state and evidence: the site's own artifacts bucket, through the S3 adapter.

Layout (docs/bootstrap.md):

    bootstrap/state.json                    the current run: phases and every node's lifecycle state
    bootstrap/<run-id>/handover.json        the hand-over report of a run
    acceptance/<run-id>/<node>.json         one node's acceptance evidence (report, verdict, tools, catalog)
    acceptance/<run-id>/index.json          the run's verdicts per node, with each evidence key
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from fjord.adapters.s3 import NotFound, ObjectStore
from fjord.bootstrap.plan import BootstrapState

STATE_KEY = "bootstrap/state.json"


def evidence_key(run_id: str, node: str) -> str:
    return f"acceptance/{run_id}/{node}.json"


def index_key(run_id: str) -> str:
    return f"acceptance/{run_id}/index.json"


def handover_key(run_id: str) -> str:
    return f"bootstrap/{run_id}/handover.json"


class StateStore:
    """The bootstrap state and evidence of one site in its artifacts bucket. `save` writes at most once per
    `min_interval_s` unless forced (a phase's start and end, a batch's end force it), so a phase over thousands
    of nodes does not write the whole state once per node."""

    def __init__(self, store: ObjectStore, bucket: str, min_interval_s: float = 2.0) -> None:
        self.store = store
        self.bucket = bucket
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self.writes = 0

    def load(self) -> BootstrapState | None:
        """The site's last bootstrap state; None when there is none (or no bucket yet)."""
        try:
            data = self.store.get_bytes(self.bucket, STATE_KEY)
        except NotFound:
            return None
        return BootstrapState.from_json(json.loads(data))

    def save(self, state: BootstrapState, force: bool = False) -> bool:
        """Write the state (unless written less than min_interval_s ago and not forced); whether it wrote."""
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return False
        self.put_json(STATE_KEY, state.to_json())
        self._last = now
        self.writes += 1
        return True

    def put_json(self, key: str, doc: Mapping[str, Any]) -> None:
        self.store.put_bytes(
            self.bucket, key, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), {"fjord-kind": "bootstrap"}
        )

    def get_json(self, key: str) -> Any:
        """The JSON object at `key`; None when it does not exist."""
        try:
            return json.loads(self.store.get_bytes(self.bucket, key))
        except NotFound:
            return None
