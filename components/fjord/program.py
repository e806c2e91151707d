"""The Pulumi program: read the stack's site, validate and size it, then build the Site.

The same entry point runs under the Pulumi CLI (`pulumi up -s <stack>`, via the root `__main__.py`) and
under the mock runtime of `fjord plan`. Validation and sizing happen before the first resource is
registered, so a rejected site changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from fjord.components._config import credential
from fjord.components.platform import kubeconfig_key
from fjord.components.site import Site, SiteArgs
from fjord.hosts.stack_config import stack_host_tags, stack_host_vars
from fjord.sizing.alloc import read as read_alloc
from fjord.sizing.site import validate_site
from fjord.spec.errors import SiteError
from fjord.spec.load import DEFAULT_STACK, default_site, missing_site_problem, parse_allow_remove, stacks_dir


def main(stacks: Path | None = None, bare_metal_only: bool = False, bmc_password: str | None = None) -> Site:
    """Build the stack's site. `stacks` is the folder of the stack files and their allocation records
    (default: as `fjord` finds it, ./stacks under the Pulumi CLI).

    `bare_metal_only` (`fjord bootstrap`'s bare-metal phase): register the components and the bare-metal
    layer only, no Kubernetes platform and no host configuration; the engine runs it targeted at the
    NodePools and their parents, so nothing else in the state is touched. `bmc_password` is used when the
    stack has no `fjord:bmcPassword` (bootstrap takes it from $FJORD_BMC_PASSWORD); it is a secret either way."""
    config = pulumi.Config("fjord")
    stack = pulumi.get_stack()
    raw = config.get_object("site")
    if raw is None:
        if stack != DEFAULT_STACK:
            raise SiteError([missing_site_problem(stack)], f"stack {stack}")
        raw = default_site()
    # Racks and addresses come from the committed allocation record; a missing or stale one stops the program
    # here, before anything is registered, rather than renumbering nodes (docs/safe-change.md).
    record = read_alloc(stack, stacks_dir(stacks))
    spec, size = validate_site(raw, source=f"stack {stack}", alloc=record, require_current=True, stack=stack)
    # The BMC password is a Pulumi secret. Unset, the bare-metal resources still plan, and the provider's
    # check fails the preview with a line saying how to set it. Every credential is checked here, before the
    # first registration, so a stack holding one in plain text changes nothing.
    password = credential("bmcPassword") or pulumi.Output.secret(bmc_password or "")
    for cluster in spec.clusters:
        credential(kubeconfig_key(cluster.name))
    # fjord:configureHosts false leaves the hosts alone (no HostConfig resources); fjord:hostVars says how to
    # reach them, fjord:hostTags which roles run (docs/engine.md).
    host_vars = stack_host_vars(config.get("hostVars"), spec, size, stacks_dir(stacks))
    host_tags = stack_host_tags(config.get("hostTags"))
    site = Site(
        spec.name,
        SiteArgs(
            spec=spec,
            size=size,
            bmc_password=password,
            configure_hosts=config.get_bool("configureHosts") is not False and not bare_metal_only,
            host_vars=host_vars,
            host_tags=host_tags,
            platforms=not bare_metal_only,
            allow_remove=parse_allow_remove(config.get("allowRemove")),
        ),
    )
    pulumi.export("site", spec.name)
    pulumi.export("summary", site.summary)
    pulumi.export("inventory", site.inventory)
    pulumi.export("baremetal_failed", site.bare_metal_failed)
    pulumi.export("storage", site.storage.offers)
    return site
