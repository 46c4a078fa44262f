"""Whole runs with replies as real models write them: reasoning, refusals, habits."""

from __future__ import annotations

from agentnb.chat.events import ExecutionStarted, MessagePosted
from agentnb.chat.messages import FinalReport, Proposal, Review

from .conftest import ChatRunner, step


async def test_code_in_the_reasoning_never_runs_and_the_report_lands(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [
                "<think>\nI could check it again:\n```python\nprint('from the reasoning')\n```\n"
                "No need, the task is simple.\n</think>\n\nThe answer is 42."
            ],
            "critic": ["APPROVE"],
        }
    )
    assert run.result.ok, run.result.stop_reason
    assert run.result.final_report == "The answer is 42."
    assert not run.result.steps
    assert not [e for e in run.of(ExecutionStarted) if e.step > 0]
    assert run.speakers == ["analyst", "critic"]


async def test_a_critic_that_thinks_first_is_read_by_its_verdict(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("print(6 * 7)"), "It is 42."],
            "critic": [
                "<think>\nThe code prints 42. Should I REVISE? No.\n</think>\n\nAPPROVE",
                "<think>The report matches.</think>\nAPPROVE",
            ],
        }
    )
    assert run.result.ok, run.result.stop_reason
    assert [s.execution.stdout for s in run.result.steps] == ["42\n"]
    reviews = [m.message for m in run.of(MessagePosted) if isinstance(m.message, Review)]
    assert [r.verdict for r in reviews] == ["approve", "approve"]


async def test_lgtm_except_sends_the_step_back_before_it_runs(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [
                step("print('without the discount')"),
                step("print('with the discount')"),
                "Done.",
            ],
            "critic": [
                "LGTM except the revenue ignores the discount; fix that first.",
                "APPROVE",
                "APPROVE",
            ],
        }
    )
    assert run.result.ok, run.result.stop_reason
    assert [s.code for s in run.result.steps] == ["print('with the discount')"]
    assert "ignores the discount" in run.prompts("analyst")[1]


async def test_reasoning_is_never_in_a_later_prompt(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [
                "<think>SECRET-A0 and a token limit cut",  # corrective re-prompt
                "<think>SECRET-A1</think>\nFirst.\n```python\nprint(1)\n```",
                "<think>SECRET-A2 ```python\nprint('x')\n```</think>\nSecond.\n"
                "```python\nprint(2)\n```",
                "<think>SECRET-A3</think>\nIt is 2.",
            ],
            "critic": [
                "<think>SECRET-C1</think>\nREVISE: print 2 instead.",
                "<think>SECRET-C2</think>\nAPPROVE",
                "<think>SECRET-C3</think>\nAPPROVE",
            ],
        }
    )
    assert run.result.ok, run.result.stop_reason
    assert [s.code for s in run.result.steps] == ["print(2)"]
    assert "First." in run.prompts("analyst")[2]  # its own proposal, resent to revise
    for role in ("analyst", "critic"):
        for prompt in run.prompts(role):
            assert "SECRET" not in prompt
            assert "<think>" not in prompt
    posted = [m.message for m in run.of(MessagePosted)]
    texts = [m.text for m in posted if isinstance(m, Proposal | FinalReport | Review)]
    assert texts
    assert not [t for t in texts if "SECRET" in t]
