"""Tokens and dollars: prices by model name, unknown prices shown as unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentnb.chat.usage import Ledger, PriceTable
from agentnb.errors import ConfigError
from agentnb.models.base import Usage


def test_a_dated_model_name_is_priced_by_its_family() -> None:
    table = PriceTable.load()
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("llama3.1:8b") is None


def test_cost_is_none_when_the_price_is_unknown_and_zero_for_the_cache() -> None:
    table = PriceTable({"m": (1.0, 2.0)})
    assert table.cost("m", Usage(1_000_000, 500_000, 1)) == pytest.approx(2.0)
    assert table.cost("other", Usage(10, 10, 1)) is None
    assert table.cost("m", Usage(10, 10, 1, cached=1)) == 0.0


def test_prices_from_a_file_and_from_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"local-llm": [0.0, 0.0], "gpt-4o": [1, 1]}))
    monkeypatch.setenv("AGENTNB_PRICES", str(prices))
    table = PriceTable.load({"gpt-4o": (3.0, 4.0)})
    assert table.price("local-llm") == (0.0, 0.0)
    assert table.price("gpt-4o") == (3.0, 4.0)
    prices.write_text("{not json")
    with pytest.raises(ConfigError, match="AGENTNB_PRICES"):
        PriceTable.load()


def test_the_ledger_sums_per_agent_and_knows_when_the_total_is_unknown() -> None:
    ledger = Ledger()
    ledger.add("analyst", Usage(100, 20, 1), 0.01)
    ledger.add("analyst", Usage(50, 10, 1, estimated=True), 0.02)
    ledger.add("critic", Usage(30, 5, 1), 0.005)
    assert ledger.usage["analyst"] == Usage(150, 30, 2, estimated=True)
    assert ledger.total.total_tokens == 215
    assert ledger.cost == pytest.approx(0.035)
    ledger.add("selector", Usage(5, 1, 1), None)
    assert ledger.cost is None
