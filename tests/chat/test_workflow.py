"""The workflow end to end: ``arun`` on a real kernel, real outputs fed back, an approver's
edit run for real. Every path of the loop itself is in test_loop.py, on the fake kernel."""

from __future__ import annotations

from agentnb.chat.approval import Decision
from agentnb.chat.events import ExecutionFinished, ExecutionOutput
from agentnb.record import RunRecord

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


async def test_a_running_step_shows_its_output_before_it_ends(chat: ChatRunner) -> None:
    slow = step(
        "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n    time.sleep(0.4)"
    )
    run = await chat({"analyst": [slow, "Done."], "critic": ["APPROVE", "APPROVE"]})
    assert run.result.ok, run.result.stop_reason
    live = run.of(ExecutionOutput)
    assert live
    assert all(e.step == 1 for e in live)
    finished = next(i for i, e in enumerate(run.events) if isinstance(e, ExecutionFinished))
    assert run.events.index(live[0]) < finished
    assert [e.elapsed for e in live] == sorted(e.elapsed for e in live)
    record = RunRecord.fold(run.events[: run.events.index(live[-1]) + 1])
    assert "tick 0" in "".join(o.get("text", "") for o in record.steps[1].live)
    assert RunRecord.fold(run.events).steps[1].live == ()  # once it ran, its execution shows
