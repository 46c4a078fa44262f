"""Events survive the transcript: every kind round-trips through JSON."""

from __future__ import annotations

import json

import pytest

from agentnb.chat.approval import ApprovalRequest, Decision
from agentnb.chat.events import (
    AgentThinking,
    ApprovalDecided,
    ApprovalRequested,
    DataReady,
    Event,
    ExecutionFinished,
    MessagePosted,
    ModelCalled,
    Notice,
    RunFinished,
    RunStarted,
    TokenDelta,
    from_record,
    to_record,
)
from agentnb.chat.messages import Execution, Feedback, Proposal, Review, StepResult
from agentnb.chat.termination import StopReason
from agentnb.models.base import Usage

EXECUTION = Execution(
    code="df.plot()",
    status="ok",
    outputs=(
        {
            "output_type": "display_data",
            "data": {"image/png": "iVBOR", "text/plain": "<Fig>"},
            "metadata": {},
        },
        # user data may hold a "type" key: it must stay a plain dict
        {
            "output_type": "execute_result",
            "data": {"application/json": {"type": "Usage"}},
            "metadata": {},
            "execution_count": 3,
        },
    ),
    execution_count=3,
    duration=0.25,
)

EVENTS: list[Event] = [
    RunStarted(task="t", models={"analyst": "scripted"}, approve="each", data=("sales",)),
    DataReady(names=("sales",), summary="### sales"),
    AgentThinking(agent="analyst", phase="propose", step=1),
    TokenDelta(agent="analyst", text="Lo"),
    ModelCalled(
        agent="critic",
        model="m",
        text="APPROVE",
        usage=Usage(3, 1, 1, True),
        cost=None,
        duration=0.1,
    ),
    MessagePosted(message=Proposal(sender="analyst", step=1, text="x", rationale="", code="1")),
    MessagePosted(message=Review(sender="critic", verdict="revise", text="no", step=None)),
    MessagePosted(message=Feedback(sender="user", text="log scale", step=2)),
    MessagePosted(message=StepResult(sender="executor", step=1, execution=EXECUTION)),
    ApprovalRequested(
        request=ApprovalRequest(kind="step", step=1, text="t", code="c", reviews=("critic: ok",))
    ),
    ApprovalDecided(
        request=ApprovalRequest(kind="final", step=None, text="r"), decision=Decision.edit("x = 2")
    ),
    ExecutionFinished(step=1, execution=EXECUTION),
    Notice(level="warning", text="retrying", agent="analyst"),
    RunFinished(
        reason=StopReason("budget", "b"),
        final_report=None,
        usage={"analyst": Usage(1, 2, 1)},
        cost=0.5,
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_round_trip_through_json(event: Event) -> None:
    assert from_record(json.loads(json.dumps(to_record(event)))) == event
