"""The run record: the one fold of a run's events that every view reads. Hand-built
event lists (no kernel, no model), then a real run's transcript folded back."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import pytest

from agentnb.chat import events as events_module
from agentnb.chat.approval import ApprovalRequest, CallbackApprover, Decision
from agentnb.chat.events import (
    EVENT_TYPES,
    AgentThinking,
    AnyEvent,
    ApprovalDecided,
    ApprovalRequested,
    DataReady,
    Event,
    ExecutionFinished,
    ExecutionOutput,
    ExecutionStarted,
    KernelReady,
    MessagePosted,
    ModelCalled,
    Notice,
    RunFinished,
    RunStarted,
    TokenDelta,
)
from agentnb.chat.messages import (
    Execution,
    Feedback,
    FinalReport,
    Proposal,
    Review,
    StepResult,
    subject,
)
from agentnb.chat.termination import StopKind, StopReason
from agentnb.chat.transcript import read_transcript
from agentnb.models.base import Usage
from agentnb.record import RunRecord

from .conftest import ChatRunner, step

# --- events, by hand -------------------------------------------------------------------


def started(**options: Any) -> RunStarted:
    return RunStarted(
        run_id="run-1",
        task="How many?",
        models={"analyst": "gpt-4o-mini", "critic": "local"},
        approve="each",
        **options,
    )


def proposed(number: int, code: str, why: str = "Count them.") -> MessagePosted:
    text = f"{why}\n\n```python\n{code}\n```"
    return MessagePosted(
        message=Proposal(sender="analyst", step=number, text=text, rationale=why, code=code)
    )


def reviewed(number: int | None, verdict: str = "approve", words: str = "Fine.") -> MessagePosted:
    return MessagePosted(
        message=Review(sender="critic", verdict=verdict, text=words, step=number)  # type: ignore[arg-type]
    )


def execution(code: str, status: str = "ok") -> Execution:
    return Execution(code=code, status=status, outputs=(), execution_count=1, duration=0.1)  # type: ignore[arg-type]


def decided(number: int, code: str, decision: Decision) -> list[Event]:
    request = ApprovalRequest(kind="step", step=number, text="Count them.", code=code)
    return [ApprovalRequested(request=request), ApprovalDecided(request=request, decision=decision)]


def ran(number: int, code: str, status: str = "ok", *, edited: bool = False) -> list[Event]:
    done = execution(code, status)
    return [
        ExecutionStarted(step=number, code=code),
        ExecutionFinished(step=number, execution=done),
        MessagePosted(
            message=StepResult(sender="executor", step=number, execution=done, edited=edited)
        ),
    ]


def called(agent: str, tokens: tuple[int, int], cost: float | None) -> ModelCalled:
    return ModelCalled(
        agent=agent,
        model="m",
        text="…",
        usage=Usage(tokens[0], tokens[1], 1),
        cost=cost,
        duration=0.5,
    )


def finished(kind: StopKind = "approved", report: str | None = "42.", **usage: Any) -> RunFinished:
    return RunFinished(reason=StopReason(kind, f"ended: {kind}"), final_report=report, **usage)


def one_of_each() -> list[Event]:
    """An instance of every event class, in a plausible order."""
    request = ApprovalRequest(kind="step", step=1, text="Count them.", code="len(x)")
    return [
        started(data=("sales",)),
        KernelReady(isolation="sandboxed (bubblewrap)", sandboxed=True),
        ExecutionStarted(step=0, code="sales = load()"),
        ExecutionOutput(step=0, outputs=(), elapsed=0.1),
        ExecutionFinished(step=0, execution=execution("sales = load()")),
        DataReady(names=("sales",), summary="### sales: DataFrame, 3 rows"),
        AgentThinking(agent="analyst", phase="propose", step=1),
        TokenDelta(agent="analyst", text="Count"),
        called("analyst", (100, 10), 0.001),
        proposed(1, "len(x)"),
        ApprovalRequested(request=request),
        ApprovalDecided(request=request, decision=Decision.approve()),
        *ran(1, "len(x)"),
        Notice(level="info", text="the model server is slow"),
        finished(),
    ]


# --- the union -------------------------------------------------------------------------


def test_the_union_holds_every_event_class_and_the_record_handles_each() -> None:
    defined = {
        cls
        for _, cls in inspect.getmembers(events_module, inspect.isclass)
        if issubclass(cls, Event) and cls is not Event and cls.__module__ == events_module.__name__
    }
    assert set(typing.get_args(AnyEvent)) == defined
    assert set(EVENT_TYPES) == defined
    sample = one_of_each()
    assert {type(e) for e in sample} == defined
    record = RunRecord()
    for event in sample:
        record.apply(event)  # none is refused
    assert record.outcome == "approved"


def test_something_that_is_not_an_event_is_refused() -> None:
    with pytest.raises(TypeError, match="not an event"):
        RunRecord().apply(Event())
    with pytest.raises(TypeError, match="not an event"):
        RunRecord().apply("RunStarted")  # type: ignore[arg-type]


# --- steps -----------------------------------------------------------------------------


def test_a_step_from_proposal_through_a_revision_to_its_run() -> None:
    record = RunRecord.fold(
        [
            started(),
            proposed(1, "len(x)", "First try."),
            reviewed(1, "revise", "Drop the missing values."),
            proposed(1, "len(x.dropna())", "Without the gaps."),
            reviewed(1, "approve", "Right."),
        ]
    )
    (first,) = record.steps.values()
    assert first.number == 1
    assert [p.code for p in first.proposals] == ["len(x)", "len(x.dropna())"]
    assert first.why == "Without the gaps."
    assert first.author == "analyst"
    assert [r.text for r in first.reviews] == ["Right."]  # of the latest version only
    assert first.status == "proposed"
    assert record.ran == []

    for event in decided(1, "len(x.dropna())", Decision.approve()):
        record.apply(event)
        if isinstance(event, ApprovalRequested):
            assert first.status == "awaiting approval"
            assert record.waiting == event.request
            assert record.phase == "awaiting your approval"
    assert (first.status, record.waiting) == ("approved", None)
    assert first.decisions == [Decision.approve()]

    record.apply(ExecutionStarted(step=1, code="len(x.dropna())"))
    assert (first.status, record.phase) == ("running", "running step 1")
    assert record.ran == [first]
    for event in ran(1, "len(x.dropna())", "error")[1:]:
        record.apply(event)
    assert first.status == "error"
    assert first.execution is not None
    assert first.execution.status == "error"


def test_a_rejected_step_and_a_refused_one_are_sent_back() -> None:
    record = RunRecord.fold(
        [
            started(),
            proposed(1, "plot()"),
            *decided(1, "plot()", Decision.reject("No plots.")),
            MessagePosted(message=Feedback(sender="user", text="No plots.", step=1)),
        ]
    )
    assert record.steps[1].status == "sent back"
    assert [f.text for f in record.steps[1].feedback] == ["No plots."]
    record.apply(proposed(1, "plot()"))
    record.apply(MessagePosted(message=Feedback(sender="agentnb", text="Same again.", step=1)))
    assert record.steps[1].status == "sent back"
    assert [f.sender for f in record.feedback] == ["user", "agentnb"]


def test_edited_is_decided_once_from_the_code_that_ran() -> None:
    events = [
        started(),
        proposed(1, "print('proposed')"),
        *decided(1, "print('proposed')", Decision.edit("print('mine')")),
        ExecutionStarted(step=1, code="print('mine')"),
    ]
    record = RunRecord.fold(events)
    assert record.steps[1].edited  # already while it runs
    assert record.steps[1].code == "print('mine')"
    assert record.provenance(1) == {
        "run_id": "run-1",
        "step": 1,
        "author": "analyst",
        "edited": True,
    }
    plain = RunRecord.fold([started(), proposed(1, "x = 1"), *ran(1, "x = 1")])
    assert not plain.steps[1].edited
    assert plain.provenance(1)["edited"] is False
    # the executor's report is the authority once it came
    told = RunRecord.fold([started(), *ran(2, "y = 2", edited=True)])
    assert told.steps[2].edited
    assert told.provenance(2)["author"] == "unknown"  # no proposal seen


def test_provenance_of_the_data_cells() -> None:
    record = RunRecord.fold(one_of_each())
    assert record.provenance(0) == {
        "run_id": "run-1",
        "step": 0,
        "author": "agentnb",
        "edited": False,
    }
    assert record.provenance(0, author="user")["author"] == "user"
    assert record.setup_code == "sales = load()"
    assert record.setup is not None
    assert record.data_names == ("sales",)
    assert record.kernel is not None
    assert record.kernel.sandboxed


def test_the_final_report_its_reviews_and_its_acceptance() -> None:
    record = RunRecord.fold(
        [
            started(),
            MessagePosted(message=FinalReport(sender="analyst", text="About 40.")),
            reviewed(None, "revise", "Give the number."),
            MessagePosted(message=FinalReport(sender="analyst", text="42.")),
            reviewed(None, "approve"),
        ]
    )
    report = record.report
    assert report is not None
    assert [v.text for v in report.versions] == ["About 40.", "42."]
    assert [r.verdict for r in report.reviews] == ["approve"]
    assert record.final_report == "42."  # the last proposed, while the run goes on
    request = ApprovalRequest(kind="final", step=None, text="42.")
    record.apply(ApprovalRequested(request=request))
    assert report.status == "awaiting approval"
    record.apply(ApprovalDecided(request=request, decision=Decision.edit("Exactly 42.")))
    assert report.status == "accepted"
    record.apply(finished(report="Exactly 42."))
    assert record.final_report == "Exactly 42."


# --- usage and cost --------------------------------------------------------------------


def test_usage_and_cost_per_agent_as_calls_come_then_settled_by_the_end() -> None:
    record = RunRecord.fold(
        [
            started(),
            called("analyst", (100, 20), 0.001),
            called("analyst", (200, 30), 0.002),
            called("critic", (50, 5), None),  # a model without a price
        ]
    )
    assert record.usage == {"analyst": Usage(300, 50, 2), "critic": Usage(50, 5, 1)}
    assert record.costs["analyst"] == pytest.approx(0.003)
    assert record.costs["critic"] is None
    assert record.cost is None  # not a guess
    assert record.tokens == 405
    record.apply(
        finished(
            usage={"analyst": Usage(1000, 100, 3), "critic": Usage(10, 1, 1)},
            costs={"analyst": 0.5, "critic": None},
            cost=None,
        )
    )
    assert record.usage == {"analyst": Usage(1000, 100, 3), "critic": Usage(10, 1, 1)}
    assert record.costs == {"analyst": 0.5, "critic": None}
    priced = RunRecord.fold([started(), called("analyst", (10, 1), 0.25)])
    assert priced.cost == 0.25
    assert RunRecord().cost == 0.0


# --- how a run ends --------------------------------------------------------------------

FAILED = {"model_error", "kernel_error", "error", "protocol"}


@pytest.mark.parametrize("kind", typing.get_args(StopKind))
def test_the_outcome_of_every_stop_kind(kind: StopKind) -> None:
    record = RunRecord.fold([started(), finished(kind)])
    expected = "approved" if kind == "approved" else "failed" if kind in FAILED else "stopped"
    assert record.outcome == StopReason(kind, "").outcome == expected
    assert record.phase == {"approved": "done", "stopped": "stopped", "failed": "failed"}[expected]
    assert record.ended


def test_a_loop_guard_stops_and_does_not_fail() -> None:
    assert StopReason("loop_guard", "3 steps in a row failed").outcome == "stopped"


def test_a_run_that_ended_without_its_last_event() -> None:
    record = RunRecord.fold([started(), AgentThinking(agent="analyst", phase="propose")])
    assert (record.outcome, record.phase) == (None, "analyst thinking")
    record.abandon("agentnb failed: RuntimeError: boom")
    assert (record.outcome, record.phase) == ("failed", "failed")
    assert record.abandoned == "agentnb failed: RuntimeError: boom"
    done = RunRecord.fold([started(), finished()])
    done.abandon("too late")
    assert (done.outcome, done.abandoned) == ("approved", None)


def test_the_phase_in_words() -> None:
    record = RunRecord()
    assert record.phase == "starting"
    words = []
    for event in [
        started(),
        ExecutionStarted(step=0, code="load"),
        AgentThinking(agent="analyst", phase="propose", step=1),
        AgentThinking(agent="critic", phase="review_step", step=1),
        AgentThinking(agent="selector", phase="select", step=1),
        AgentThinking(agent="critic", phase="review_final"),
    ]:
        record.apply(event)
        words.append(record.phase)
    assert words == [
        "starting",
        "loading the data",
        "analyst thinking",
        "critic reviewing step 1",
        "choosing who speaks",
        "critic reviewing the report",
    ]


def test_a_second_run_in_the_same_events_starts_the_record_over() -> None:
    first = [started(), proposed(1, "a = 1"), *ran(1, "a = 1"), finished()]
    second = [
        dataclasses.replace(started(), run_id="run-2", task="Again?"),
        called("analyst", (5, 5), 0.0),
    ]
    record = RunRecord.fold(first + second)
    assert (record.run_id, record.task, record.steps, record.finished) == (
        "run-2",
        "Again?",
        {},
        None,
    )
    assert record.usage == {"analyst": Usage(5, 5, 1)}


def test_the_words_for_a_step_and_the_final_report() -> None:
    assert subject(3) == "step 3"
    assert subject(None) == "the final report"
    assert subject(None, short=True) == "the report"


# --- a real run's transcript -------------------------------------------------------------


async def test_a_real_transcript_folds_into_what_the_run_returned(chat: ChatRunner) -> None:
    def decide(request: ApprovalRequest) -> Decision:
        if request.kind == "step" and request.step == 2:
            return Decision.edit("print('edited', rec_x * 2)")
        return Decision.approve()

    run = await chat(
        {
            "analyst": [
                step("rec_x = 21\nprint(rec_x)", "Set it."),
                step("print(rec_x * 3)", "Triple it."),
                "It is 42.",
            ],
            "critic": ["APPROVE", "APPROVE", "APPROVE"],
        },
        approve="each",
        approver=CallbackApprover(decide),
    )
    result = run.result
    assert result.ok, result.stop_reason
    record = RunRecord.fold(read_transcript(run.transcript))
    assert record.run_id == result.run_id
    assert [(s.number, s.code, s.status, s.edited) for s in record.ran] == [
        (s.number, s.code, s.status, s.edited) for s in result.steps
    ]
    assert [s.edited for s in record.ran] == [False, True]
    assert record.steps[2].proposed_code == "print(rec_x * 3)"
    assert record.usage == result.usage
    assert record.costs == result.costs
    assert record.cost == result.cost
    assert record.outcome == "approved"
    assert record.final_report == result.final_report
    assert record.models == run.of(RunStarted)[0].models
    live = RunRecord()
    for event in run.events:
        live.apply(event)
    assert [s.status for s in live.ran] == [s.status for s in record.ran]
