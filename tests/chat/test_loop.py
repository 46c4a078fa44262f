"""The engine's loop, alone: a :class:`GroupChat` with scripted replies on the in-process
:class:`~tests.conftest.FakeKernel`, so every path of propose → review → approve → run →
report, every guard and every way a run ends takes milliseconds. What a real kernel adds
(interrupting a real process, loading data files, ``arun``'s options) is tested in
test_workflow.py and test_stopping.py."""

from __future__ import annotations

import asyncio

from agentnb.chat.approval import ApprovalRequest, CallbackApprover, Decision
from agentnb.chat.events import (
    AgentThinking,
    ApprovalRequested,
    ExecutionFinished,
    ExecutionStarted,
    MessagePosted,
    Notice,
    RunFinished,
    TokenDelta,
)
from agentnb.chat.group import GroupChat, Guards
from agentnb.chat.messages import Feedback, FinalReport, Proposal, Review, StepResult
from agentnb.chat.roles import ANALYST, CRITIC
from agentnb.chat.termination import MaxTurns, TextMention, TimeLimit, TokenBudget
from agentnb.models.scripted import ScriptedModel

from .conftest import ChatRunner, FakeKernel, scripted_approver, step, stop_when

ENDLESS = {"analyst": [step(f"print({i})") for i in range(50)], "critic": ["APPROVE"] * 50}


# --- the way through -------------------------------------------------------------------


async def test_steps_are_reviewed_before_they_run_and_the_report_after(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    run = await fast_chat(
        {
            "analyst": [step("a = 6 * 7\nprint(a)"), step("print(a + 1)"), "The answer is 42."],
            "critic": ["APPROVE", "APPROVE", "APPROVE, it matches the output."],
        }
    )
    assert run.result.ok, run.result.stop_reason
    assert run.result.stop_reason.kind == "approved"
    assert run.speakers == ["analyst", "critic", "run"] * 2 + ["analyst", "critic"]
    assert [s.execution.stdout for s in run.result.steps] == ["42\n", "43\n"]
    assert fake_kernel.ran == ["a = 6 * 7\nprint(a)", "print(a + 1)"]
    assert run.result.final_report == "The answer is 42."
    # the analyst saw the first step's output before proposing the second
    assert "42" in run.prompts("analyst")[1]
    assert isinstance(run.events[-1], RunFinished)


async def test_messages_are_posted_in_order(fast_chat: ChatRunner) -> None:
    run = await fast_chat({"analyst": [step("print(3)"), "Three."], "critic": ["APPROVE"] * 2})
    messages = [e.message for e in run.of(MessagePosted)]
    assert [type(m) for m in messages] == [Proposal, Review, StepResult, FinalReport, Review]
    proposal, _, result, final, _ = messages
    assert isinstance(proposal, Proposal)
    assert proposal.rationale == "Next step."
    assert proposal.code == "print(3)"
    assert isinstance(result, StepResult)
    assert result.execution.stdout == "3\n"
    assert isinstance(final, FinalReport)
    assert final.text == "Three."


async def test_tokens_stream_as_events(fast_chat: ChatRunner) -> None:
    run = await fast_chat(
        {"analyst": ["A short final answer with several words."], "critic": ["APPROVE"]}
    )
    deltas = [e.text for e in run.of(TokenDelta) if e.agent == "analyst"]
    assert len(deltas) > 3
    assert "".join(deltas) == "A short final answer with several words."


# --- reviews ----------------------------------------------------------------------------


async def test_revise_sends_the_step_back_before_it_runs(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    run = await fast_chat(
        {
            "analyst": [step("print('wrong column')"), step("print('right column')"), "Done."],
            "critic": ["REVISE: use the unit_price column.", "APPROVE", "APPROVE"],
        }
    )
    assert run.result.ok
    assert run.speakers == ["analyst", "critic", "analyst", "critic", "run", "analyst", "critic"]
    assert fake_kernel.ran == ["print('right column')"]
    revising = run.prompts("analyst")[1]
    assert "use the unit_price column" in revising
    assert "print('wrong column')" in revising  # its own proposal, to revise


async def test_revise_of_the_final_report_sends_the_analyst_back_to_work(
    fast_chat: ChatRunner,
) -> None:
    run = await fast_chat(
        {
            "analyst": ["It is 1.", step("print(1 + 1)"), "It is 2."],
            "critic": ["REVISE: you never computed it.", "APPROVE", "APPROVE"],
        }
    )
    assert run.result.final_report == "It is 2."
    verdicts = [e.message.verdict for e in run.of(MessagePosted) if isinstance(e.message, Review)]
    assert verdicts == ["revise", "approve", "approve"]
    assert "you never computed it" in run.prompts("analyst")[1]


async def test_endless_revisions_of_one_step_stop_the_run(fast_chat: ChatRunner) -> None:
    run = await fast_chat(
        {"analyst": [step("print('v')")] * 5, "critic": ["REVISE: not yet"] * 5},
        guards=Guards(revisions_per_step=3),
    )
    assert run.result.stop_reason.kind == "loop_guard"
    assert "revisions of step 1 3 times" in run.result.stop_reason.message
    assert run.result.steps == ()


# --- failed steps -----------------------------------------------------------------------


async def test_a_failed_step_is_fed_back_to_the_analyst(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    run = await fast_chat(
        {
            "analyst": [
                step("totals = {'north': 3}\ntotals['south']"),
                step("totals.get('south', 0)"),
                "South sold nothing.",
            ],
            "critic": ["APPROVE"] * 3,
        }
    )
    assert run.result.ok
    assert [s.status for s in run.result.steps] == ["error", "ok"]
    failed = run.result.steps[0].execution.error
    assert failed is not None
    assert failed["ename"] == "KeyError"
    told = run.prompts("analyst")[1]
    assert "[step error]" in told
    assert "KeyError" in told
    assert "'south'" in told
    assert run.result.steps[1].execution.outputs[-1]["data"]["text/plain"] == "0"
    assert len(fake_kernel.ran) == 2  # the kernel kept its state: no restart, no rerun


async def test_a_step_over_its_timeout_is_reported_as_a_timeout(fast_chat: ChatRunner) -> None:
    run = await fast_chat(
        {
            "analyst": [
                step("import asyncio\nprint('begun')\nawait asyncio.sleep(30)"),
                "It took too long.",
            ],
            "critic": ["APPROVE"] * 2,
        },
        step_timeout=0.05,
    )
    assert run.result.ok
    (only,) = run.result.steps
    assert only.status == "timeout"
    assert only.execution.stdout == "begun\n"  # what it printed first is kept
    assert "[step timeout]" in run.prompts("analyst")[1]


async def test_the_same_failing_code_is_not_rerun(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    bad = step("raise ValueError('still broken')")
    same_but_spaced = step("raise  ValueError('still broken')\n")
    replies = [bad, same_but_spaced, bad, bad, bad]
    run = await fast_chat({"analyst": replies, "critic": ["APPROVE"] * 5})
    reason = run.result.stop_reason
    assert reason.kind == "loop_guard"
    assert "already failed in step 1" in reason.message
    assert len(run.result.steps) == 1  # it ran once, never again
    assert fake_kernel.ran == ["raise ValueError('still broken')"]
    assert any("was not run again" in n.text for n in run.of(Notice))
    assert "was not run again" in run.prompts("analyst")[2]
    feedback = [e.message for e in run.of(MessagePosted) if isinstance(e.message, Feedback)]
    assert {f.sender for f in feedback} == {"agentnb"}


async def test_consecutive_errors_stop_the_run(fast_chat: ChatRunner) -> None:
    replies = [step(f"raise KeyError('col{i}')") for i in range(5)]
    run = await fast_chat(
        {"analyst": replies, "critic": ["APPROVE"] * 5}, guards=Guards(consecutive_errors=3)
    )
    assert run.result.stop_reason.kind == "loop_guard"
    assert "3 steps in a row failed" in run.result.stop_reason.message
    assert [s.status for s in run.result.steps] == ["error"] * 3


async def test_a_step_that_works_resets_the_count_of_errors_in_a_row(
    fast_chat: ChatRunner,
) -> None:
    fail, work = step("1 / 0"), step("print('fine')")
    replies = [fail, step("{}['x']"), work, step("[][1]"), step("None.x"), "Done."]
    run = await fast_chat(
        {"analyst": replies, "critic": ["APPROVE"] * 6}, guards=Guards(consecutive_errors=3)
    )
    assert run.result.ok, run.result.stop_reason
    assert [s.status for s in run.result.steps] == ["error", "error", "ok", "error", "error"]


# --- limits -----------------------------------------------------------------------------


async def test_max_turns_stops_and_says_so(fast_chat: ChatRunner) -> None:
    run = await fast_chat(ENDLESS, termination=MaxTurns(5))
    reason = run.result.stop_reason
    assert reason.kind == "max_turns"
    assert "5 turns" in reason.message
    assert "--max-turns" in reason.message
    assert len(run.speakers) == 5  # model calls and executions both count
    assert run.events[-1] == run.of(RunFinished)[0]


async def test_token_budget_stops_before_a_call_would_cross_it(fast_chat: ChatRunner) -> None:
    run = await fast_chat(ENDLESS, termination=TokenBudget(1_500))
    assert run.result.stop_reason.kind == "budget"
    assert "--budget-tokens" in run.result.stop_reason.message
    assert run.result.usage["analyst"].total_tokens > 0
    assert sum(u.total_tokens for u in run.result.usage.values()) < 1_500


async def test_a_time_limit_interrupts_the_running_step(fast_chat: ChatRunner) -> None:
    run = await fast_chat(
        {
            "analyst": [step("import asyncio\nprint('start')\nawait asyncio.sleep(30)")],
            "critic": ["APPROVE"],
        },
        termination=TimeLimit(0.2),
        watch_interval=0.01,
    )
    assert run.result.stop_reason.kind == "time_limit"
    (only,) = run.result.steps
    assert only.status == "interrupted"
    assert only.execution.stdout == "start\n"  # partial output kept


async def test_text_mention_ends_the_run(fast_chat: ChatRunner) -> None:
    run = await fast_chat(
        {"analyst": [step("print(1)")], "critic": ["APPROVE but TERMINATE now"]},
        termination=TextMention("TERMINATE", sources=("critic",)),
    )
    assert run.result.stop_reason.kind == "text_mention"
    assert run.result.steps == ()


async def test_a_model_failure_ends_the_run_with_its_message(fast_chat: ChatRunner) -> None:
    run = await fast_chat({"analyst": [step("print(1)")], "critic": ["APPROVE"]})
    reason = run.result.stop_reason
    assert reason.kind == "model_error"
    assert "no more replies for 'analyst'" in reason.message
    assert len(run.result.steps) == 1  # what ran is kept


async def test_data_that_fails_to_load_stops_before_any_call(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    run = await fast_chat({"analyst": ["x"]}, data_code="raise OSError('no such file')")
    assert run.result.stop_reason.kind == "error"
    assert "could not be loaded" in run.result.stop_reason.message
    assert "no such file" in run.result.stop_reason.message
    assert run.of(AgentThinking) == []
    assert [e.step for e in run.of(ExecutionStarted)] == [0]
    assert run.result.setup is not None
    assert run.result.setup.status == "error"


# --- the reply protocol -----------------------------------------------------------------


async def test_a_reply_outside_the_protocol_gets_one_correction(fast_chat: ChatRunner) -> None:
    run = await fast_chat(
        {"analyst": ["The answer is 4."], "critic": ["Looks plausible to me.", "APPROVE"]}
    )
    assert run.result.ok
    corrected = run.prompts("critic")[1]
    assert "APPROVE or REVISE" in corrected
    assert "Looks plausible to me." in corrected  # its own slip, shown back
    assert any("did not follow the protocol" in n.text for n in run.of(Notice))


async def test_a_model_that_keeps_ignoring_the_protocol_stops_the_run(
    fast_chat: ChatRunner,
) -> None:
    run = await fast_chat({"analyst": ["Answer: 4."], "critic": ["Nice.", "Very nice."]})
    reason = run.result.stop_reason
    assert reason.kind == "protocol"
    assert "critic replied outside the reply protocol 2 times" in reason.message
    assert isinstance(run.events[-1], RunFinished)
    assert run.model.remaining("critic") == 0  # two calls, no third


async def test_an_empty_author_reply_is_corrected(fast_chat: ChatRunner) -> None:
    run = await fast_chat({"analyst": ["", "It is done."], "critic": ["APPROVE"]})
    assert run.result.ok
    assert "empty" in run.prompts("analyst")[1]


# --- approvals --------------------------------------------------------------------------


async def test_approve_each_asks_before_every_step_and_the_report(fast_chat: ChatRunner) -> None:
    approver, seen = scripted_approver(Decision.approve(), Decision.approve())
    run = await fast_chat(
        {"analyst": [step("print('ok')"), "Fine."], "critic": ["APPROVE looks right", "APPROVE"]},
        approve="each",
        approver=approver,
    )
    assert run.result.ok
    assert [(r.kind, r.step) for r in seen] == [("step", 1), ("final", None)]
    assert seen[0].code == "print('ok')"
    assert seen[0].reviews == ("critic: looks right",)
    assert len(run.of(ApprovalRequested)) == 2


async def test_approve_final_asks_only_about_the_report(fast_chat: ChatRunner) -> None:
    approver, seen = scripted_approver(Decision.approve())
    run = await fast_chat(
        {"analyst": [step("print('x')"), "Fine."], "critic": ["APPROVE", "APPROVE"]},
        approve="final",
        approver=approver,
    )
    assert run.result.ok
    assert [r.kind for r in seen] == ["final"]


async def test_an_async_approver_is_awaited(fast_chat: ChatRunner) -> None:
    async def decide(request: ApprovalRequest) -> Decision:
        await asyncio.sleep(0)
        return Decision.approve()

    run = await fast_chat(
        {"analyst": [step("print('x')"), "Fine."], "critic": ["APPROVE", "APPROVE"]},
        approve="each",
        approver=CallbackApprover(decide),
    )
    assert run.result.ok


async def test_an_edited_step_runs_as_edited(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    approver, _ = scripted_approver(
        Decision.edit("print('edited by the user')"), Decision.approve()
    )
    run = await fast_chat(
        {"analyst": [step("print('as proposed')"), "Fine."], "critic": ["APPROVE", "APPROVE"]},
        approve="each",
        approver=approver,
    )
    assert fake_kernel.ran == ["print('edited by the user')"]
    (only,) = run.result.steps
    assert only.execution.stdout == "edited by the user\n"
    assert only.proposed_code == "print('as proposed')"
    assert only.edited
    # the analyst is told about the code that really ran
    assert "edited by the user" in run.prompts("analyst")[1]


async def test_an_edited_report_is_the_final_report(fast_chat: ChatRunner) -> None:
    approver, _ = scripted_approver(Decision.edit("It is 5 kg."))
    run = await fast_chat(
        {"analyst": ["It is 5."], "critic": ["APPROVE"]}, approve="final", approver=approver
    )
    assert run.result.final_report == "It is 5 kg."


async def test_a_rejected_step_does_not_run_and_the_feedback_reaches_the_analyst(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    approver, _ = scripted_approver(
        Decision.reject("Use a log scale instead."), Decision.approve(), Decision.approve()
    )
    run = await fast_chat(
        {
            "analyst": [step("print('linear')"), step("print('log')"), "Done."],
            "critic": ["APPROVE", "APPROVE", "APPROVE"],
        },
        approve="each",
        approver=approver,
    )
    assert run.result.ok
    assert fake_kernel.ran == ["print('log')"]
    assert "Use a log scale instead." in run.prompts("analyst")[1]
    feedback = [e.message for e in run.of(MessagePosted) if isinstance(e.message, Feedback)]
    assert [(f.sender, f.text) for f in feedback] == [("user", "Use a log scale instead.")]


async def test_rejections_do_not_count_as_revisions(fast_chat: ChatRunner) -> None:
    approver, _ = scripted_approver(Decision.reject(), Decision.reject(), *[Decision.approve()] * 2)
    run = await fast_chat(
        {
            "analyst": [step("print('v')")] * 4 + ["Done."],
            "critic": ["APPROVE", "APPROVE", "REVISE: one more thing", "APPROVE", "APPROVE"],
        },
        approve="each",
        approver=approver,
        guards=Guards(revisions_per_step=2),  # a second REVISE would stop the run
    )
    assert run.result.ok, run.result.stop_reason
    assert "The user rejected this step." in run.prompts("analyst")[1]


async def test_a_rejected_report_sends_the_analyst_back(fast_chat: ChatRunner) -> None:
    approver, _ = scripted_approver(
        Decision.reject("Give the number with units."), Decision.approve()
    )
    run = await fast_chat(
        {"analyst": ["It is 5.", "It is 5 kg."], "critic": ["APPROVE", "APPROVE"]},
        approve="final",
        approver=approver,
    )
    assert run.result.final_report == "It is 5 kg."
    assert "Give the number with units." in run.prompts("analyst")[1]


async def test_stop_at_an_approval_ends_the_run_with_the_reason(
    fast_chat: ChatRunner, fake_kernel: FakeKernel
) -> None:
    approver, _ = scripted_approver(Decision.stop())
    run = await fast_chat(
        {"analyst": [step("print('never')")], "critic": ["APPROVE"]},
        approve="each",
        approver=approver,
    )
    assert not run.result.ok
    assert run.result.stop_reason.kind == "user_stop"
    assert "step 1" in run.result.stop_reason.message
    assert run.result.steps == ()
    assert fake_kernel.ran == []
    assert run.of(ExecutionFinished) == []
    assert isinstance(run.events[-1], RunFinished)


# --- stopping from outside ----------------------------------------------------------------


async def test_user_stop_during_a_model_call_abandons_it(fake_kernel: FakeKernel) -> None:
    slow = ScriptedModel({"analyst": ["word " * 400], "critic": ["APPROVE"]}, chunk_delay=0.01)
    chat = GroupChat(
        roles=[ANALYST, CRITIC], models={"analyst": slow, "critic": slow}, executor=fake_kernel
    )
    stop_when(chat, AgentThinking, 0.05)
    result = await asyncio.wait_for(chat.run("Say many words."), 5)
    assert result.stop_reason.kind == "user_stop"
    # the abandoned call was read and partly answered: it is counted, as an estimate
    (usage,) = result.usage.values()
    assert (usage.calls, usage.estimated) == (1, True)
    assert usage.completion_tokens > 0


async def test_user_stop_during_a_step_interrupts_it(fake_kernel: FakeKernel) -> None:
    model = ScriptedModel(
        {
            "analyst": [step("import asyncio\nprint('begun')\nawait asyncio.sleep(30)")],
            "critic": ["APPROVE"],
        }
    )
    chat = GroupChat(
        roles=[ANALYST, CRITIC], models={"analyst": model, "critic": model}, executor=fake_kernel
    )
    stop_when(chat, ExecutionStarted, 0.05)
    result = await asyncio.wait_for(chat.run("Wait."), 5)
    assert result.stop_reason.kind == "user_stop"
    assert fake_kernel.interrupts == 1
    (only,) = result.steps
    assert only.status == "interrupted"
    assert only.execution.stdout == "begun\n"
