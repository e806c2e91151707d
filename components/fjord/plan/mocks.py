"""Pulumi mock runtime for the offline plan: records every registration, catches duplicate URNs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True, slots=True)
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    protect: bool = False
    """Registered with Pulumi's `protect`: the engine refuses to delete it."""
    dependencies: tuple[str, ...] = ()
    """The URNs it waits for (`depends_on` and the resources whose outputs it takes as inputs)."""


class PlanMocks(pulumi.runtime.Mocks):
    """Resources echo their inputs as state; no provider is called (none can be installed offline)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(MockMonitor):
    """The stock mock monitor, plus a record of every registration.

    The stock monitor silently overwrites a resource registered twice under one URN (the real engine
    rejects it), so duplicates are recorded here and reported by the plan.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.duplicates: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        with self._lock:
            if urn in self._seen:
                self.duplicates.append(urn)
            self._seen.add(urn)
            self.registrations.append(
                Registration(
                    urn,
                    request.type,
                    request.name,
                    request.parent,
                    request.custom,
                    bool(request.protect),
                    tuple(request.dependencies),
                )
            )
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]

    def reset(self) -> None:
        """Forget what was recorded (the mock root stack outlives a test; its record should not)."""
        with self._lock:
            self.registrations.clear()
            self.duplicates.clear()
            self._seen.clear()
