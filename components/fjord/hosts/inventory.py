"""The Ansible inventory of a site, generated from the site model and its sizing.

Groups (Ansible allows letters, digits and `_` in group names, so `-` becomes `_`):
- `site_<site>`: every host; its vars are the site-wide software baseline;
- `hall_<hall>` > `cluster_<cluster>` > `su_<cluster>_<NNN>`: the cluster's vars (who owns the driver and the
  toolkit, SKU, validation thresholds, upgrade batches) live on the cluster group, `fjord_scalable_unit` on
  the unit's;
- `rack_<hall>_rNNNN`: the hosts of one rack (a rack may hold nodes of two scalable units), `fjord_rack`.
- `slurm` > the Slurm clusters' `cluster_*` groups; `slurmctld` and `slurmdbd`: their controllers and accounting
  hosts (fjord.hosts.slurm), the groups playbooks/slurm.yml runs its phases on.
Hosts carry only what differs per host: `ansible_host` (the management address) and `fjord_node_role`.
The variables are the interface to the roles under `playbooks/` (see the README, "Host configuration").

The inventory is a JSON document in the format of Ansible's `yaml` inventory plugin (which reads `.json`
files with the fast JSON parser). Narvik's 25,200 hosts take well under a second; `only` restricts it to some
groups or hosts before anything is formatted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fjord.hosts.nvlink import IMEX_OPTIONS, domain_vars
from fjord.hosts.slurm import slurm_cluster
from fjord.sizing.site import ClusterSize, Node, ScalableUnitSize, SiteSize, size_site
from fjord.spec.catalog import CUDA_MIN_DRIVER_BRANCH
from fjord.spec.models import Cluster, Site
from fjord.spec.ownership import host_vars

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def group_name(kind: str, *parts: str | int) -> str:
    """An Ansible group name: `kind_part_part`, integers as three digits, anything but [A-Za-z0-9_] as `_`."""
    words = [kind, *(f"{p:03d}" if isinstance(p, int) else p for p in parts)]
    return _INVALID.sub("_", "_".join(words))


def upgrade_vars(site: Site, clusters: Iterable[str]) -> dict[str, Any]:
    """Extra vars for upgrade-gpu-stack.yml, whose `serial`/`max_fail_percentage` are set before any host's
    variables exist: the one upgrade policy of the clusters given. Raises ValueError when they differ."""
    policies = {(c.upgrade.batch_percent, c.upgrade.max_fail_percentage) for c in site.clusters if c.name in clusters}
    if len(policies) != 1:
        raise ValueError(
            "the clusters in the limit have different upgrade policies (batch_percent, max_fail_percentage): "
            f"{sorted(policies)}; allowed: a --limit within one cluster"
        )
    ((batch, max_fail),) = policies
    return {"fjord_upgrade_batch_percent": batch, "fjord_upgrade_max_fail_percentage": max_fail}


def unit_group(unit: ScalableUnitSize) -> str:
    return group_name("su", unit.cluster, unit.index)


def site_vars(site: Site) -> dict[str, Any]:
    """Variables every host of the site gets: the software baseline and where packages come from."""
    sw = site.software
    # Connection settings only where the site sets them, so a site without host_access keeps its inventory.
    access: dict[str, Any] = {"ansible_user": site.host_access.ssh_user} if site.host_access.ssh_user else {}
    if site.host_access.needs_become:
        access |= {"ansible_become": True, "ansible_become_method": site.host_access.become_method}
    return access | {
        "fjord_site": site.name,
        "fjord_os": sw.os,
        "fjord_package_mirror": site.air_gap.packages if site.air_gap else None,
        "nvidia_driver_branch": sw.driver_branch,
        "nvidia_driver_source": sw.driver_source,
        "cuda_toolkit_version": sw.cuda,
        "k8s_node_version": sw.kubernetes,
        # The catalog's CUDA rule, so that preflight checks the same thing the spec does.
        "fjord_cuda_min_driver_branch": dict(CUDA_MIN_DRIVER_BRANCH),
    }


def cluster_vars(site: Site, cluster: Cluster) -> dict[str, Any]:
    """Variables of one cluster's hosts: ownership of the GPU stack, the SKU's figures, validation, upgrades."""
    sku = cluster.gpu
    fabric = site.fabric(cluster.compute_fabric)
    return {
        "fjord_cluster": cluster.name,
        "fjord_hall": cluster.hall,
        "fjord_tenant": cluster.tenant,
        "fjord_scheduler": cluster.scheduler,
        "fjord_gpu_sku": sku.name,
        "fjord_gpu_min_driver_branch": sku.min_driver_branch,
        "fjord_compute_nics_expected": sku.compute_rails,
        # The one ownership switch, read exactly as the Kubernetes platform reads it.
        **host_vars(cluster),
        # HGX baseboards carry NVSwitches driven by Fabric Manager on the node; an NVL72 tray's NVLink
        # switches live in the rack's switch trays.
        "fabric_manager_enabled": sku.form_factor == "hgx",
        "doca_ofed_enabled": fabric.technology in ("infiniband-ndr", "infiniband-xdr", "spectrum-x"),
        "k8s_node_enabled": cluster.scheduler == "kubernetes",
        "gpu_validate_expected_model": sku.name.split("-")[0],
        "gpu_validate_expected_count": sku.gpus_per_node,
        **acceptance_vars(site, cluster),
        "gpu_validate_bf16_peak_tflops": sku.bf16_dense_tflops,
        "gpu_validate_hbm_peak_tbps": sku.hbm_tbps,
        "fjord_upgrade_batch_percent": cluster.upgrade.batch_percent,
        "fjord_upgrade_max_fail_percentage": cluster.upgrade.max_fail_percentage,
    }


def acceptance_vars(site: Site, cluster: Cluster) -> dict[str, Any]:
    """The acceptance gate of a cluster as the gpu_validate role reads it: the required checks and thresholds.

    A threshold the spec leaves out (null) is not required; the role still measures and records it against the
    catalog's default share, which never decides."""
    gate = cluster.acceptance
    return {
        "gpu_validate_required": list(gate.required()),
        "gpu_validate_dcgm_level": gate.dcgm_level,
        "gpu_validate_gemm_min_fraction": gate.gemm_min_fraction or DEFAULT_FRACTIONS["gemm"],
        "gpu_validate_hbm_min_fraction": gate.hbm_min_fraction or DEFAULT_FRACTIONS["hbm"],
        "gpu_validate_nccl_node_min_fraction": gate.nccl_node_min_fraction or DEFAULT_FRACTIONS["nccl_node"],
        "gpu_validate_ib_min_fraction": gate.ib_min_fraction or DEFAULT_FRACTIONS["ib"],
        "gpu_validate_nvlink_peak_gbps": cluster.gpu.nvlink_gbps,
        "gpu_validate_ib_port_gbps": site.fabric(cluster.compute_fabric).switch_model.port_gbps,
        "gpu_validate_os": site.software.os,
    }


DEFAULT_FRACTIONS = {"gemm": 0.7, "hbm": 0.8, "nccl_node": 0.7, "ib": 0.9}
"""Shares recorded against when the spec does not require a figure (the report shows them; they never decide)."""


class UnknownTarget(ValueError):
    """A `--limit` name that is neither a group nor a host of the site."""


class BadHostVars(ValueError):
    """Per-host variables (`fjord configure --host-vars`) that are not an object mapping host names of the
    site to objects of variables; one message per problem in `problems`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


HOST_VARS_ALLOWED = "a JSON object mapping host names of the site to objects of variables"
_JSON_TYPES = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return next((name for typ, name in _JSON_TYPES if isinstance(value, typ)), "an object")


def _shown(value: object, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _unit_prefixes(size: SiteSize) -> dict[str, int]:
    """Each scalable unit's host name prefix (`<prefix>-suNNN-n`) -> its node count: a host is prefix + NNN."""
    return {u.first_node[:-3]: u.node_count for c in size.clusters for u in c.units}


def _is_host(prefixes: Mapping[str, int], name: str) -> bool:
    digits = name[-3:]
    return len(name) > 3 and digits.isascii() and digits.isdigit() and int(digits) < prefixes.get(name[:-3], 0)


def check_host_vars(site: Site, size: SiteSize, data: object, max_problems: int = 10) -> dict[str, dict[str, Any]]:
    """`data` (a parsed `--host-vars` document) as host -> variables, every host one of the site's; raises
    BadHostVars naming each wrong key or value (at most `max_problems`) and what is allowed."""
    if not isinstance(data, dict):
        raise BadHostVars([f"the document is {_json_type(data)} ({_shown(data)}); allowed: {HOST_VARS_ALLOWED}"])
    prefixes = _unit_prefixes(size)
    problems: list[str] = []
    for host, variables in data.items():
        if not (isinstance(host, str) and _is_host(prefixes, host)):
            examples = [u.first_node for c in size.clusters for u in c.units[:1]][:3]
            hosts = sum(prefixes.values())
            problems.append(
                f"{host!r} is no host of site {site.name}; allowed: {HOST_VARS_ALLOWED}"
                f" ({hosts:,} hosts, e.g. {', '.join(examples)})"
            )
        elif not isinstance(variables, dict):
            problems.append(
                f"{host!r}: {_shown(variables)} is {_json_type(variables)}; allowed: an object of variables,"
                ' e.g. {"ansible_port": 2222}'
            )
    if problems:
        more = len(problems) - max_problems
        raise BadHostVars(problems[:max_problems] + ([f"... and {more} more"] if more > 0 else []))
    return data


@dataclass(frozen=True)
class Inventory:
    """A site's inventory (or part of it) as Ansible's YAML/JSON inventory document."""

    site: str
    data: dict[str, Any]
    hosts: tuple[str, ...]
    groups: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what is written for ansible-runner and what the digest covers."""
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON: changes exactly when a host, group or variable changes."""
        return json_digest(self.to_json())


def json_digest(canonical: str) -> str:
    """The digest of an inventory's canonical JSON (`Inventory.to_json()`), for a caller that has it already."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_targets(site: Site, size: SiteSize, wanted: set[str]) -> None:
    """Reject a limit name that is neither a group nor a host of the site, saying what is allowed."""
    groups = {group_name("site", site.name)}
    for c in size.clusters:
        groups |= {group_name("hall", c.hall), group_name("cluster", c.name)}
        for u in c.units:
            groups.add(unit_group(u))
            groups |= {group_name("rack", r) for r in u.racks}
    prefixes = _unit_prefixes(size)
    for w in sorted(wanted - groups):
        if _is_host(prefixes, w):
            continue
        named = sorted(g for g in groups if g.startswith(("site_", "hall_", "cluster_")))
        raise UnknownTarget(
            f"{w!r} is no group or host of site {site.name}; allowed: {', '.join(named)}, "
            "su_<cluster>_<NNN>, rack_<hall>_r<NNNN> or a host name"
        )


def build_inventory(
    site: Site,
    size: SiteSize,
    only: Iterable[str] = (),
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> Inventory:
    """The site's inventory; `only` (group or host names, as for `--limit`) restricts it before anything is
    formatted; `host_vars` adds per-host variables (e.g. connection settings) over the generated ones."""
    wanted = {w for w in only if w}
    _check_targets(site, size, wanted)
    site_group = group_name("site", site.name)
    doc = _Doc(site, host_vars or {}, {c.name: c for c in size.clusters})
    for c in size.clusters:
        cg, hg = group_name("cluster", c.name), group_name("hall", c.hall)
        for u in c.units:
            whole = not wanted or bool({site_group, hg, cg, unit_group(u)} & wanted)
            if whole:
                doc.add_unit(u)
            elif any(w.startswith(u.first_node[:-3]) for w in wanted) or any(
                group_name("rack", r) in wanted for r in u.racks
            ):
                doc.add_unit(u, keep=lambda name, rack: rack in wanted or name in wanted)
    return doc.inventory()


def unit_inventory(
    site: Site,
    unit: ScalableUnitSize,
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
    nodes: Sequence[Node] | None = None,
    cluster: ClusterSize | None = None,
    group_vars: dict[str, dict[str, Any]] | None = None,
) -> Inventory:
    """The inventory of one scalable unit (what its host configuration resource runs on); `nodes` are the
    unit's nodes when the caller has them already, `cluster` the sized cluster (a Slurm cluster's variables
    describe all of it; without it the site is sized again). `group_vars` is a cache of the cluster groups'
    variables (cluster name -> variables) kept by a caller that builds every unit of a cluster: a Slurm
    cluster's variables describe all of its nodes (narvik: ~50 KB of slurm.conf lines), the same for each of
    its units, so they are built once, not once per unit. The caller must not change the cached values."""
    doc = _Doc(site, host_vars or {}, {cluster.name: cluster} if cluster else None, group_vars)
    doc.add_unit(unit, nodes=nodes)
    return doc.inventory()


def cluster_inventory(
    site: Site,
    cluster: ClusterSize,
    nodes: Mapping[int, Sequence[Node]] | None = None,
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
    group_vars: dict[str, dict[str, Any]] | None = None,
) -> Inventory:
    """The inventory of one whole cluster, every scalable unit in it (what the cluster's drained rollout runs
    on); `nodes` are the units' nodes by unit index when the caller has them already; `group_vars` as for
    `unit_inventory` (the cluster group's variables, built once and shared)."""
    doc = _Doc(site, host_vars or {}, {cluster.name: cluster}, group_vars)
    for u in cluster.units:
        doc.add_unit(u, nodes=None if nodes is None else nodes[u.index])
    return doc.inventory()


class _Doc:
    """An inventory document being built unit by unit."""

    def __init__(
        self,
        site: Site,
        host_vars: Mapping[str, Mapping[str, Any]],
        sized: dict[str, ClusterSize] | None = None,
        group_vars: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.site = site
        self.sized = dict(sized or {})
        self.group_vars = {} if group_vars is None else group_vars
        self.extra = host_vars
        self.specs = {c.name: c for c in site.clusters}
        self.children: dict[str, Any] = {}
        self.site_children: dict[str, Any] = {}
        self.names: list[str] = []

    def add_unit(
        self,
        u: ScalableUnitSize,
        keep: Callable[[str, str], bool] | None = None,
        nodes: Sequence[Node] | None = None,
    ) -> None:
        children = self.children
        cluster = self.specs[u.cluster]
        cg, hg, ug = group_name("cluster", u.cluster), group_name("hall", cluster.hall), unit_group(u)
        unit_hosts: dict[str, Any] = {}
        rack_groups: dict[str, str] = {}  # a rack's nodes share its group name: formatted once per rack
        # An NVL72 rack is one NVLink domain: its group carries the IMEX node list (every tray of the rack, also
        # where a limit keeps only some) and the Kubernetes label.
        trays: dict[str, list[str]] | None = {} if cluster.gpu.rack_scale else None
        for node in u.nodes() if nodes is None else nodes:
            rg = rack_groups.get(node.rack) or rack_groups.setdefault(node.rack, group_name("rack", node.rack))
            if trays is not None:
                trays.setdefault(node.rack, []).append(node.management)
            if keep is not None and not keep(node.name, rg):
                continue
            record: dict[str, Any] = {"ansible_host": node.management, "fjord_node_role": node.role}
            record.update(self.extra.get(node.name, {}))
            unit_hosts[node.name] = record
            children.setdefault(rg, {"vars": {"fjord_rack": node.rack}, "hosts": {}})["hosts"][node.name] = None
            self.names.append(node.name)
        if trays is not None:
            for rack, addresses in trays.items():
                if rack_groups[rack] in children:
                    children[rack_groups[rack]]["vars"].update(domain_vars(self.site.name, rack, addresses))
        if not unit_hosts:
            return
        if cg not in children:
            if cluster.name not in self.group_vars:
                self.group_vars[cluster.name] = self.cluster_vars(cluster)
            children[cg] = {"vars": self.group_vars[cluster.name], "children": {}}
            children.setdefault(hg, {"vars": {"fjord_hall": cluster.hall}, "children": {}})["children"][cg] = None
            self.site_children[hg] = None
        children[cg]["children"][ug] = None
        children[ug] = {"vars": {"fjord_scalable_unit": u.index}, "hosts": unit_hosts}
        if cluster.scheduler == "slurm":
            # The groups the Slurm playbook's phases run on: every node, the controllers, the accounting host.
            variables = children[cg]["vars"]
            children.setdefault("slurm", {"children": {}})["children"][cg] = None
            for group, hosts in (
                ("slurmctld", variables["slurm_controllers"]),
                ("slurmdbd", [variables["slurm_accounting_host"]]),
            ):
                for host in hosts:
                    if host in unit_hosts:
                        children.setdefault(group, {"hosts": {}})["hosts"][host] = None

    def cluster_vars(self, cluster: Cluster) -> dict[str, Any]:
        """The cluster group's variables; a Slurm cluster's add its slurm_* variables (fjord.hosts.slurm)."""
        variables = cluster_vars(self.site, cluster)
        if cluster.gpu.rack_scale:
            # IMEX on the hosts for Slurm; on Kubernetes the DRA driver's ComputeDomains run it in pods.
            variables["imex_enabled"] = cluster.scheduler == "slurm"
            variables["imex_options"] = dict(IMEX_OPTIONS)
        if cluster.scheduler == "slurm":
            if cluster.name not in self.sized:
                self.sized.update({c.name: c for c in size_site(self.site).clusters})
            variables.update(slurm_cluster(self.site, self.sized[cluster.name]).inventory_vars())
        return variables

    def inventory(self) -> Inventory:
        children = dict(self.children)
        children[group_name("site", self.site.name)] = {"vars": site_vars(self.site), "children": self.site_children}
        return Inventory(
            site=self.site.name,
            data={"all": {"children": children}},
            hosts=tuple(self.names),
            groups=tuple(sorted(children)),
        )
