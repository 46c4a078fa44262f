"""Every way a run ends: limits, budgets, the clock, the user, loop guards, protocol slips."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentnb import ManagedKernel
from agentnb.chat.events import AgentThinking, Event, ExecutionStarted, Notice, RunFinished
from agentnb.chat.group import GroupChat, Guards
from agentnb.chat.roles import ANALYST, CRITIC
from agentnb.chat.termination import TextMention
from agentnb.models.scripted import ScriptedModel

from .conftest import ChatRunner, step

ENDLESS = {"analyst": [step(f"print({i})") for i in range(50)], "critic": ["APPROVE"] * 50}


async def test_max_turns_stops_and_says_so(chat: ChatRunner) -> None:
    run = await chat(ENDLESS, max_turns=5)
    reason = run.result.stop_reason
    assert reason.kind == "max_turns"
    assert "5 turns" in reason.message
    assert "--max-turns" in reason.message
    assert len(run.speakers) == 5
    assert run.events[-1] == run.of(RunFinished)[0]


async def test_token_budget_stops_before_a_call_would_cross_it(chat: ChatRunner) -> None:
    run = await chat(ENDLESS, budget_tokens=1_500, max_turns=None)
    reason = run.result.stop_reason
    assert reason.kind == "budget"
    assert "--budget-tokens" in reason.message
    assert run.result.usage["analyst"].total_tokens > 0
    total = sum(u.total_tokens for u in run.result.usage.values())
    assert total < 1_500


async def test_time_limit_interrupts_a_running_step(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("import time\nprint('start', flush=True)\ntime.sleep(30)")],
            "critic": ["APPROVE"],
        },
        time_limit=1.5,
    )
    assert run.result.stop_reason.kind == "time_limit"
    (only,) = run.result.steps
    assert only.status == "interrupted"
    assert "start" in only.execution.stdout  # partial output kept


def _stop_when(chat: GroupChat, kind: type[Event], after: float) -> None:
    """Call ``chat.stop()`` ``after`` seconds after the first event of ``kind``."""
    armed = []

    def observe(event: Event) -> None:
        if isinstance(event, kind) and not armed:
            armed.append(asyncio.get_running_loop().call_later(after, chat.stop))

    chat.observers.append(observe)


async def test_user_stop_during_a_model_call(shared_kernel: ManagedKernel) -> None:
    slow = ScriptedModel({"analyst": ["word " * 400], "critic": ["APPROVE"]}, chunk_delay=0.01)
    chat = GroupChat(
        roles=[ANALYST, CRITIC], models={"analyst": slow, "critic": slow}, executor=shared_kernel
    )
    _stop_when(chat, AgentThinking, 0.2)
    result = await asyncio.wait_for(chat.run("Say many words."), 10)
    assert result.stop_reason.kind == "user_stop"
    # the abandoned call was read and partly answered: it is counted, as an estimate
    (usage,) = result.usage.values()
    assert (usage.calls, usage.estimated) == (1, True)
    assert 0 < usage.completion_tokens < 400


async def test_user_stop_during_a_step_interrupts_it(shared_kernel: ManagedKernel) -> None:
    model = ScriptedModel(
        {
            "analyst": [step("import time\nprint('begun', flush=True)\ntime.sleep(30)")],
            "critic": ["APPROVE"],
        }
    )
    chat = GroupChat(
        roles=[ANALYST, CRITIC], models={"analyst": model, "critic": model}, executor=shared_kernel
    )
    _stop_when(chat, ExecutionStarted, 0.5)
    result = await asyncio.wait_for(chat.run("Wait."), 20)
    assert result.stop_reason.kind == "user_stop"
    (only,) = result.steps
    assert only.status == "interrupted"
    assert "begun" in only.execution.stdout


async def test_text_mention_ends_the_run(chat: ChatRunner) -> None:
    run = await chat(
        {"analyst": [step("print(1)")], "critic": ["APPROVE but TERMINATE now"]},
        termination=TextMention("TERMINATE", sources=("critic",)),
    )
    assert run.result.stop_reason.kind == "text_mention"
    assert run.result.steps == ()


async def test_the_same_failing_code_is_not_rerun(chat: ChatRunner) -> None:
    bad = step("raise ValueError('still broken')")
    run = await chat({"analyst": [bad] * 10, "critic": ["APPROVE"] * 10})
    reason = run.result.stop_reason
    assert reason.kind == "loop_guard"
    assert "already failed in step 1" in reason.message
    assert len(run.result.steps) == 1  # it ran once, never again
    notices = [n.text for n in run.of(Notice)]
    assert any("was not run again" in n for n in notices)
    assert "was not run again" in run.prompts("analyst")[2]


async def test_consecutive_errors_stop_the_run(chat: ChatRunner) -> None:
    replies = [step(f"raise KeyError('col{i}')") for i in range(5)]
    run = await chat(
        {"analyst": replies, "critic": ["APPROVE"] * 5}, guards=Guards(consecutive_errors=3)
    )
    assert run.result.stop_reason.kind == "loop_guard"
    assert "3 steps in a row failed" in run.result.stop_reason.message
    assert [s.status for s in run.result.steps] == ["error"] * 3


async def test_endless_revisions_of_one_step_stop_the_run(chat: ChatRunner) -> None:
    run = await chat(
        {"analyst": [step("print('v')")] * 5, "critic": ["REVISE: not yet"] * 5},
        guards=Guards(revisions_per_step=3),
    )
    assert run.result.stop_reason.kind == "loop_guard"
    assert "revisions of step 1 3 times" in run.result.stop_reason.message
    assert run.result.steps == ()


async def test_a_reply_outside_the_protocol_gets_one_correction(chat: ChatRunner) -> None:
    run = await chat(
        {"analyst": ["The answer is 4."], "critic": ["Looks plausible to me.", "APPROVE"]}
    )
    assert run.result.ok
    corrected = run.prompts("critic")[1]
    assert "APPROVE or REVISE" in corrected
    assert "Looks plausible to me." in corrected  # its own slip, shown back
    assert any("did not follow the protocol" in n.text for n in run.of(Notice))


async def test_a_model_that_keeps_ignoring_the_protocol_stops_the_run(chat: ChatRunner) -> None:
    run = await chat({"analyst": ["Answer: 4."], "critic": ["Nice.", "Very nice."]})
    reason = run.result.stop_reason
    assert reason.kind == "protocol"
    assert "critic replied outside the reply protocol 2 times" in reason.message


async def test_an_empty_author_reply_is_corrected(chat: ChatRunner) -> None:
    run = await chat({"analyst": ["", "It is done."], "critic": ["APPROVE"]})
    assert run.result.ok
    assert "empty" in run.prompts("analyst")[1]


async def test_a_model_failure_ends_the_run_with_its_message(chat: ChatRunner) -> None:
    run = await chat({"analyst": [step("print(1)")], "critic": ["APPROVE"]})
    reason = run.result.stop_reason
    assert reason.kind == "model_error"
    assert "no more replies for 'analyst'" in reason.message
    assert len(run.result.steps) == 1  # what ran is kept


async def test_data_that_fails_to_load_stops_before_any_call(
    chat: ChatRunner, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\xff\xfe\x00garbage")
    run = await chat({"analyst": ["x"]}, data=str(broken))
    assert run.result.stop_reason.kind == "error"
    assert "could not be loaded" in run.result.stop_reason.message
    assert [e for e in run.events if isinstance(e, AgentThinking)] == []
    assert run.of(ExecutionStarted)[0].step == 0
