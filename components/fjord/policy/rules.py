"""fjord's policy rules: each one a pure function over the validated site, its sizing, its Kubernetes platform data,
the stack's config and (for the blast radius) what a change does to the site.

A rule has a severity: `mandatory` violations fail `fjord plan` (exit 6), `fjord gitops check` and, through the
CrossGuard pack in `policy/`, `pulumi preview/up --policy-pack policy`; `advisory` ones are reported only.
`PolicySettings` (the repository's `policy/config.yaml`) says which hosts stand in which jurisdiction, the blast
radius limit, and may change a rule's severity or turn it off.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fjord.platform.build import ClusterPlatform, build_platform, tenant_namespace
from fjord.sizing.site import SiteSize
from fjord.spec.errors import CREDENTIAL_KEY, SECRET_SHOWN, Problem, SiteError, problems_from_validation
from fjord.spec.load import LIMITS, SAFE_LOADER, StackConfig, TooLarge, must_be_secret
from fjord.spec.models import Jurisdiction, Site

Severity = Literal["advisory", "mandatory"]
ADVISORY: Severity = "advisory"
MANDATORY: Severity = "mandatory"

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts of a lab on the machine itself (emulators, a test RGW): inside every jurisdiction."""


class PolicySettings(BaseModel):
    """What the rules need to know beyond the site: the repository's `policy/config.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jurisdictions: dict[Jurisdiction, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Host names (a name covers its subdomains) that stand in each jurisdiction, e.g."
        " {UK: [uk.fjord.example]}. Hosts named nowhere are reported by the advisory rule data-residency-unproven.",
    )
    blast_radius_percent: float = Field(
        default=10,
        ge=0,
        le=100,
        description="Share of the site's nodes one change may restart or remove, percent (blast-radius).",
    )
    blast_radius_min_nodes: int = Field(
        default=1, ge=0, description="Nodes one change may always restart or remove, however small the site."
    )
    enforcement: dict[str, Literal["advisory", "mandatory", "disabled"]] = Field(
        default_factory=dict, description="A rule's severity changed, or the rule turned off, by its name."
    )


SETTINGS_FILE = Path("policy") / "config.yaml"
"""The settings' place in a repository, beside its stacks folder."""


def default_settings_path(stacks_folder: Path) -> Path:
    """The repository's `policy/config.yaml` for a stacks folder (`<repo>/stacks`): `<repo>/policy/config.yaml`."""
    return stacks_folder.resolve().parent / SETTINGS_FILE


def load_settings(path: Path | None) -> PolicySettings:
    """The settings in a YAML file (None or a missing file: the defaults); a bad file raises SiteError."""
    if path is None or not path.is_file():
        return PolicySettings()
    try:
        # The one bounded loader (fjord.spec.load): a settings file of YAML aliases cannot blow up either.
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    except TooLarge as exc:
        raise SiteError([Problem("", str(path), f"{exc.what}; {LIMITS}")], str(path)) from None
    except yaml.YAMLError as exc:
        problem = Problem("", str(path), f"is not valid YAML ({exc}); allowed: a YAML mapping")
        raise SiteError([problem], str(path)) from None
    try:
        settings = PolicySettings.model_validate(raw)
    except ValidationError as exc:
        raise SiteError(problems_from_validation(PolicySettings, exc), str(path)) from None
    unknown = sorted(set(settings.enforcement) - {r.name for r in RULES})
    if unknown:
        names = ", ".join(r.name for r in RULES)
        raise SiteError([Problem(f"enforcement.{n}", n, f"is no rule; allowed: {names}") for n in unknown], str(path))
    return settings


@dataclass(frozen=True)
class Change:
    """What a change of the spec does to the site's nodes (from `fjord diff`): the blast radius rule's input."""

    base_nodes: int
    """Nodes of the site before the change."""
    added: int = 0
    removed: int = 0
    restarted: int = 0
    """Nodes the change drains and restarts (BIOS, firmware, driver, CUDA or Kubernetes changes reach them)."""
    moved: tuple[tuple[str, str, str, str], ...] = ()
    """(node, what, before, after) for every address or rack of an existing node that the change would move."""


@dataclass(frozen=True)
class PolicyInput:
    """Everything a rule reads: pure data, built once per stack."""

    stack: str
    site: Site
    size: SiteSize
    platforms: tuple[ClusterPlatform, ...]
    config: StackConfig | None = None
    """The stack's namespaced config (secrets masked) and which keys are secrets; None: the embedded site alone."""
    change: Change | None = None
    """What the change under review does to the nodes; None when there is nothing to compare with."""
    settings: PolicySettings = field(default_factory=PolicySettings)


def policy_input(
    stack: str,
    site: Site,
    size: SiteSize,
    config: StackConfig | None = None,
    change: Change | None = None,
    settings: PolicySettings | None = None,
) -> PolicyInput:
    """The rules' input: the platform of every Kubernetes cluster is built here, as the program builds it."""
    platforms = tuple(build_platform(site, c) for c in size.clusters if c.scheduler == "kubernetes")
    return PolicyInput(stack, site, size, platforms, config, change, settings or PolicySettings())


@dataclass(frozen=True)
class Violation:
    """One thing a rule found: the field path, the value, and what is wrong and what is allowed."""

    path: str
    value: str
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message} (got {self.value})"


Check = Callable[[PolicyInput], list[Violation]]


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    description: str
    check: Check

    def __call__(self, inp: PolicyInput) -> list[Violation]:
        return self.check(inp)


RULES_BY_NAME: dict[str, Rule] = {}


def rule(name: str, severity: Severity, description: str) -> Callable[[Check], Rule]:
    """Register a check function as a rule; the function stays importable as the returned Rule."""

    def register(check: Check) -> Rule:
        r = Rule(name, severity, description, check)
        RULES_BY_NAME[name] = r
        return r

    return register


# --- data residency ---------------------------------------------------------------------------------------------


def host_of(url: str) -> str:
    """The host of a URL, or of a registry reference `host[:port]/path`."""
    if "://" not in url:
        url = "//" + url
    return (urlsplit(url).hostname or "").lower()


def jurisdiction_of(host: str, settings: PolicySettings) -> str | None:
    """The jurisdiction `settings` places `host` in (the longest matching name wins); None if named nowhere."""
    best: tuple[int, str] | None = None
    for where, names in settings.jurisdictions.items():
        for name in names:
            name = name.lower().lstrip(".")
            if (host == name or host.endswith("." + name)) and (best is None or len(name) > best[0]):
                best = (len(name), where)
    return best[1] if best else None


def _data_hosts(site: Site) -> Iterator[tuple[str, str, str]]:
    """(field path, what, URL) of every place the site keeps data or pulls software from."""
    store = site.store()
    if store is not None:
        path = "object_store.endpoint" if store.spec.endpoint else f"object_store.tier ({store.spec.tier})"
        yield path, "state and artifacts", store.endpoint
        if any(t.buckets for t in site.tenants):
            yield path, "tenant buckets", store.endpoint
    for i, t in enumerate(site.storage):
        if t.endpoint:
            yield f"storage[{i}].endpoint", f"storage tier {t.name}", t.endpoint
    if site.air_gap is not None:
        yield "air_gap.registry", "the site's image registry", site.air_gap.registry
        yield "air_gap.charts", "the site's chart repository", site.air_gap.charts
        yield "air_gap.packages", "the site's package mirror", site.air_gap.packages


@rule(
    "data-residency",
    MANDATORY,
    "State, artifacts, tenant buckets, object tiers and the site's registries and mirrors stand in the site's"
    " jurisdiction.",
)
def data_residency(inp: PolicyInput) -> list[Violation]:
    site = inp.site
    found: list[Violation] = []
    store = site.store()
    if store is not None and store.jurisdiction != site.jurisdiction:
        found.append(
            Violation(
                "object_store.jurisdiction",
                store.jurisdiction,
                f"state and artifacts of site {site.name} must stay in {site.jurisdiction};"
                f" allowed: {site.jurisdiction}",
            )
        )
    for path, what, url in _data_hosts(site):
        host = host_of(url)
        where = None if host in LOOPBACK_HOSTS else jurisdiction_of(host, inp.settings)
        if where is not None and where != site.jurisdiction:
            found.append(
                Violation(
                    path,
                    url,
                    f"{what} at {host}, which policy/config.yaml places in {where}; site {site.name}'s data stays in"
                    f" {site.jurisdiction}; allowed: a host in {site.jurisdiction}",
                )
            )
    return found


@rule(
    "data-residency-unproven",
    ADVISORY,
    "Every host the site keeps data on or pulls software from is placed in a jurisdiction by policy/config.yaml.",
)
def data_residency_unproven(inp: PolicyInput) -> list[Violation]:
    found: list[Violation] = []
    hosts = [*_data_hosts(inp.site)]
    if inp.site.air_gap is None and inp.platforms:
        hosts += [
            ("air_gap (not set)", "upstream images and charts", h) for h in sorted(_upstream_hosts(inp.platforms))
        ]
    seen: set[str] = set()
    for path, what, url in hosts:
        host = host_of(url)
        if host in seen:
            continue
        seen.add(host)
        if host not in LOOPBACK_HOSTS and jurisdiction_of(host, inp.settings) is None:
            found.append(
                Violation(
                    path,
                    url,
                    f"{what} at {host}, whose jurisdiction policy/config.yaml does not state; allowed: a host listed"
                    f" under jurisdictions.{inp.site.jurisdiction}",
                )
            )
    return found


# --- credentials --------------------------------------------------------------------------------------------------


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf value) of every leaf of nested dicts and lists."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


_URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)


@rule(
    "no-plaintext-credentials",
    MANDATORY,
    "No credential in plain text: credential config keys are Pulumi secrets, and no password, token or key sits in"
    " the site, a URL or a platform object.",
)
def no_plaintext_credentials(inp: PolicyInput) -> list[Violation]:
    found: list[Violation] = []
    if inp.config is not None:
        for key, value in inp.config.config.items():
            if (must_be_secret(key) or CREDENTIAL_KEY.search(key.partition(":")[2])) and value != SECRET_SHOWN:
                found.append(
                    Violation(
                        key,
                        "[not shown]",
                        "is a credential in plain text in the stack file; allowed: a Pulumi secret"
                        f" (`pulumi config set --secret {key}`)",
                    )
                )
    leaves = [("", p, v) for p, v in _walk(inp.site.model_dump(mode="json"))]
    for plat in inp.platforms:
        for rel in plat.releases:
            leaves += [(f"{plat.cluster}: release {rel.name} values.", p, v) for p, v in _walk(rel.values)]
        leaves += [
            (f"{plat.cluster}: {o['kind']} {o['metadata']['name']}.", p, v)
            for o in plat.manifests
            for p, v in _walk(o)
            if o["kind"] != "Secret"
        ]
        leaves += [
            (f"{plat.cluster}: Secret {o['metadata']['name']}.", "data", "(in plain manifests)")
            for o in plat.manifests
            if o["kind"] == "Secret" and (o.get("data") or o.get("stringData"))
        ]
    for where, path, value in leaves:
        last = re.split(r"[.\[]", path)[-1] if path else ""
        if isinstance(value, str) and _URL_USERINFO.match(value):
            found.append(
                Violation(
                    where + path,
                    "[not shown]",
                    "a URL with a user and password in it; allowed: a URL without credentials"
                    " (credentials are Pulumi secrets)",
                )
            )
        elif (
            last
            and CREDENTIAL_KEY.search(last)
            and isinstance(value, str | int)
            and not isinstance(value, bool)
            and str(value) not in ("", SECRET_SHOWN)
        ):
            found.append(
                Violation(
                    where + path,
                    "[not shown]",
                    "looks like a credential in plain text; allowed: a Pulumi secret (`pulumi config set --secret`)",
                )
            )
    return found


# --- pinned versions -----------------------------------------------------------------------------------------------

_EXACT = re.compile(r"v?\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?")
_FLOATING = re.compile(r"(^|[/:._-])(latest|stable|nightly|main|master|edge)($|[/._-])", re.IGNORECASE)


@rule(
    "pinned-versions",
    MANDATORY,
    "Charts, operator-owned drivers, platform images and the OS or firmware image are pinned to exact versions.",
)
def pinned_versions(inp: PolicyInput) -> list[Violation]:
    found: list[Violation] = []
    for plat in inp.platforms:
        for rel in plat.releases:
            if not _EXACT.fullmatch(rel.chart.version):
                found.append(
                    Violation(
                        f"{plat.cluster}: release {rel.name}.chart.version",
                        rel.chart.version,
                        "a chart version that is not exact; allowed: an exact release such as 25.3.0",
                    )
                )
            leaves = [(f"release {rel.name} values.{p}", p, v) for p, v in _walk(rel.values)]
            found += _floating(plat.cluster, leaves)
        found += _floating(
            plat.cluster,
            [(f"{o['kind']} {o['metadata']['name']}.{p}", p, v) for o in plat.objects for p, v in _walk(o)],
        )
    bmc = inp.site.bmc
    if bmc.image_url and _FLOATING.search(urlsplit(bmc.image_url).path):
        found.append(
            Violation(
                "bmc.image_url",
                bmc.image_url,
                "the OS image floats (latest/stable/...); allowed: the URL of one versioned image",
            )
        )
    return found


def _floating(cluster: str, leaves: list[tuple[str, str, Any]]) -> list[Violation]:
    found: list[Violation] = []
    for where, path, value in leaves:
        last = re.split(r"[.\[]", path)[-1]
        if not isinstance(value, str):
            continue
        if last in ("version", "tag") and (not value or _FLOATING.fullmatch(value) or value in ("*", "x")):
            found.append(
                Violation(
                    f"{cluster}: {where}",
                    value or "(empty)",
                    "a version that floats; allowed: an exact version or digest",
                )
            )
        elif last == "image" and ("/" in value or ":" in value):
            name = value.rsplit("/", 1)[-1]
            tag = name.partition("@")[0].partition(":")[2] if "@" not in name else "digest"
            if not tag or _FLOATING.fullmatch(tag):
                found.append(
                    Violation(
                        f"{cluster}: {where}",
                        value,
                        "an image without a pinned tag or digest; allowed: <repository>:<exact tag> or @sha256:...",
                    )
                )
    return found


@rule(
    "driver-branch-floats",
    ADVISORY,
    "Host-owned drivers installed from NVIDIA's repository follow the newest release of their branch; a site mirror or"
    " a preinstalled image pins the release.",
)
def driver_branch_floats(inp: PolicyInput) -> list[Violation]:
    host_owned = [c.name for c in inp.site.clusters if c.gpu_stack.driver == "host"]
    if not host_owned or inp.site.software.driver_source != "repository":
        return []
    return [
        Violation(
            "software.driver_source",
            "repository",
            f"clusters {', '.join(host_owned)} take whatever release of branch {inp.site.software.driver_branch} the"
            " repository has when a host is configured; allowed: 'mirror' or 'preinstalled' to pin it",
        )
    ]


# --- BMC and OOB networks ------------------------------------------------------------------------------------------


@rule(
    "no-bmc-exposure",
    MANDATORY,
    "The BMC network is private, no tenant network policy reaches it, and a lab's Redfish service is not on a public"
    " address.",
)
def no_bmc_exposure(inp: PolicyInput) -> list[Violation]:
    site = inp.site
    bmc = site.ip_plan.bmc
    found: list[Violation] = []
    if not bmc.is_private:
        found.append(
            Violation(
                "ip_plan.bmc",
                str(bmc),
                "BMCs on publicly routable addresses; allowed: a private range such as 10.0.0.0/8, 172.16.0.0/12 or"
                " 192.168.0.0/16",
            )
        )
    for plat in inp.platforms:
        for obj in plat.objects:
            if obj["kind"] != "NetworkPolicy":
                continue
            spec = obj.get("spec", {})
            for direction, peer_key in (("ingress", "from"), ("egress", "to")):
                for i, r in enumerate(spec.get(direction, [])):
                    for peer in r.get(peer_key, []):
                        cidr = peer.get("ipBlock", {}).get("cidr")
                        if cidr and ipaddress.ip_network(cidr, strict=False).overlaps(bmc):
                            found.append(
                                Violation(
                                    f"{plat.cluster}: NetworkPolicy {obj['metadata'].get('namespace', '')}/"
                                    f"{obj['metadata']['name']}.spec.{direction}[{i}]",
                                    cidr,
                                    f"lets tenant pods reach the BMC network {bmc}; allowed: a peer outside it",
                                )
                            )
    if site.bmc.endpoint is not None:
        host = host_of(site.bmc.endpoint)
        try:
            public = ipaddress.ip_address(host).is_global
        except ValueError:
            public = False
        if public:
            found.append(
                Violation(
                    "bmc.endpoint",
                    site.bmc.endpoint,
                    "a Redfish service on a public address; allowed: a private or loopback address",
                )
            )
    return found


@rule(
    "bmc-tls",
    ADVISORY,
    "BMCs are reached over HTTPS with their certificates checked (the BMC password crosses this link).",
)
def bmc_tls(inp: PolicyInput) -> list[Violation]:
    bmc = inp.site.bmc
    lab = bmc.endpoint is not None and host_of(bmc.endpoint) in LOOPBACK_HOSTS
    found: list[Violation] = []
    if bmc.scheme == "http" and not lab:
        found.append(Violation("bmc.scheme", "http", "the BMC password travels unencrypted; allowed: https"))
    if not bmc.verify_tls and not lab:
        found.append(
            Violation(
                "bmc.verify_tls", "false", "any machine can pose as a BMC and receive its password; allowed: true"
            )
        )
    return found


# --- blast radius --------------------------------------------------------------------------------------------------


def blast_limit(change: Change, settings: PolicySettings) -> int:
    """Nodes one change may restart or remove."""
    return max(settings.blast_radius_min_nodes, int(change.base_nodes * settings.blast_radius_percent / 100))


@rule(
    "blast-radius",
    MANDATORY,
    "A change moves no existing node's address or rack, and restarts or removes at most blast_radius_percent of the"
    " site's nodes.",
)
def blast_radius(inp: PolicyInput) -> list[Violation]:
    change = inp.change
    if change is None:
        return []
    found = [
        Violation(
            f"node {node}.{what}",
            f"{before} -> {after}",
            "an existing node would move; allowed: no change to an allocated address or rack",
        )
        for node, what, before, after in change.moved[:20]
    ]
    if len(change.moved) > 20:
        found.append(
            Violation("nodes", str(len(change.moved)), f"and {len(change.moved) - 20} more moves of existing nodes")
        )
    disrupted = change.restarted + change.removed
    limit = blast_limit(change, inp.settings)
    if disrupted > limit:
        found.append(
            Violation(
                "nodes",
                f"{disrupted} restarted or removed",
                f"of {change.base_nodes} nodes exceeds the blast radius ({inp.settings.blast_radius_percent:g} %);"
                f" allowed: at most {limit} per change (split the change, or roll it out by batches)",
            )
        )
    return found


# --- tenants and images --------------------------------------------------------------------------------------------


@rule(
    "tenant-pod-security",
    MANDATORY,
    "Every tenant namespace enforces, audits and warns at Pod Security 'restricted'.",
)
def tenant_pod_security(inp: PolicyInput) -> list[Violation]:
    found: list[Violation] = []
    for plat in inp.platforms:
        namespaces = {n["metadata"]["name"]: n for n in plat.namespaces}
        for share in plat.tenants:
            ns = namespaces.get(share.namespace)
            if ns is None:
                found.append(
                    Violation(
                        f"{plat.cluster}: Namespace {share.namespace}",
                        "(missing)",
                        f"tenant {share.tenant} has GPUs here and no namespace of its own; allowed: a namespace"
                        f" {tenant_namespace(share.tenant)} at Pod Security 'restricted'",
                    )
                )
                continue
            labels = ns["metadata"].get("labels", {})
            for mode in ("enforce", "audit", "warn"):
                level = labels.get(f"pod-security.kubernetes.io/{mode}")
                if level != "restricted":
                    found.append(
                        Violation(
                            f"{plat.cluster}: Namespace {share.namespace}.metadata.labels"
                            f".pod-security.kubernetes.io/{mode}",
                            str(level),
                            "a tenant namespace below Pod Security 'restricted'; allowed: restricted",
                        )
                    )
    return found


def _image_refs(plat: ClusterPlatform) -> Iterator[tuple[str, str]]:
    """(where, image repository or reference) of everything the platform pulls, charts included."""
    for rel in plat.releases:
        yield f"release {rel.name}.chart", rel.repository or rel.chart_name
        for p, v in _walk(rel.values):
            if isinstance(v, str) and re.split(r"[.\[]", p)[-1] in ("repository", "image"):
                yield f"release {rel.name} values.{p}", v
    for o in plat.objects:
        for p, v in _walk(o):
            if isinstance(v, str) and re.split(r"[.\[]", p)[-1] in ("repository", "image") and "/" in v:
                yield f"{o['kind']} {o['metadata']['name']}.{p}", v


def _upstream_hosts(platforms: Sequence[ClusterPlatform]) -> set[str]:
    return {host_of(ref) for plat in platforms for _, ref in _image_refs(plat)} - {""}


@rule(
    "air-gap-images",
    MANDATORY,
    "On an air-gapped site every image comes from the site's registry and every chart from its chart repository.",
)
def air_gap_images(inp: PolicyInput) -> list[Violation]:
    air = inp.site.air_gap
    if air is None:
        return []
    registry = air.registry.rstrip("/")
    charts = air.charts.rstrip("/")
    found: list[Violation] = []
    for plat in inp.platforms:
        for where, ref in _image_refs(plat):
            allowed = charts if where.endswith(".chart") else registry
            bare = ref.split("://", 1)[-1]
            if not (ref.startswith(allowed + "/") or ref == allowed or bare.startswith(allowed.split("://", 1)[-1])):
                found.append(
                    Violation(
                        f"{plat.cluster}: {where}",
                        ref,
                        f"pulled from outside the air-gapped site; allowed: {allowed}/...",
                    )
                )
    return found


RULES: tuple[Rule, ...] = tuple(RULES_BY_NAME.values())
"""Every rule, in the order reports list them."""


@dataclass(frozen=True)
class RuleResult:
    rule: str
    severity: Severity
    description: str
    status: Literal["passed", "failed", "skipped"]
    violations: tuple[Violation, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "description": self.description,
            "note": self.note,
            "violations": [{"path": v.path, "value": v.value, "message": v.message} for v in self.violations],
        }


@dataclass(frozen=True)
class PolicyReport:
    stack: str
    results: tuple[RuleResult, ...]

    @property
    def mandatory_failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "failed" and r.severity == MANDATORY]

    @property
    def advisory_failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "failed" and r.severity == ADVISORY]

    @property
    def passed(self) -> bool:
        return not self.mandatory_failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "passed": self.passed,
            "mandatory_failed": [r.rule for r in self.mandatory_failed],
            "advisory_failed": [r.rule for r in self.advisory_failed],
            "results": [r.as_dict() for r in self.results],
        }

    def lines(self) -> list[str]:
        """One line per violation: `<severity> <rule>: <path>: <message> (got <value>)`."""
        return [
            f"{r.severity} {r.rule}: {v.line()}" for r in self.results if r.status == "failed" for v in r.violations
        ]


def evaluate(inp: PolicyInput, rules: Sequence[Rule] = RULES) -> PolicyReport:
    """Run every rule (severities as the settings set them; disabled rules skipped)."""
    results: list[RuleResult] = []
    for r in rules:
        level = inp.settings.enforcement.get(r.name, r.severity)
        if level == "disabled":
            results.append(RuleResult(r.name, r.severity, r.description, "skipped", note="disabled in policy settings"))
            continue
        if r.name == "blast-radius" and inp.change is None:
            results.append(RuleResult(r.name, level, r.description, "skipped", note="no base to compare with"))
            continue
        violations = tuple(r(inp))
        results.append(RuleResult(r.name, level, r.description, "failed" if violations else "passed", violations))
    return PolicyReport(inp.stack, tuple(results))
