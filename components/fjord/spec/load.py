"""Reading stack files: `stacks/Pulumi.<stack>.yaml`, structured config under the `fjord:` namespace.

Pure: YAML in, a validated `Site` out. Secret values (`secure: <ciphertext>`, written by the Pulumi CLI)
cannot be decrypted offline; they are kept as opaque markers, never printed and never fatal.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fjord.spec.errors import Problem, SiteError, problems_from_validation

if TYPE_CHECKING:
    from fjord.spec.models import Site

NAMESPACE = "fjord"
SITE_KEY = f"{NAMESPACE}:site"
DEFAULT_STACK = "dev"
SECRET_PLACEHOLDER = "[secret]"
SECRET_CONFIG_KEYS = (f"{NAMESPACE}:bmcPassword", f"{NAMESPACE}:s3SecretAccessKey")
"""Config keys whose value is a credential: only ever a Pulumi secret (`secure:` in the stack file)."""
SECRET_CONFIG_PREFIXES = (f"{NAMESPACE}:kubeconfig-",)
"""Prefixes of such keys: a cluster's kubeconfig, `fjord:kubeconfig-<cluster>`."""


def must_be_secret(key: str) -> bool:
    """Whether the full config key `key` holds a credential, which a stack file may hold only encrypted."""
    return key in SECRET_CONFIG_KEYS or key.startswith(SECRET_CONFIG_PREFIXES)


def plain_secret_problem(key: str) -> Problem:
    """The problem of a credential stored in plain text; its value is never shown."""
    return Problem(
        key,
        "[not shown]",
        f"is a credential stored in plain text; allowed: a Pulumi secret, set with `pulumi config set --secret {key}`",
    )


@dataclass(frozen=True)
class StackConfig:
    """One stack's config as Pulumi would hand it to the program."""

    stack: str
    path: Path | None
    site: dict[str, Any]
    embedded_default: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    """Every namespaced key except the site, secrets replaced by SECRET_PLACEHOLDER."""
    secret_keys: tuple[str, ...] = ()


SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""PyYAML's safe loader on libyaml where PyYAML has it (several times faster than the pure-Python one)."""


def default_site() -> dict[str, Any]:
    """The embedded default site (`dev`): used by the `dev` stack when its file sets no `fjord:site`."""
    text = resources.files("fjord.spec").joinpath("default_site.yaml").read_text(encoding="utf-8")
    data = yaml.load(text, Loader=SAFE_LOADER)
    assert isinstance(data, dict)
    return data


def stacks_dir(explicit: Path | None = None) -> Path:
    """Where stack files are: an explicit path, $FJORD_STACKS_DIR, ./stacks, or the project's own."""
    if explicit is not None:
        return explicit
    env = os.environ.get("FJORD_STACKS_DIR")
    if env:
        return Path(env)
    here = Path.cwd() / "stacks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "stacks"


def list_stacks(directory: Path) -> list[str]:
    names = {p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml")}
    return sorted(names)


def read_stack(stack: str, directory: Path | None = None) -> StackConfig:
    """Read `Pulumi.<stack>.yaml`; a missing file is an error except for the embedded `dev` default."""
    folder = stacks_dir(directory)
    path = folder / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        if stack == DEFAULT_STACK:
            return StackConfig(stack, None, default_site(), embedded_default=True)
        known = ", ".join(list_stacks(folder)) or "(none)"
        raise SiteError([Problem("stack", stack, f"no file {path}; allowed stacks: {known}")])
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        raise SiteError([Problem("", str(path), f"is not valid YAML: {exc}")], str(path)) from None
    return parse_stack_doc(stack, doc, path)


def parse_stack_doc(stack: str, doc: Any, path: Path | None = None) -> StackConfig:
    source = str(path) if path else stack
    if not isinstance(doc, dict):
        raise SiteError([Problem("", type(doc).__name__, "a stack file must be a mapping")], source)
    raw_config = doc.get("config") or {}
    if not isinstance(raw_config, dict):
        raise SiteError([Problem("config", type(raw_config).__name__, "must be a mapping of keys")], source)
    config: dict[str, Any] = {}
    secrets: list[str] = []
    plain: list[Problem] = []
    for key, value in raw_config.items():
        full = key if ":" in key else f"{NAMESPACE}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.append(full)
            value = SECRET_PLACEHOLDER
        elif must_be_secret(full):
            plain.append(plain_secret_problem(full))
        config[full] = value
    if plain:
        raise SiteError(plain, source)
    near = [k for k in difflib.get_close_matches(SITE_KEY, config, n=3, cutoff=0.8) if k != SITE_KEY]
    if near:
        raise SiteError([Problem(near[0], "...", f"unknown key; did you mean {SITE_KEY!r}?")], source)
    site = config.pop(SITE_KEY, None)
    embedded = False
    if site is None:
        if stack != DEFAULT_STACK:
            raise SiteError([Problem(SITE_KEY, None, "is missing: every stack but 'dev' describes its site")], source)
        site, embedded = default_site(), True
    if SITE_KEY in secrets or not isinstance(site, dict):
        raise SiteError([Problem(SITE_KEY, "[secret]" if SITE_KEY in secrets else site, "must be a mapping")], source)
    return StackConfig(stack, path, site, embedded, config, tuple(secrets))


def load_site(raw: Any, source: str = "") -> Site:
    """Validate a raw site description; raise SiteError naming every bad field, or return the Site.

    The models (and pydantic) are loaded here, on first use: reading stack files, listing stacks and the
    commands that only plan in a worker process need neither."""
    from pydantic import ValidationError

    from fjord.spec.models import Site

    if not isinstance(raw, dict):
        raise SiteError([Problem("", type(raw).__name__, "a site must be a mapping")], source)
    try:
        return Site.model_validate(raw)
    except ValidationError as exc:
        raise SiteError(problems_from_validation(Site, exc), source) from None
