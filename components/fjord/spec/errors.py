"""Problems found in a site description, each naming the field path, the value and what is allowed."""

from __future__ import annotations

import difflib
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


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    for item in err.errors():
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
            msg = "unknown key"
            if hint:
                msg += f"; did you mean {hint[0]!r}?"
            msg += f" allowed keys: {', '.join(allowed)}"
            problems.append(Problem(base, item["input"], msg))
            continue
        msg = item["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(Problem(base, item.get("input"), _with_allowed(item["type"], msg, ctx)))
    return problems


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
