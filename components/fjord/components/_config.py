"""Credentials from the stack's Pulumi config, only ever as secrets."""

from __future__ import annotations

import pulumi

from fjord.spec.errors import SiteError
from fjord.spec.load import plain_secret_problem


def credential(key: str) -> pulumi.Output[str] | None:
    """The `fjord:<key>` credential as a secret Output, or None when unset.

    A value set without `--secret` sits in plain text in the stack file, and the Pulumi CLI hands it to the
    program unmarked: it is refused, naming the key and never the value. (`fjord` commands refuse such a
    stack file when they read it; this covers `pulumi up`, which reads the file itself.)
    """
    config = pulumi.Config("fjord")
    full = config.full_key(key)
    if pulumi.runtime.get_config(full) is not None and not pulumi.runtime.is_config_secret(full):
        raise SiteError([plain_secret_problem(full)], f"stack {pulumi.get_stack()}")
    return config.get_secret(key)
