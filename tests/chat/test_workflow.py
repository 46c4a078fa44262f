"""The workflow end to end: ``arun`` on a real kernel, real outputs fed back, an approver's
edit run for real. Every path of the loop itself is in test_loop.py, on the fake kernel."""

from __future__ import annotations

from agentnb.chat.approval import Decision

from .conftest import ChatRunner, scripted_approver, step


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


async def test_an_edited_step_runs_as_edited(chat: ChatRunner) -> None:
    approver, _ = scripted_approver(
        Decision.edit("print('edited by the user')"), Decision.approve()
    )
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
