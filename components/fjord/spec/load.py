"""Reading stack files: `stacks/Pulumi.<stack>.yaml`, structured config under the `fjord:` namespace.

Pure: YAML in, a validated `Site` out. Secret values (`secure: <ciphertext>`, written by the Pulumi CLI)
cannot be decrypted offline; they are kept as opaque markers, never printed and never fatal.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from collections.abc import Callable
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
    join_path,
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


ALLOW_REMOVE_KEY = f"{NAMESPACE}:allowRemove"
"""Clusters the operator means to remove: unprotected, and their removal accepted by `fjord alloc`/`diff`."""
HOST_VARS_KEY = f"{NAMESPACE}:hostVars"
"""Per-host variables (connection settings) for the hosts `pulumi up` configures: a mapping, or a JSON file's path."""
HOST_TAGS_KEY = f"{NAMESPACE}:hostTags"
"""The role tags of site.yml that `pulumi up` runs on the hosts (unset: every role)."""
CONFIG_KEYS = (
    SITE_KEY,
    *SECRET_CONFIG_KEYS,
    f"{NAMESPACE}:s3AccessKeyId",
    f"{NAMESPACE}:configureHosts",
    ALLOW_REMOVE_KEY,
    HOST_VARS_KEY,
    HOST_TAGS_KEY,
)
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


MAX_VALUES = 1_000_000
"""Most values (mappings, lists, scalars, map keys included) a site or stack file may hold, YAML aliases expanded:
far above any real site (narvik's stack holds a few hundred), far below what would take a command minutes."""
MAX_TEXT = 64 * 1024 * 1024
"""Most characters of scalar text a site or stack file may hold, YAML aliases expanded."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a site nests about six deep)."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest stack file read (narvik's is a few kilobytes)."""
LIMITS = f"allowed: at most {MAX_VALUES:,} values, {MAX_TEXT // 2**20} MiB of text, {MAX_DEPTH} levels deep"


class TooLarge(yaml.YAMLError):
    """A document that is, or through YAML aliases expands to, more than fjord reads; `path`: where the limit was
    crossed, as keys and list indices from the root."""

    def __init__(self, what: str, path: tuple[str | int, ...] = ()) -> None:
        self.what = what
        self.path = path
        super().__init__(what)

    def field(self, *head: str | int) -> str:
        """The path as a problem names a field (`region`, `clusters[2].name`), the list indices at its end dropped:
        the field whose value is too large."""
        path = list(self.path)
        while path and isinstance(path[-1], int):
            path.pop()
        return join_path(*head, *path)


Children = Callable[[Any], list[tuple[str | int, Any]]]


def _measure(root: Any, children: Children, text: Callable[[Any], int], expanded: str) -> None:
    """Raise TooLarge when `root`, every shared part counted as often as it is referred to (a YAML alias is the same
    node as its anchor), holds more than MAX_VALUES values, MAX_TEXT characters or MAX_DEPTH levels, or contains
    itself. Linear in the distinct parts: each one's expanded size is computed once, however often it is referred
    to; iterative, so deep input cannot exhaust Python's recursion limit here."""
    sizes: dict[int, tuple[int, int, int]] = {}
    busy: set[int] = set()
    parent: dict[int, tuple[int, str | int]] = {}

    def too_large(what: str, key: int) -> TooLarge:
        path: list[str | int] = []
        while key in parent:
            key, label = parent[key]
            path.append(label)
        return TooLarge(what, tuple(reversed(path)))

    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        parts = children(node)
        if not done:
            if key in busy:
                raise too_large("holds a value that contains itself (a YAML alias inside its own anchor)", key)
            busy.add(key)
            stack.append((node, True))
            for label, child in parts:
                if id(child) not in sizes:
                    parent.setdefault(id(child), (key, label))
                    stack.append((child, False))
            continue
        if any(id(c) not in sizes for _, c in parts):
            raise too_large("holds a value that contains itself (a YAML alias inside its own anchor)", key)
        values = 1 + sum(sizes[id(c)][0] for _, c in parts)
        chars = text(node) + sum(sizes[id(c)][1] for _, c in parts)
        depth = 1 + max((sizes[id(c)][2] for _, c in parts), default=0)
        busy.discard(key)
        if values > MAX_VALUES:
            raise too_large(f"holds more than {MAX_VALUES:,} values{expanded}", key)
        if chars > MAX_TEXT:
            raise too_large(f"holds more than {MAX_TEXT // 2**20} MiB of text{expanded}", key)
        if depth > MAX_DEPTH:
            raise too_large(f"nests mappings and lists more than {MAX_DEPTH} deep", key)
        sizes[key] = (values, chars, depth)


def _node_children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        return [(str(k.value) if isinstance(k, yaml.ScalarNode) else "?", n) for k, v in node.value for n in (k, v)]
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return []


def _node_text(node: yaml.Node) -> int:
    return len(node.value) if isinstance(node, yaml.ScalarNode) else 0


def _data_children(value: Any) -> list[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return [(str(k), x) for k, v in value.items() for x in (k, v)]
    if isinstance(value, list | tuple):
        return list(enumerate(value))
    return []


def _data_text(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def bounded(raw: Any) -> None:
    """Raise TooLarge when `raw` (a site as data: parsed from JSON under `pulumi up`, or built by a caller) holds more
    than MAX_VALUES values, MAX_TEXT characters of text or MAX_DEPTH levels, a shared value counted once per
    reference, as every later step (validation, serialisation) would walk it."""
    _measure(raw, _data_children, _data_text, "")


class UniqueKeyLoader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader (on libyaml where PyYAML has it, several times faster than the pure-Python one) that
    refuses a key given twice in one mapping, where YAML loaders silently keep the last value, and a document
    that YAML aliases blow up (a "billion laughs" file of a few lines) before building it (`_measure`)."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _measure(node, _node_children, _node_text, " once YAML aliases are expanded")
        return self.construct_document(node)

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


ALLOC_SUFFIX = ".alloc.yaml"
"""`Pulumi.<stack>.alloc.yaml` beside a stack file is its allocation record (fjord.sizing.alloc), not a stack."""


def list_stacks(directory: Path) -> list[str]:
    names = {
        p.name[len("Pulumi.") : -len(".yaml")]
        for p in directory.glob("Pulumi.*.yaml")
        if p.is_file() and not p.name.endswith(ALLOC_SUFFIX)
    }
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
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        problem = f"is {size:,} bytes; allowed: a stack file of at most {MAX_FILE_BYTES // 2**20} MiB"
        raise SiteError([Problem("", str(path), problem)], str(path))
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
    except TooLarge as exc:
        raise SiteError([Problem(exc.field(), str(path), f"{exc.what}; {LIMITS}")], str(path)) from None
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


def _at(raw: Any, path: tuple[str | int, ...]) -> Any:
    """The value at `path` (as TooLarge gives it: dict keys as text), up to the last key (the field's value)."""
    value = raw
    for label in path:
        if isinstance(value, dict):
            value = next((v for k, v in value.items() if str(k) == label), None)
        elif isinstance(label, int) and isinstance(value, list | tuple):
            return value
    return value


def allow_remove(cfg: StackConfig) -> tuple[str, ...]:
    """The clusters `fjord:allowRemove` lists (a list of names, or one comma-separated string)."""
    return parse_allow_remove(cfg.config.get(ALLOW_REMOVE_KEY), str(cfg.path or cfg.stack))


def parse_allow_remove(value: Any, source: str = "stack config") -> tuple[str, ...]:
    """`fjord:allowRemove` as a stack file holds it (a list) or as Pulumi hands it to the program (that list as
    JSON text, or a comma-separated string): the cluster names."""
    if value is None:
        return ()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # not JSON: a comma-separated string
            value = json.loads(value)
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        problem = Problem(ALLOW_REMOVE_KEY, value, "must list cluster names; allowed: a list such as [h200]")
        raise SiteError([problem], source)
    return tuple(v.strip() for v in items if v.strip())


def load_site(raw: Any, source: str = "") -> Site:
    """Validate a raw site description; raise SiteError naming every bad field, or return the Site.

    The models (and pydantic) are loaded here, on first use: reading stack files, listing stacks and the
    commands that only plan in a worker process need neither."""
    from pydantic import ValidationError

    from fjord.spec.models import Site

    if not isinstance(raw, dict):
        raise SiteError([Problem("", type(raw).__name__, "a site must be a mapping")], source)
    try:
        bounded(raw)
    except TooLarge as exc:
        raise SiteError([Problem(exc.field(), redact(_at(raw, exc.path)), f"{exc.what}; {LIMITS}")], source) from None
    try:
        return Site.model_validate(raw)
    except ValidationError as exc:
        raise SiteError(problems_from_validation(Site, exc), source) from None
