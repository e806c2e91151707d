"""The stack config keys that say how `pulumi up` (`fjord up`) reaches and configures the hosts (pure).

- `fjord:hostVars`: per-host variables merged over the generated inventory, as `fjord configure --host-vars`
  takes them (connection settings: `ansible_host`, `ansible_port`, `ansible_ssh_private_key_file`, ...). Either
  the mapping itself in the stack file, or the path of a JSON file holding it (relative to the stacks folder).
  The variables become part of each HostConfig's inventory, which the state stores in plain text: a variable
  that holds a password is refused (use SSH keys; `host_access` says who logs in and how it becomes root).
- `fjord:hostTags`: the role tags of site.yml the HostConfig resources run (`--tags`), e.g. `[base]` for a lab
  that needs only the base of every host; unset: every role.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fjord.hosts.inventory import HOST_VARS_ALLOWED, BadHostVars, check_host_vars
from fjord.sizing.site import SiteSize
from fjord.spec.errors import Problem, SiteError
from fjord.spec.load import HOST_TAGS_KEY, HOST_VARS_KEY
from fjord.spec.models import Site

PASSWORD_VAR = re.compile(r"pass(word)?($|_)|passw|passphrase|secret|token", re.IGNORECASE)
"""Ansible variables that hold a password (ansible_password, ansible_ssh_pass, ansible_become_password, ...)."""
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class _Said(Problem):
    """A problem whose message already shows the value (those of `check_host_vars`)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _load(value: Any, folder: Path) -> tuple[Any, str]:
    """The host variables document `value` names: itself, the JSON text Pulumi hands the program, or a file."""
    if not isinstance(value, str):
        return value, HOST_VARS_KEY
    with contextlib.suppress(ValueError):
        parsed = json.loads(value)
        if isinstance(parsed, dict):
            return parsed, HOST_VARS_KEY
        if isinstance(parsed, str):
            value = parsed  # a path, as Pulumi hands a string config value: JSON text
    path = Path(value) if Path(value).is_absolute() else folder / value
    where = f"{HOST_VARS_KEY} ({path})"
    try:
        return json.loads(path.read_text(encoding="utf-8")), where
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror}); allowed: {HOST_VARS_ALLOWED}, or a JSON file holding one"
        raise SiteError([Problem(HOST_VARS_KEY, value, problem)]) from None
    except ValueError as exc:
        raise SiteError([Problem(HOST_VARS_KEY, value, f"is not JSON ({exc}); allowed: {HOST_VARS_ALLOWED}")]) from None


def stack_host_vars(value: Any, site: Site, size: SiteSize, folder: Path) -> dict[str, dict[str, Any]]:
    """`fjord:hostVars` as host -> variables (empty when unset); raises SiteError naming each problem."""
    if value is None or value == "":
        return {}
    data, where = _load(value, folder)
    try:
        host_vars = check_host_vars(site, size, data)
    except BadHostVars as exc:
        raise SiteError([_Said(where, None, p) for p in exc.problems]) from None
    secret = [
        Problem(
            f"{HOST_VARS_KEY}.{host}.{key}",
            "[not shown]",
            "holds a password, and the inventory is stored in the"
            " state in plain text; allowed: SSH key authentication (ansible_ssh_private_key_file) and, for"
            " root, site.host_access with passwordless become",
        )
        for host, variables in host_vars.items()
        for key in variables
        if PASSWORD_VAR.search(str(key))
    ]
    if secret:
        raise SiteError(secret)
    return host_vars


def stack_host_tags(value: Any) -> tuple[str, ...]:
    """`fjord:hostTags` (a list, the JSON text of one as Pulumi hands it, or a comma-separated string)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not JSON: a comma-separated string
            value = json.loads(value)
    items = value.split(",") if isinstance(value, str) else value
    allowed = "a list of role tags of site.yml such as [base]"
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise SiteError([Problem(HOST_TAGS_KEY, value, f"must list tags; allowed: {allowed}")])
    tags = tuple(v.strip() for v in items if v.strip())
    bad = [
        Problem(f"{HOST_TAGS_KEY}[{i}]", t, f"is no tag name; allowed: {allowed}")
        for i, t in enumerate(tags)
        if not TAG.fullmatch(t)
    ]
    if bad:
        raise SiteError(bad)
    return tags
