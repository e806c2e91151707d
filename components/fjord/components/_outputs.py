"""Outputs of plain data."""

from __future__ import annotations

from typing import TypeVar

import pulumi

T = TypeVar("T")


async def _ready(value: T) -> T:
    return value


def plain(value: T) -> pulumi.Output[T]:
    """A known Output holding plain data as it is.

    `Output.from_input`, and an apply that returns plain data, lift every nested list item and dict value
    into an Output of its own: milliseconds per inventory host. An apply that returns an awaitable
    carries the value untouched.
    """
    return pulumi.Output.from_input(0).apply(lambda _: _ready(value))
