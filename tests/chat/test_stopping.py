"""Ways a run ends that need a real kernel or ``arun``'s own options: --max-turns,
--budget-tokens and a time limit given to ``arun``, a running step interrupted, data that
fails to load. Every stop of the loop itself is in test_loop.py, on the fake kernel."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentnb import ManagedKernel
from agentnb.chat.events import AgentThinking, ExecutionStarted, RunFinished
from agentnb.chat.group import GroupChat
from agentnb.chat.roles import ANALYST, CRITIC
from agentnb.models.scripted import ScriptedModel

from .conftest import ChatRunner, step, stop_when

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
    stop_when(chat, ExecutionStarted, 0.5)
    result = await asyncio.wait_for(chat.run("Wait."), 20)
    assert result.stop_reason.kind == "user_stop"
    (only,) = result.steps
    assert only.status == "interrupted"
    assert "begun" in only.execution.stdout


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
