"""Stop conditions compose, and each says why in words a user can act on."""

from __future__ import annotations

from agentnb.chat.messages import FinalReport
from agentnb.chat.termination import (
    CostBudget,
    MaxTurns,
    RunStats,
    TextMention,
    TimeLimit,
    TokenBudget,
)


def stats(**overrides: object) -> RunStats:
    base: dict[str, object] = {"turns": 0, "tokens": 0, "cost": 0.0, "elapsed": 0.0}
    return RunStats(**{**base, **overrides})  # type: ignore[arg-type]


def test_each_condition_trips_at_its_limit() -> None:
    assert MaxTurns(3).check(stats(turns=2)) is None
    assert MaxTurns(3).check(stats(turns=3)).kind == "max_turns"  # type: ignore[union-attr]
    assert TokenBudget(100).check(stats(tokens=99)) is None
    assert TokenBudget(100).check(stats(tokens=60, pending_tokens=50)).kind == "budget"  # type: ignore[union-attr]
    assert CostBudget(0.5).check(stats(cost=None)) is None  # unknown prices never stop a run
    assert CostBudget(0.5).check(stats(cost=0.5)).kind == "budget"  # type: ignore[union-attr]
    assert TimeLimit(10).check(stats(elapsed=10.5)).kind == "time_limit"  # type: ignore[union-attr]


def test_or_stops_at_the_first_and_and_needs_all() -> None:
    either = MaxTurns(5) | TokenBudget(100)
    both = MaxTurns(5) & TokenBudget(100)
    over_tokens = stats(turns=1, tokens=200)
    reason = either.check(over_tokens)
    assert reason is not None
    assert reason.kind == "budget"
    assert both.check(over_tokens) is None
    joined = both.check(stats(turns=5, tokens=200))
    assert joined is not None
    assert "5 turns" in joined.message
    assert "token budget" in joined.message


def test_the_budget_message_names_the_flag_and_the_next_call() -> None:
    reason = TokenBudget(1_000).check(stats(tokens=900, pending_tokens=300))
    assert reason is not None
    assert "900 tokens used and the next call needs about 300 more" in reason.message
    assert "--budget-tokens" in reason.message


def test_text_mention_matches_words_from_chosen_senders() -> None:
    cond = TextMention("TERMINATE", sources=("critic",))
    said = FinalReport(sender="critic", text="All done. TERMINATE")
    assert cond.check(stats(last=said)) is not None
    assert cond.check(stats(last=FinalReport(sender="analyst", text="TERMINATE"))) is None
    assert cond.check(stats(last=FinalReport(sender="critic", text="TERMINATED"))) is None
