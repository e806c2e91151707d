"""Problems found in a site description, each naming the field path, the value and what is allowed."""

from __future__ import annotations

import difflib
import re
import reprlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic is loaded by the models; a command that only reports problems needs none of it
    from pydantic import BaseModel, ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    """Dotted field path from the site root, list items as [i]: `clusters[1].gpus`."""
    value: Any
    message: str
    """What is wrong and what is allowed."""

    def __str__(self) -> str:
        where = self.path or "site"
        return f"{where}: {self.message} (got {_show(self.value)})"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 6


def _show(value: Any) -> str:
    """The value as a problem line shows it: bounded however large or deep the value is (a YAML alias can make
    a small file hold a huge value), at most 80 characters."""
    if value in (SECRET_SHOWN, HIDDEN):
        return str(value)
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


SECRET_SHOWN = "[secret]"
HIDDEN = "[not shown]"
CREDENTIAL_KEY = re.compile(r"pas+w|pwd|secret|token|cred|private|api.?key|access.?key", re.IGNORECASE)
"""A key whose name says it holds a credential: its value is never shown, whatever else is wrong with it."""


def redact(value: Any) -> Any:
    """`value` with every Pulumi secret (`{secure: <ciphertext>}`) replaced by SECRET_SHOWN and the value of every
    key named like a credential by HIDDEN, so that no problem line shows either. It looks at the first 1,000
    items at most (YAML aliases can make a small file hold billions); what lies beyond is cut to '...'."""
    budget = [1000]

    def walk(v: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return "..."
        if isinstance(v, dict):
            if set(v) == {"secure"}:
                return SECRET_SHOWN
            return {k: HIDDEN if isinstance(k, str) and CREDENTIAL_KEY.search(k) else walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v[: max(budget[0], 0) + 1]]
        return v

    return walk(value)


class SiteError(ValueError):
    """A site description that cannot be built. Raised before any resource is registered."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class SpecProblems(ValueError):
    """Raised inside model validators; carries paths relative to the model that raised it."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def join_path(*parts: str | int) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out += f".{part}" if out and not part.startswith("[") else part
    return out


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the last element of `loc` (for listing allowed keys)."""
    from pydantic import BaseModel

    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def problems_from_validation(model: type[BaseModel], err: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into Problems with full field paths and the allowed values."""
    problems: list[Problem] = []
    items = err.errors()
    # pydantic counts a list's length over its valid items: a list whose only item is wrong is also "too short".
    lists_with_bad_items = {i["loc"][:k] for i in items for k, part in enumerate(i["loc"]) if isinstance(part, int)}
    for item in items:
        if item["type"] == "too_short" and item["loc"] in lists_with_bad_items:
            continue
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        base = join_path(*loc)
        ctx = item.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, SpecProblems):
            for p in inner.problems:
                problems.append(Problem(join_path(base, p.path) if base else p.path, p.value, p.message))
            continue
        if item["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            allowed = sorted(owner.model_fields) if owner else []
            key = str(loc[-1])
            hint = difflib.get_close_matches(key, allowed, n=1)
            msg = f"unknown key; did you mean {hint[0]!r}?" if hint else "unknown key;"
            msg += f" allowed keys: {', '.join(allowed)}"
            value = HIDDEN if CREDENTIAL_KEY.search(key) else redact(item["input"])
            problems.append(Problem(base, value, msg))
            continue
        if item["type"] == "missing":
            problems.append(Problem(base, None, _missing(model, loc)))
            continue
        msg = item["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(Problem(base, redact(item.get("input")), _with_allowed(item["type"], msg, ctx)))
    return _merge_union_members(problems)


_UNION_MEMBER = re.compile(r"\.(str|int|float|bool|none|list\[.*\]|dict\[.*\]|tuple\[.*\])$")
"""The last element pydantic adds to a path for each member of a union it tried (`bmc.bios.Sriov.int`)."""


def _merge_union_members(problems: list[Problem]) -> list[Problem]:
    """One problem per field for a value that matched no member of a union: pydantic reports each member
    under a path of its own that names no field of the site (`bmc.bios.Sriov.str`, `.int`, `.bool`)."""
    merged: dict[str, Problem] = {}
    out: list[Problem] = []
    for p in problems:
        tag = _UNION_MEMBER.search(p.path)
        if tag is None:
            out.append(p)
            continue
        path = p.path[: tag.start()]
        allowed = p.message.rpartition("allowed: ")[2] or tag.group(1)
        first = merged.get(path)
        if first is None:
            merged[path] = Problem(path, p.value, f"is none of the allowed kinds of value; allowed: {allowed}")
            out.append(merged[path])
        else:
            joined = Problem(path, first.value, f"{first.message}, or {allowed}")
            out[out.index(first)] = merged[path] = joined
    return out


def _missing(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """The message for a required key that is not there: what the key is for, and what kind of value it takes."""
    owner = _model_at(model, loc)
    field = owner.model_fields.get(str(loc[-1])) if owner else None
    if field is None:
        return "is required; allowed: a value for this key"
    what = f" ({field.description.rstrip('.')})" if field.description else ""
    return f"is required{what}; allowed: {_kind(field.annotation)}"


def _kind(annotation: Any) -> str:
    """A field's type, as a site's author reads it."""
    from pydantic import BaseModel

    origin = getattr(annotation, "__origin__", None)
    args = getattr(annotation, "__args__", ())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping of {', '.join(annotation.model_fields)}"
    if annotation is str:
        return "a string"
    if annotation is int:
        return "a whole number"
    if annotation is float:
        return "a number"
    if annotation is bool:
        return "true or false"
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    if str(origin).endswith("Literal"):
        return ", ".join(repr(a) for a in args)
    if str(origin).endswith("Annotated") and args:
        return _kind(args[0])
    return "a value of the documented kind"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_ALLOWED: dict[str, Callable[[dict[str, Any]], str]] = {
    "greater_than": lambda c: f"> {c['gt']}",
    "greater_than_equal": lambda c: f">= {c['ge']}",
    "less_than": lambda c: f"< {c['lt']}",
    "less_than_equal": lambda c: f"<= {c['le']}",
    "multiple_of": lambda c: f"a multiple of {c['multiple_of']}",
    "finite_number": lambda c: "a finite number",
    "literal_error": lambda c: f"{c['expected']}",
    "enum": lambda c: f"{c['expected']}",
    "string_too_short": lambda c: f"at least {_plural(c['min_length'], 'character')}",
    "string_too_long": lambda c: f"at most {_plural(c['max_length'], 'character')}",
    "too_short": lambda c: f"at least {_plural(c['min_length'], 'item')}",
    "too_long": lambda c: f"at most {_plural(c['max_length'], 'item')}",
    "string_pattern_mismatch": lambda c: f"a string matching {c['pattern']}",
    "ip_v4_network": lambda c: "an IPv4 network in CIDR form, no bits set past the prefix, such as 10.16.0.0/14",
    "ip_v4_address": lambda c: "an IPv4 address such as 10.16.0.1",
    "int_type": lambda c: "a whole number",
    "int_parsing": lambda c: "a whole number",
    "int_from_float": lambda c: "a whole number",
    "float_type": lambda c: "a number",
    "float_parsing": lambda c: "a number",
    "bool_type": lambda c: "true or false",
    "bool_parsing": lambda c: "true or false",
    "string_type": lambda c: "a string",
    "dict_type": lambda c: "a mapping of keys to values",
    "model_type": lambda c: "a mapping of keys to values",
    "model_attributes_type": lambda c: "a mapping of keys to values",
    "list_type": lambda c: "a list",
    "tuple_type": lambda c: "a list",
    "url_parsing": lambda c: "a URL such as https://host:port/path",
    "url_scheme": lambda c: f"a URL with scheme {c.get('expected_schemes', 'http or https')}",
}
"""What each pydantic error type allows, from its context, for messages that do not say it already."""


def _with_allowed(kind: str, msg: str, ctx: dict[str, Any]) -> str:
    """pydantic's message with what is allowed added, as fjord's own messages end: `...; allowed: ...`."""
    allowed = _ALLOWED.get(kind)
    if allowed is None or "allowed" in msg:
        return msg
    if kind in ("literal_error", "enum"):  # pydantic's message is the list itself: say it once
        msg = "is not one of the allowed values"
    try:
        return f"{msg}; allowed: {allowed(ctx)}"
    except KeyError:  # a context without the expected entry: pydantic's message alone
        return msg
