"""Which stacks a change touches, from the paths it changes: pure, no git here (fjord.adapters.git lists them)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

STACKS_FOLDER = "stacks"

SHARED_PATHS: tuple[str, ...] = (
    "components/",
    "playbooks/",
    "policy/",
    "pyproject.toml",
    "Pulumi.yaml",
    "__main__.py",
)
"""Files every stack is built from: the program and its components (the embedded default site
`components/fjord/spec/default_site.yaml` among them), the playbooks, the policy pack and its settings, the
dependencies, the project file and its entry point. A change to any of them touches every stack."""

EMBEDDED_SITE = "components/fjord/spec/default_site.yaml"
"""The `dev` stack's site when its stack file sets none."""

CORE_SUFFIX = "-core"

STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
"""A stack name the pipelines accept (Pulumi's letters, digits, '-' and '_'): a file name with anything else in it
(a '$(...)', a space, a quote) never reaches a shell or a job name."""

SIDE_FILES = (".alloc",)
"""`Pulumi.<stack><suffix>.yaml` files that belong to a stack (its allocation record) and touch it."""


def is_core(stack: str) -> bool:
    """A core stack (`core`, `<site>-core`: a site's shared layer, which the other stacks of the site reference)
    is applied before every other stack."""
    return stack == "core" or stack.endswith(CORE_SUFFIX)


def apply_order(stacks: Iterable[str]) -> list[str]:
    """Core stacks first, then the rest; by name within each group."""
    return sorted(set(stacks), key=lambda s: (not is_core(s), s))


@dataclass(frozen=True)
class FileChange:
    """One line of `git diff --name-status`: A(dded), M(odified), D(eleted), R(enamed), C(opied), T(ype)."""

    status: Literal["A", "M", "D", "R", "C", "T"]
    path: str
    old_path: str | None = None
    """The path before a rename or copy."""


def stack_of(path: str, folder: str = STACKS_FOLDER) -> str | None:
    """The stack a path is the file of (`stacks/Pulumi.uk.yaml` -> `uk`), else None."""
    p = PurePosixPath(path)
    if str(p.parent) != folder or not (p.name.startswith("Pulumi.") and p.name.endswith(".yaml")):
        return None
    name = p.name[len("Pulumi.") : -len(".yaml")]
    # `Pulumi.<stack>.alloc.yaml` is the stack's allocation record (docs/safe-change.md): it touches that stack.
    for suffix in SIDE_FILES:
        name = name.removesuffix(suffix)
    return name if STACK_NAME.fullmatch(name) else None


def is_shared(path: str) -> bool:
    return any(path == s or (s.endswith("/") and path.startswith(s)) for s in SHARED_PATHS)


@dataclass(frozen=True)
class ChangedStacks:
    """What a change touches: the stacks to preview and apply, in apply order, and why each one."""

    stacks: tuple[str, ...]
    """Stacks that exist after the change and are touched by it: core stacks first."""
    removed: tuple[str, ...] = ()
    """Stacks whose file the change deletes: never destroyed by a pipeline; `fjord destroy` is a person's job."""
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per stack, the changed paths that touch it."""
    shared: tuple[str, ...] = ()
    """Changed shared paths (they touch every stack)."""

    @property
    def core(self) -> tuple[str, ...]:
        return tuple(s for s in self.stacks if is_core(s))

    @property
    def rest(self) -> tuple[str, ...]:
        return tuple(s for s in self.stacks if not is_core(s))

    def as_dict(self) -> dict[str, Any]:
        return {
            "stacks": list(self.stacks),
            "core": list(self.core),
            "rest": list(self.rest),
            "removed": list(self.removed),
            "shared": list(self.shared),
            "reasons": {k: list(v) for k, v in self.reasons.items()},
        }


def changed_stacks(
    changes: Sequence[FileChange], stacks_after: Iterable[str], folder: str = STACKS_FOLDER
) -> ChangedStacks:
    """The stacks `changes` touch, given the stacks that exist after them (`stacks_after`).

    A stack file added, modified or renamed to touches its stack; a shared path (SHARED_PATHS) touches every
    stack; the embedded default site touches `dev` when it has no file of its own (and every stack, being under
    components/). Documentation, tests, benchmarks and CI files touch none. A deleted stack file is listed as
    removed, never as a stack to apply.
    """
    after = set(stacks_after)
    reasons: dict[str, list[str]] = {}
    removed: set[str] = set()
    shared: list[str] = []
    for ch in changes:
        paths = [ch.path] + ([ch.old_path] if ch.old_path else [])
        for path in paths:
            stack = stack_of(path, folder)
            if stack is None:
                continue
            gone = (ch.status == "D" and path == ch.path) or (ch.status == "R" and path == ch.old_path)
            if gone and stack not in after:
                removed.add(stack)
            elif stack in after:
                reasons.setdefault(stack, []).append(ch.path)
        if any(is_shared(p) for p in paths):
            shared.append(ch.path)
    for stack in after:
        if shared:
            reasons.setdefault(stack, []).extend(shared)
    return ChangedStacks(
        stacks=tuple(apply_order(reasons)),
        removed=tuple(sorted(removed)),
        reasons={s: tuple(dict.fromkeys(reasons[s])) for s in apply_order(reasons)},
        shared=tuple(dict.fromkeys(shared)),
    )
