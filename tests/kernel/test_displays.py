"""What a step shows when display ids and Output widgets are involved, as nbclient
and JupyterLab show it: a later step's update reaches the step that owns the
display, in the step records, the model text and the saved notebook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentnb import Execution, ManagedKernel
from agentnb.chat.events import ExecutionFinished
from agentnb.chat.messages import apply_updates
from agentnb.jupyter.notebook import build_notebook, notebook_from_transcript

from ..conftest import ChatRunner, step


def plain(outputs: Any) -> list[str]:
    """Each output as its text: stream text, a value's text/plain, an error's name."""
    shown = []
    for out in outputs:
        kind = out["output_type"]
        if kind == "stream":
            shown.append(f"{out['name']}: {out['text']}")
        elif kind == "error":
            shown.append(f"error: {out['ename']}: {out['evalue']}")
        else:
            shown.append(out["data"].get("text/plain", ""))
    return shown


async def test_an_update_from_a_later_step_reaches_the_step_that_showed_it(
    kernel: ManagedKernel,
) -> None:
    first = await kernel.execute("h = display('0 %', display_id=True)")
    assert plain(first.outputs) == ["'0 %'"]
    second = await kernel.execute("h.update('100 %')")
    assert second.status == "ok"
    assert second.outputs == ()  # the update belongs to step 1, as in a notebook
    (update,) = second.updates
    assert update.execution_count == first.execution_count
    assert plain(update.outputs) == ["'100 %'"]
    assert plain(first.outputs) == ["'0 %'"]  # the record of step 1 is not rewritten
    (now,) = apply_updates([first], second)
    assert plain(now.outputs) == ["'100 %'"]
    # the model is told, in the later step's text
    assert "'100 %'" in second.to_model_text()
    assert "an earlier step" in second.to_model_text()


async def test_a_display_id_shown_again_updates_the_earlier_output(
    kernel: ManagedKernel,
) -> None:
    result = await kernel.execute(
        "display('first', display_id='same')\n"
        "display('other', display_id='other')\n"
        "display('second', display_id='same');"
    )
    assert plain(result.outputs) == ["'second'", "'other'", "'second'"]
    # and in a later step: both outputs of the earlier one
    later = await kernel.execute("display('third', display_id='same');")
    assert plain(later.outputs) == ["'third'"]
    (update,) = later.updates
    assert plain(update.outputs) == ["'third'", "'other'", "'third'"]


async def test_a_cleared_display_is_no_longer_updated(kernel: ManagedKernel) -> None:
    cleared = await kernel.execute(
        "from IPython.display import clear_output\n"
        "k = display('gone', display_id=True)\nclear_output()\nprint('end')"
    )
    assert plain(cleared.outputs) == ["stdout: end\n"]
    later = await kernel.execute("k.update('nowhere')")
    assert later.updates == ()


async def test_output_widget_shows_what_it_captured_where_it_is_shown(
    kernel: ManagedKernel,
) -> None:
    shown = await kernel.execute(
        "import ipywidgets as widgets\nout = widgets.Output()\ndisplay(out)\n"
        "with out:\n    print('inside')\nprint('outside')"
    )
    assert plain(shown.outputs) == ["stdout: inside\n", "stdout: outside\n"]
    # an error raised inside the widget is the widget's: the step is ok
    failed = await kernel.execute(
        "with out:\n    raise ValueError('in the widget')\nprint('the step goes on')"
    )
    assert failed.status == "ok"
    assert plain(failed.outputs) == ["stdout: the step goes on\n"]
    (update,) = failed.updates
    assert update.execution_count == shown.execution_count
    assert plain(update.outputs) == [
        "stdout: inside\n",
        "error: ValueError: in the widget",
        "stdout: outside\n",
    ]
    # clear_output inside the widget clears the widget, not the step
    cleared = await kernel.execute(
        "print('before')\nwith out:\n    from IPython.display import clear_output\n"
        "    clear_output()\n    print('after the clear')"
    )
    assert plain(cleared.outputs) == ["stdout: before\n"]
    (update,) = cleared.updates
    assert plain(update.outputs) == ["stdout: after the clear\n", "stdout: outside\n"]
    # the widget in the kernel holds what it shows, as with a frontend
    held = await kernel.execute("[o.get('text') for o in out.outputs]")
    assert plain(held.outputs) == ["['after the clear\\n']"]


async def test_a_widget_shown_after_its_capture_shows_it(kernel: ManagedKernel) -> None:
    result = await kernel.execute(
        "import ipywidgets as widgets\nout2 = widgets.Output()\n"
        "with out2:\n    display('captured first')\nout2"
    )
    assert plain(result.outputs) == ["'captured first'"]


async def test_later_steps_updates_reach_the_step_records_the_model_and_the_notebook(
    chat: ChatRunner,
) -> None:
    run = await chat(
        {
            "analyst": [
                step("progress = display('0 %', display_id=True)"),
                step("progress.update('100 %')\nprint('done')"),
                "Finished.",
            ],
            "critic": ["APPROVE", "APPROVE", "APPROVE"],
        }
    )
    assert run.result.ok, run.result.stop_reason
    first, second = run.result.steps
    assert plain(first.outputs) == ["'100 %'"]
    assert plain(second.outputs) == ["stdout: done\n"]
    # the analyst's last prompt shows step 1 as it now is
    last = run.prompts("analyst")[-1]
    step1 = last.split("### Step 1", 1)[1].split("### Step 2", 1)[0]
    shown = step1.split("Output:", 1)[1]
    assert "'100 %'" in shown
    assert "'0 %'" not in shown
    # the saved notebook, from the events and from the transcript
    for nb in (build_notebook(run.events), notebook_from_transcript(run.transcript)):
        (cell,) = [c for c in nb.cells if c.cell_type == "code" and "display(" in c.source]
        assert plain(cell.outputs) == ["'100 %'"]
    # the events keep what happened: step 1's event as it ran, step 2's with the update
    finished = [e.execution for e in run.of(ExecutionFinished) if e.step > 0]
    assert plain(finished[0].outputs) == ["'0 %'"]
    assert plain(finished[1].updates[0].outputs) == ["'100 %'"]


async def test_updates_follow_the_kernel_not_an_older_one(
    make_kernel: Callable[..., ManagedKernel],
) -> None:
    kernel = make_kernel()
    before = await kernel.execute("display('old', display_id='d');")
    await kernel.restart()
    after = await kernel.execute("display('new', display_id='d');")
    assert after.updates == ()  # the display of the old kernel is not this one's
    assert plain(before.outputs) == ["'old'"]
    executions: list[Execution] = [before, after]
    later = await kernel.execute(
        "from IPython.display import update_display\nupdate_display('newer', display_id='d')"
    )
    updated = apply_updates(executions, later)
    assert plain(updated[0].outputs) == ["'old'"]
    assert plain(updated[1].outputs) == ["'newer'"]
