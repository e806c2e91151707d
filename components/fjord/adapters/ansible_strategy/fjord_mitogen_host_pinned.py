"""Mitogen's `host_pinned` strategy without its CPU pinning (see fjord.adapters.ansible_strategy)."""

from __future__ import annotations

from ansible_mitogen.plugins.strategy.mitogen_host_pinned import StrategyModule

from fjord.adapters.ansible_strategy import without_cpu_pinning

without_cpu_pinning()

__all__ = ["StrategyModule"]
