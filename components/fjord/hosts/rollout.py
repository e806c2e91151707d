"""The drained rollout of one cluster: its batch plan and the loop that carries it out, batch after batch.

A change that touches the GPU stack of nodes in service (docs/safe-change.md) rolls through each cluster as a
whole, never unit by unit:

- `batch_plan`: the hosts to roll, in the cluster's order (unit by unit, node by node), cut into batches of the
  cluster's `upgrade.batch_percent` of its nodes in service (`Upgrade.batch_nodes`: at least one node). A batch
  may hold the last nodes of one scalable unit and the first of the next; the units of a cluster never roll at
  the same time.
- `roll`: runs one batch at a time (each node drained, changed, validated and returned by the playbook) and
  stops the cluster's rollout after the first batch in which more than `upgrade.max_fail_percentage` of its
  nodes failed or could not be reached (`over_budget`; Ansible's rule for a batch: the share must be exceeded,
  not equalled). No node of a later batch is drained or restarted; they are returned as `not_reached`.

Pure: the caller passes the function that runs one batch (the ClusterRollout provider runs
playbooks/upgrade-gpu-stack.yml limited to the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fjord.spec.models import Upgrade

Batch = tuple[str, ...]


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch's run left: the hosts that finished (returned to service) and the hosts that did not."""

    done: Batch
    failed: Batch
    unreachable: Batch = ()
    error: str = ""
    """Why the batch's run itself failed (a crash), "" when it ran."""


@dataclass(frozen=True)
class RolloutResult:
    batches: tuple[Batch, ...]
    """The batches that ran, in order."""
    done: Batch
    failed: Batch
    unreachable: Batch
    not_reached: Batch
    """Hosts of the batches that never started: the rollout stopped before them (nothing touched them)."""
    stopped: str
    """Why the rollout stopped early ("" when every batch ran)."""

    @property
    def pending(self) -> Batch:
        """Hosts the rollout did not finish: rolled again by the next run, never given site.yml."""
        return self.failed + self.unreachable + self.not_reached


def batch_plan(hosts: Sequence[str], in_service: int, upgrade: Upgrade) -> list[Batch]:
    """`hosts` (in the cluster's order) in batches of `upgrade.batch_percent` of the cluster's `in_service`
    nodes; the batch size does not shrink when only some hosts are rolled (a retry of those left behind)."""
    size = upgrade.batch_nodes(max(in_service, len(hosts)))
    return [tuple(hosts[i : i + size]) for i in range(0, len(hosts), size)]


def over_budget(batch: int, bad: int, max_fail_percentage: int) -> bool:
    """True when more than `max_fail_percentage` % of a batch of `batch` nodes failed (`bad` of them)."""
    return bad * 100 > max_fail_percentage * batch


def roll(
    plan: Sequence[Batch],
    max_fail_percentage: int,
    run_batch: Callable[[Batch], BatchOutcome],
) -> RolloutResult:
    """Run `plan` batch by batch; stop after the first batch over the failure budget or whose run crashed."""
    ran: list[Batch] = []
    done: list[str] = []
    failed: list[str] = []
    unreachable: list[str] = []
    stopped = ""
    for i, batch in enumerate(plan):
        got = run_batch(batch)
        ran.append(batch)
        # A host the run did not report (a crash) did not finish: it counts as failed.
        reported = set(got.done) | set(got.failed) | set(got.unreachable)
        lost = tuple(h for h in batch if h not in reported)
        done += [h for h in batch if h in got.done]
        failed += [h for h in batch if h in got.failed or h in lost]
        unreachable += [h for h in batch if h in got.unreachable and h not in got.failed]
        bad = len(batch) - len([h for h in batch if h in got.done])
        if got.error:
            stopped = f"batch {i + 1} of {len(plan)} did not run to its end: {got.error}"
        elif over_budget(len(batch), bad, max_fail_percentage):
            stopped = (
                f"batch {i + 1} of {len(plan)}: {bad} of {len(batch)} nodes failed, more than the cluster's"
                f" upgrade.max_fail_percentage ({max_fail_percentage} %)"
            )
        if stopped:
            break
    rest = tuple(h for b in plan[len(ran) :] for h in b)
    return RolloutResult(tuple(ran), tuple(done), tuple(failed), tuple(unreachable), rest, stopped)


__all__ = ["Batch", "BatchOutcome", "RolloutResult", "batch_plan", "over_budget", "roll"]
