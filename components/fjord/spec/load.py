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

from fjord.spec.errors import (
    CREDENTIAL_KEY,
    HIDDEN,
    SECRET_SHOWN,
    Problem,
    SiteError,
    problems_from_validation,
    redact,
)

if TYPE_CHECKING:
    from fjord.spec.models import Site

NAMESPACE = "fjord"
SITE_KEY = f"{NAMESPACE}:site"
DEFAULT_STACK = "dev"
SECRET_PLACEHOLDER = SECRET_SHOWN  # how a secret shows wherever it would be
SECRET_CONFIG_KEYS = (f"{NAMESPACE}:bmcPassword", f"{NAMESPACE}:s3SecretAccessKey")
"""Config keys whose value is a credential: only ever a Pulumi secret (`secure:` in the stack file)."""
SECRET_CONFIG_PREFIXES = (f"{NAMESPACE}:kubeconfig-",)
"""Prefixes of such keys: a cluster's kubeconfig, `fjord:kubeconfig-<cluster>`."""


CONFIG_KEYS = (SITE_KEY, *SECRET_CONFIG_KEYS, f"{NAMESPACE}:s3AccessKeyId", f"{NAMESPACE}:configureHosts")
"""Every key of fjord's namespace a program or command reads, with SECRET_CONFIG_PREFIXES."""


def known_key(key: str) -> bool:
    return key in CONFIG_KEYS or any(key.startswith(p) and len(key) > len(p) for p in SECRET_CONFIG_PREFIXES)


def unknown_key_problem(key: str, value: Any) -> Problem:
    """A key of fjord's namespace that nothing reads (a typo, most likely); a credential-like one's value hidden."""
    allowed = [*CONFIG_KEYS, *(f"{p}<cluster>" for p in SECRET_CONFIG_PREFIXES)]
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ";"
    shown = SECRET_PLACEHOLDER if value == SECRET_PLACEHOLDER else HIDDEN if CREDENTIAL_KEY.search(key) else value
    return Problem(key, shown, f"unknown config key{hint} allowed keys: {', '.join(allowed)}")


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


_BASE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int, value: Any) -> None:
        self.key, self.line, self.first, self.value = key, line, first, value
        super().__init__(f"key {key!r} on line {line} is already set on line {first}")


class UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader (on libyaml where PyYAML has it, several times faster than the pure-Python one) that
    refuses a key given twice in one mapping, where YAML loaders silently keep the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    scalar = isinstance(value_node, yaml.ScalarNode) and not CREDENTIAL_KEY.search(str(key))
                    raise DuplicateKey(key, line, seen[key], value_node.value if scalar else HIDDEN)
                seen[key] = line
            except TypeError:  # an unhashable key: the base loader says so
                break
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


SAFE_LOADER = UniqueKeyLoader


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
    names = {p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml") if p.is_file()}
    return sorted(names)


def stack_path(stack: str, folder: Path) -> Path:
    """`folder`'s file for `stack`, which may not exist; rejects one that is there but is no file (a folder)."""
    path = folder / f"Pulumi.{stack}.yaml"
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        problem = Problem("stack", stack, f"{path.name} is {what}; allowed: a Pulumi.<stack>.yaml file")
        raise SiteError([problem], str(path))
    return path


def read_stack(stack: str, directory: Path | None = None) -> StackConfig:
    """Read `Pulumi.<stack>.yaml`; a missing file is an error except for the embedded `dev` default."""
    folder = stacks_dir(directory)
    path = stack_path(stack, folder)
    if not path.is_file():
        if stack == DEFAULT_STACK:
            return StackConfig(stack, None, default_site(), embedded_default=True)
        known = ", ".join(list_stacks(folder)) or "(none)"
        raise SiteError([Problem("stack", stack, f"no file {path}; allowed stacks: {known}")])
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        problem = f"is not UTF-8 text (line {line}: byte 0x{exc.object[exc.start]:02x}); allowed: a UTF-8 file"
        raise SiteError([Problem("", str(path), problem)], str(path)) from None
    except DuplicateKey as exc:
        problem = f"is set twice in one mapping (lines {exc.first} and {exc.line}); allowed: each key once"
        raise SiteError([Problem(str(exc.key), exc.value, problem)], str(path)) from None
    except yaml.YAMLError as exc:
        raise SiteError([Problem("", str(path), f"is not valid YAML: {_one_line(exc)}")], str(path)) from None
    return parse_stack_doc(stack, doc, path)


def _one_line(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's message spans several, with a caret)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{what}{where}; allowed: a YAML mapping"


STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
"""The top-level keys of a Pulumi stack file (`ProjectStack` in Pulumi's sdk/go/common/workspace/project.go)."""


def missing_site_problem(stack: str) -> Problem:
    """The problem of a stack other than `dev` that sets no `fjord:site`: what to put there."""
    return Problem(
        SITE_KEY,
        None,
        f"is missing: every stack but {DEFAULT_STACK!r} describes its site; allowed: a mapping under"
        f" `config: {SITE_KEY}:` in Pulumi.{stack}.yaml (copy components/fjord/spec/default_site.yaml to start)",
    )


def parse_stack_doc(stack: str, doc: Any, path: Path | None = None) -> StackConfig:
    source = str(path) if path else stack
    if not isinstance(doc, dict):
        raise SiteError([Problem("", type(doc).__name__, "a stack file must be a mapping")], source)
    unknown_top = [k for k in doc if k not in STACK_FILE_KEYS]
    if unknown_top:
        # A misspelt `config:` would otherwise read as no config at all: `dev` would fall back to the embedded
        # site without a word. Pulumi's CLI rejects such a file too.
        problems = []
        for key in unknown_top:
            near = difflib.get_close_matches(str(key), STACK_FILE_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ";"
            allowed = ", ".join(STACK_FILE_KEYS)
            message = f"unknown stack file key{hint} allowed keys: {allowed}"
            problems.append(Problem(str(key), redact(doc[key]), message))
        raise SiteError(problems, source)
    raw_config = doc.get("config") or {}
    if not isinstance(raw_config, dict):
        raise SiteError([Problem("config", type(raw_config).__name__, "must be a mapping of keys")], source)
    config: dict[str, Any] = {}
    secrets: list[str] = []
    plain: list[Problem] = []
    for key, value in raw_config.items():
        if not isinstance(key, str):  # YAML reads `on:` as true and `1:` as a number
            allowed = "a string such as 'fjord:site' (quote a key YAML would read otherwise)"
            raise SiteError([Problem(f"config.{key!r}", key, f"is not a config key; allowed: {allowed}")], source)
        full = key if ":" in key else f"{NAMESPACE}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.append(full)
            value = SECRET_PLACEHOLDER
        elif must_be_secret(full):
            plain.append(plain_secret_problem(full))
        config[full] = value
    unknown = [unknown_key_problem(k, config[k]) for k in config if k.startswith(f"{NAMESPACE}:") and not known_key(k)]
    if plain or unknown:
        raise SiteError(plain + unknown, source)
    site = config.pop(SITE_KEY, None)
    embedded = False
    if site is None:
        if stack != DEFAULT_STACK:
            raise SiteError([missing_site_problem(stack)], source)
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
