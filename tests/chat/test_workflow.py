"""The default workflow: propose, review, approve, run, report; approvals of each kind."""

from __future__ import annotations

from agentnb.chat.approval import ApprovalRequest, CallbackApprover, Decision
from agentnb.chat.events import (
    ApprovalRequested,
    ExecutionFinished,
    MessagePosted,
    RunFinished,
    TokenDelta,
)
from agentnb.chat.messages import Feedback, FinalReport, Proposal, Review

from .conftest import ChatRunner, step


async def test_steps_are_reviewed_before_they_run_and_the_report_after(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [
                step("wf_a = 6 * 7\nprint(wf_a)"),
                step("print(wf_a + 1)"),
                "The answer is 42.",
            ],
            "critic": ["APPROVE", "APPROVE", "APPROVE, it matches the output."],
        }
    )
    assert run.result.ok, run.result.stop_reason
    assert run.speakers == [
        "analyst",
        "critic",
        "run",
        "analyst",
        "critic",
        "run",
        "analyst",
        "critic",
    ]
    assert [s.execution.stdout for s in run.result.steps] == ["42\n", "43\n"]
    assert run.result.final_report == "The answer is 42."
    assert run.result.stop_reason.kind == "approved"
    # the analyst saw the first step's output before proposing the second
    assert "42" in run.prompts("analyst")[1]


async def test_revise_sends_the_step_back_before_it_runs(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("print('wrong column')"), step("print('right column')"), "Done."],
            "critic": ["REVISE: use the unit_price column.", "APPROVE", "APPROVE"],
        }
    )
    assert run.result.ok
    assert run.speakers == ["analyst", "critic", "analyst", "critic", "run", "analyst", "critic"]
    assert [s.code for s in run.result.steps] == ["print('right column')"]
    revising = run.prompts("analyst")[1]
    assert "use the unit_price column" in revising
    assert "print('wrong column')" in revising  # its own proposal, to revise


async def test_revise_of_the_final_report_sends_the_analyst_back_to_work(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": ["It is 1.", step("print(1 + 1)"), "It is 2."],
            "critic": ["REVISE: you never computed it.", "APPROVE", "APPROVE"],
        }
    )
    assert run.result.ok
    assert run.result.final_report == "It is 2."
    assert [m.message.verdict for m in run.of(MessagePosted) if isinstance(m.message, Review)] == [
        "revise",
        "approve",
        "approve",
    ]


async def test_tokens_stream_as_events(chat: ChatRunner) -> None:
    run = await chat(
        {"analyst": ["A short final answer with several words."], "critic": ["APPROVE"]}
    )
    deltas = [e.text for e in run.of(TokenDelta) if e.agent == "analyst"]
    assert len(deltas) > 3
    assert "".join(deltas) == "A short final answer with several words."


def _approver(*decisions: Decision) -> tuple[CallbackApprover, list[ApprovalRequest]]:
    queue = list(decisions)
    seen: list[ApprovalRequest] = []

    def decide(request: ApprovalRequest) -> Decision:
        seen.append(request)
        return queue.pop(0)

    return CallbackApprover(decide), seen


async def test_approve_each_asks_before_every_step_and_the_report(chat: ChatRunner) -> None:
    approver, seen = _approver(Decision.approve(), Decision.approve())
    run = await chat(
        {"analyst": [step("print('ok')"), "Fine."], "critic": ["APPROVE looks right", "APPROVE"]},
        approve="each",
        approver=approver,
    )
    assert run.result.ok
    assert [(r.kind, r.step) for r in seen] == [("step", 1), ("final", None)]
    assert seen[0].code == "print('ok')"
    assert seen[0].reviews == ("critic: looks right",)
    assert len(run.of(ApprovalRequested)) == 2


async def test_approve_final_asks_only_about_the_report(chat: ChatRunner) -> None:
    approver, seen = _approver(Decision.approve())
    run = await chat(
        {"analyst": [step("print('x')"), "Fine."], "critic": ["APPROVE", "APPROVE"]},
        approve="final",
        approver=approver,
    )
    assert run.result.ok
    assert [r.kind for r in seen] == ["final"]


async def test_an_edited_step_runs_as_edited(chat: ChatRunner) -> None:
    approver, _ = _approver(Decision.edit("print('edited by the user')"), Decision.approve())
    run = await chat(
        {"analyst": [step("print('as proposed')"), "Fine."], "critic": ["APPROVE", "APPROVE"]},
        approve="each",
        approver=approver,
    )
    (only,) = run.result.steps
    assert only.execution.stdout == "edited by the user\n"
    assert only.code == "print('edited by the user')"
    assert only.proposed_code == "print('as proposed')"
    assert only.edited
    # the analyst is told about the code that really ran
    assert "edited by the user" in run.prompts("analyst")[1]


async def test_a_rejected_step_does_not_run_and_the_feedback_reaches_the_analyst(
    chat: ChatRunner,
) -> None:
    approver, _ = _approver(
        Decision.reject("Use a log scale instead."), Decision.approve(), Decision.approve()
    )
    run = await chat(
        {
            "analyst": [step("print('linear')"), step("print('log')"), "Done."],
            "critic": ["APPROVE", "APPROVE", "APPROVE"],
        },
        approve="each",
        approver=approver,
    )
    assert run.result.ok
    assert [s.code for s in run.result.steps] == ["print('log')"]
    assert "Use a log scale instead." in run.prompts("analyst")[1]
    feedback = [m.message for m in run.of(MessagePosted) if isinstance(m.message, Feedback)]
    assert [(f.sender, f.text) for f in feedback] == [("user", "Use a log scale instead.")]


async def test_a_rejected_report_sends_the_analyst_back(chat: ChatRunner) -> None:
    approver, _ = _approver(Decision.reject("Give the number with units."), Decision.approve())
    run = await chat(
        {"analyst": ["It is 5.", "It is 5 kg."], "critic": ["APPROVE", "APPROVE"]},
        approve="final",
        approver=approver,
    )
    assert run.result.final_report == "It is 5 kg."
    assert "Give the number with units." in run.prompts("analyst")[1]


async def test_stop_at_an_approval_ends_the_run_with_the_reason(chat: ChatRunner) -> None:
    approver, _ = _approver(Decision.stop())
    run = await chat(
        {"analyst": [step("print('never')")], "critic": ["APPROVE"]},
        approve="each",
        approver=approver,
    )
    assert not run.result.ok
    assert run.result.stop_reason.kind == "user_stop"
    assert "step 1" in run.result.stop_reason.message
    assert run.result.steps == ()
    assert run.of(ExecutionFinished) == []
    assert isinstance(run.events[-1], RunFinished)


async def test_messages_posted_in_order(chat: ChatRunner) -> None:
    run = await chat({"analyst": [step("print(3)"), "Three."], "critic": ["APPROVE", "APPROVE"]})
    kinds = [type(e.message).__name__ for e in run.of(MessagePosted)]
    assert kinds == ["Proposal", "Review", "StepResult", "FinalReport", "Review"]
    proposal = run.of(MessagePosted)[0].message
    assert isinstance(proposal, Proposal)
    assert proposal.rationale == "Next step."
    final = run.of(MessagePosted)[3].message
    assert isinstance(final, FinalReport)
