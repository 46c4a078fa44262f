"""Tokens and dollars per agent: every model call is counted, selector calls too.

Prices are dollars per million tokens, input and output. The built-in table holds
a few OpenAI list prices (as published in 2025; check them); pass your own table
(``prices={"my-model": (0.2, 0.6)}``) or point ``AGENTNB_PRICES`` at a JSON file
of the same shape. A model with no price shows tokens and no cost, never a guess.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..models.base import Usage

__all__ = ["DEFAULT_PRICES", "Ledger", "PriceTable"]

DEFAULT_PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "scripted": (0.0, 0.0),
}


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @classmethod
    def load(cls, extra: Mapping[str, tuple[float, float]] | None = None) -> PriceTable:
        """The built-in table, then ``AGENTNB_PRICES`` (a JSON file), then ``extra``."""
        prices = dict(DEFAULT_PRICES)
        path = os.environ.get("AGENTNB_PRICES")
        if path:
            try:
                loaded = json.loads(Path(path).read_text("utf-8"))
                prices.update({str(k): (float(v[0]), float(v[1])) for k, v in loaded.items()})
            except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
                raise ConfigError(
                    f"AGENTNB_PRICES={path}: expected a JSON object of "
                    f'"model": [input_per_million, output_per_million] ({exc})'
                ) from exc
        if extra:
            prices.update({k: (float(v[0]), float(v[1])) for k, v in extra.items()})
        return cls(prices)

    def price(self, model: str) -> tuple[float, float] | None:
        """The price of ``model``: an exact entry, else the longest prefix
        (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``)."""
        name = model.split("/")[-1].lower()
        if name in self.prices:
            return self.prices[name]
        best = max((k for k in self.prices if name.startswith(k)), key=len, default=None)
        return self.prices[best] if best else None

    def cost(self, model: str, usage: Usage) -> float | None:
        if model.startswith("scripted") or usage.cached == usage.calls > 0:
            return 0.0
        price = self.price(model)
        if price is None:
            return None
        return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1e6


@dataclass
class Ledger:
    """Usage and cost per agent, summed as calls finish."""

    usage: dict[str, Usage] = field(default_factory=dict)
    costs: dict[str, float | None] = field(default_factory=dict)

    def add(self, agent: str, usage: Usage, cost: float | None) -> None:
        self.usage[agent] = self.usage.get(agent, Usage()) + usage
        known = self.costs.get(agent, 0.0)
        self.costs[agent] = None if known is None or cost is None else known + cost

    @property
    def total(self) -> Usage:
        total = Usage()
        for usage in self.usage.values():
            total = total + usage
        return total

    @property
    def cost(self) -> float | None:
        """Dollars over all agents; None when any agent's model has no price."""
        if any(c is None for c in self.costs.values()):
            return None
        return sum(c for c in self.costs.values() if c is not None)
