"""Git behind a small typed wrapper (the `git` command through subprocess): what a change touches and what a
file held at a ref. The GitOps logic on top (fjord.gitops) is pure."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fjord.gitops.stacks import FileChange


class GitError(RuntimeError):
    """A git command failed: the command and git's own message."""


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        raise GitError("git is not installed; allowed: a machine with git on PATH") from None
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise GitError(f"git {' '.join(args)}: {msg}")
    return proc.stdout


def root(repo: Path) -> Path:
    """The top folder of the work tree `repo` is in."""
    return Path(_git(repo, "rev-parse", "--show-toplevel").strip())


def resolve(repo: Path, ref: str) -> str:
    """The commit a ref names (full hash); a ref that names none raises GitError."""
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()


def merge_base(repo: Path, base: str, head: str) -> str:
    return _git(repo, "merge-base", base, head).strip()


def changed_files(repo: Path, base: str, head: str | None = None) -> list[FileChange]:
    """The files changed from the merge base of `base` and `head` to `head` (None: the work tree, uncommitted
    changes and untracked files included), renames detected."""
    if head is None:
        fork = merge_base(repo, base, "HEAD")
        out = _git(repo, "diff", "--name-status", "-z", "--find-renames", fork)
        untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "-z")
        extra = [FileChange("A", p) for p in untracked.split("\0") if p]
    else:
        out = _git(repo, "diff", "--name-status", "-z", "--find-renames", f"{base}...{head}")
        extra = []
    fields = out.split("\0")
    changes: list[FileChange] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        if status in "RC":
            changes.append(FileChange(status, fields[i + 2], old_path=fields[i + 1]))  # type: ignore[arg-type]
            i += 3
        else:
            changes.append(FileChange(status, fields[i + 1]))  # type: ignore[arg-type]
            i += 2
    return changes + extra


def show(repo: Path, ref: str, path: str) -> str | None:
    """A file's text at a ref; None when the ref has no such file."""
    try:
        return _git(repo, "show", f"{ref}:{path}")
    except GitError:
        return None


def files_at(repo: Path, ref: str, folder: str) -> list[str]:
    """The paths of the files in `folder` at `ref` (not recursive)."""
    try:
        out = _git(repo, "ls-tree", "--name-only", "-z", f"{ref}:{folder}")
    except GitError:
        return []
    return [f"{folder}/{p}" for p in out.split("\0") if p]


def short(repo: Path, ref: str) -> str:
    return _git(repo, "rev-parse", "--short=12", ref).strip()
