"""Problems found in a site description, each naming the field path, the value and what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
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
        problems.append(Problem(base, item.get("input"), msg))
    return problems
