"""Mitogen's `host_pinned` strategy without its CPU pinning, its workers' caches warmed before they fork (see
fjord.adapters.ansible_strategy)."""

from __future__ import annotations

from typing import Any

from ansible_mitogen.plugins.strategy.mitogen_host_pinned import StrategyModule as MitogenStrategy

from fjord.adapters.ansible_strategy import warm_worker_caches, without_cpu_pinning

without_cpu_pinning()


class StrategyModule(MitogenStrategy):  # type: ignore[misc]
    def run(self, *args: Any, **kwargs: Any) -> Any:
        warm_worker_caches()
        return super().run(*args, **kwargs)


__all__ = ["StrategyModule"]
