"""Mitogen's `free` strategy without its CPU pinning, its workers' caches warmed before they fork (see
fjord.adapters.ansible_strategy)."""

from __future__ import annotations

from ansible_mitogen.plugins.strategy.mitogen_free import StrategyModule as MitogenStrategy

from fjord.adapters.ansible_strategy import warmed, without_cpu_pinning

without_cpu_pinning()

StrategyModule = warmed(MitogenStrategy)

__all__ = ["StrategyModule"]
