"""The chat widget: real ipywidgets fed real events, and its buttons clicked as a run
waits for them. The first half feeds events by hand (no kernel); the second runs
whole scripted analyses in a real managed kernel with the view as the approver."""

from __future__ import annotations

import asyncio
import base64
import re
from importlib import resources
from typing import Any

import ipywidgets as widgets
import pandas as pd
import pytest

from agentnb.chat.approval import ApprovalRequest, Decision
from agentnb.chat.events import (
    AgentThinking,
    ApprovalDecided,
    ApprovalRequested,
    DataReady,
    Event,
    ExecutionFinished,
    ExecutionOutput,
    ExecutionStarted,
    MessagePosted,
    ModelCalled,
    Notice,
    RunFinished,
    RunStarted,
    TokenDelta,
)
from agentnb.chat.messages import (
    DisplayUpdate,
    Execution,
    FinalReport,
    Proposal,
    Review,
    StepResult,
)
from agentnb.chat.termination import StopReason
from agentnb.errors import ConfigError
from agentnb.models.base import Usage
from agentnb.models.scripted import ScriptedModel
from agentnb.ui.approval import editor_rows
from agentnb.ui.widget import ChatView

from .conftest import (
    Start,
    by_class,
    cards,
    classes,
    click,
    find_button,
    no_display_errors,
    shown,
    step,
    walk,
)

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- events, by hand -----------------------------------------------------------------------


def said(agent: str, text: str, usage: Usage | None = None, cost: float | None = None) -> Event:
    return ModelCalled(
        agent=agent,
        model="test-model",
        text=text,
        usage=usage or Usage(100, 20, 1),
        cost=cost,
        duration=1.5,
    )


def proposal_turn(number: int, code: str, why: str = "Next step.") -> list[Event]:
    text = f"{why}\n\n```python\n{code}\n```"
    return [
        AgentThinking(agent="analyst", phase="propose", step=number),
        TokenDelta(agent="analyst", text=why),
        said("analyst", text),
        MessagePosted(
            message=Proposal(sender="analyst", step=number, text=text, rationale=why, code=code)
        ),
    ]


def review_turn(number: int | None, verdict: str = "approve", words: str = "Fine.") -> list[Event]:
    phase = "review_step" if number is not None else "review_final"
    return [
        AgentThinking(agent="critic", phase=phase, step=number),
        said("critic", f"{verdict.upper()} {words}"),
        MessagePosted(message=Review(sender="critic", verdict=verdict, text=words, step=number)),  # type: ignore[arg-type]
    ]


def executed(number: int, code: str, outputs: tuple[dict[str, Any], ...] = ()) -> list[Event]:
    execution = Execution(
        code=code, status="ok", outputs=outputs, execution_count=number, duration=0.2
    )
    request = ApprovalRequest(kind="step", step=number, text="Next step.", code=code)
    return [
        ApprovalRequested(request=request),
        ApprovalDecided(request=request, decision=Decision.approve()),
        ExecutionStarted(step=number, code=code),
        ExecutionFinished(step=number, execution=execution),
        MessagePosted(message=StepResult(sender="executor", step=number, execution=execution)),
    ]


def finished(kind: str = "approved", message: str = "the final report was approved") -> Event:
    return RunFinished(reason=StopReason(kind, message), final_report="Done.")  # type: ignore[arg-type]


def feed(view: ChatView, events: list[Event]) -> None:
    for event in events:
        view.handle(event)


def a_step(number: int) -> list[Event]:
    code = f"x{number} = {number}\nprint(x{number})"
    out = ({"output_type": "stream", "name": "stdout", "text": f"{number}\n"},)
    return [*proposal_turn(number, code), *review_turn(number), *executed(number, code, out)]


def the_end() -> list[Event]:
    return [
        AgentThinking(agent="analyst", phase="propose", step=2),
        said("analyst", "It is **42**."),
        MessagePosted(message=FinalReport(sender="analyst", text="It is **42**.")),
        *review_turn(None),
        finished(),
    ]


# --- cards -----------------------------------------------------------------------------------


def test_turns_become_cards_in_order_and_reviews_sit_in_the_card_they_review() -> None:
    view = ChatView("What is the answer?")
    frame = pd.DataFrame({"region": ["South"], "growth": [75.2]})
    outputs = (
        {"output_type": "stream", "name": "stdout", "text": "rows: 1\n"},
        {
            "output_type": "execute_result",
            "execution_count": 1,
            "data": {"text/html": frame._repr_html_(), "text/plain": repr(frame)},
            "metadata": {},
        },
        {"output_type": "display_data", "data": {"image/png": PNG}, "metadata": {}},
    )
    code = "summary = sales.describe()\nsummary"
    feed(
        view,
        [
            RunStarted(
                task="What is the answer?", models={"analyst": "m", "critic": "m"}, approve="each"
            ),
            *proposal_turn(1, code, "Summarise the sales."),
            *review_turn(1, "approve", "Looks right."),
            *executed(1, code, outputs),
            *the_end(),
        ],
    )
    step_card, report_card = cards(view)
    first = shown(step_card)
    order = [
        "analyst",
        "proposes step 1",
        "Summarise the sales.",
        '<span class="n">summary</span>',
        "critic",
        "reviews step 1",
        "agentnb-badge-approve",
        "Looks right.",
        "you approved step 1",
        "agentnb-badge-ok",
        "rows: 1",
        '<table class="dataframe">',
        f'<img src="data:image/png;base64,{PNG}"',
    ]
    positions = [first.index(piece) for piece in order]
    assert positions == sorted(positions)
    last = shown(report_card)
    assert "final report" in last
    assert "<strong>42</strong>" in last
    assert "reviews the report" in last
    assert "agentnb-final" in classes(report_card)
    assert view.phase == "done"
    assert "the final report was approved" in shown(view.widget)
    assert by_class(view, "agentnb-end")
    no_display_errors(view)


def test_model_markdown_and_kernel_html_cannot_inject_markup() -> None:
    view = ChatView("<b>task</b>")
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    feed(view, proposal_turn(1, "print(1)", f"Plan: {evil}"))
    html_output = {
        "output_type": "display_data",
        "data": {"text/html": f"<p>ok</p>{evil}<a href='javascript:alert(3)'>x</a>"},
        "metadata": {},
    }
    feed(view, executed(1, "print(1)", (html_output,)))
    everything = shown(view.widget)
    tags = re.findall(r"<[^>]*>", everything)
    for bad in ("onerror", "<script", "javascript:", "<b>"):
        assert not [tag for tag in tags if bad in tag], bad
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in everything  # the model's words, as text
    assert "<p>ok</p>" in everything  # the kernel's harmless HTML stays


def test_a_revised_proposal_supersedes_the_first_one() -> None:
    view = ChatView("t")
    feed(
        view, [*proposal_turn(1, "print('wrong')"), *review_turn(1, "revise", "Use the net price.")]
    )
    feed(view, a_step(1))
    first, second = cards(view)
    assert "agentnb-superseded" in classes(first)
    assert "agentnb-badge-revise" in shown(first)
    assert "revises step 1" in shown(second)
    assert "agentnb-superseded" not in classes(second)


def test_the_data_loading_step_is_one_compact_line() -> None:
    view = ChatView("t")
    loader = Execution(code="load", status="ok", outputs=(), execution_count=1, duration=0.4)
    feed(
        view,
        [
            RunStarted(task="t", models={"analyst": "m"}, approve="never", data=("sales",)),
            ExecutionStarted(step=0, code="load"),
        ],
    )
    assert "loading sales" in shown(view.widget)
    assert view.phase == "loading the data"
    feed(
        view,
        [
            ExecutionFinished(step=0, execution=loader),
            DataReady(names=("sales",), summary="### sales: DataFrame, 3 rows"),
        ],
    )
    (card,) = cards(view)
    assert "agentnb-compact" in classes(card)
    assert "loaded sales" in shown(card)
    assert "<details" in shown(card)  # folded away
    assert "3 rows" in shown(card)


def test_the_data_card_shows_before_the_run_starts_and_is_filled_in_later() -> None:
    # the first card is in the widget's first display, not after the push and summary
    view = ChatView("t", data=["sales"])
    (card,) = cards(view)
    assert "loading sales" in shown(card)
    feed(
        view,
        [
            RunStarted(task="t", models={"analyst": "m"}, approve="never", data=("sales",)),
            DataReady(names=("sales",), summary="### sales: DataFrame, 3 rows"),
        ],
    )
    assert cards(view) == [card]
    assert "agentnb-compact" in classes(card)
    assert "loaded sales" in shown(card)
    assert "3 rows" in shown(card)


def test_a_run_that_ends_before_its_data_loaded_says_so_on_the_data_card() -> None:
    view = ChatView("t", data=["sales"])
    feed(
        view,
        [
            RunStarted(task="t", models={"analyst": "m"}, approve="never", data=("sales",)),
            RunFinished(reason=StopReason("user_stop", "stopped by the user"), final_report=None),
        ],
    )
    (card, *_) = cards(view)
    assert "did not load sales" in shown(card)
    assert "loading" not in shown(card)


def test_a_reply_outside_the_protocol_stays_visible_with_the_notice_and_is_dimmed() -> None:
    view = ChatView("t")
    feed(
        view,
        [
            AgentThinking(agent="analyst", phase="propose", step=1),
            said("analyst", "Sure! Happy to help."),
            Notice(
                level="warning",
                text="analyst's reply did not follow the protocol; asking again",
                agent="analyst",
            ),
            *proposal_turn(1, "print(1)"),
        ],
    )
    slipped, proposed = cards(view)
    assert "Happy to help." in shown(slipped)
    assert "did not follow the protocol" in shown(slipped)
    assert "agentnb-superseded" in classes(slipped)
    assert "proposes step 1" in shown(proposed)


def test_a_speaker_choice_is_one_line_and_a_silent_stop_says_no_reply() -> None:
    view = ChatView("t")
    feed(
        view,
        [
            AgentThinking(agent="selector", phase="select", step=1),
            said("selector", "analyst"),
            AgentThinking(agent="analyst", phase="propose", step=1),
            finished("user_stop", "stopped by the user"),
        ],
    )
    choice, silent = cards(view)
    assert "chose analyst" in shown(choice)
    assert "agentnb-compact" in classes(choice)
    assert "no reply" in shown(silent)
    assert "thinking" not in shown(silent)


def test_notices_and_feedback_are_small_lines() -> None:
    view = ChatView("t")
    feed(view, a_step(1))
    view.handle(Notice(level="warning", text="the model server is slow"))
    view.notify("warning", "cells were not inserted: no front-end extension")
    everything = shown(view.widget)
    assert "the model server is slow" in everything
    assert "cells were not inserted" in everything
    assert "agentnb-folded" not in classes(cards(view)[0])  # not inserted: shown whole


def test_an_inserted_step_folds_to_one_line_that_jumps_to_its_cell() -> None:
    view = ChatView("t")
    feed(view, [*a_step(1), *proposal_turn(2, "print(2)", why="Then the second thing.")])
    card, pending = cards(view)
    view.step_inserted(1, "cell-123")
    assert "agentnb-folded" in classes(card)
    assert "agentnb-folded" not in classes(pending)  # only what became a cell
    fold = card.children[0]
    assert "agentnb-fold" in classes(fold)
    line = shown(fold)
    assert re.search(r">ok<.*>step 1<.*>analyst<.*>0\.2 s<.*Next step\.", line), line
    assert 'class="agentnb-jump agentnb-to-cell-123"' in line
    # the rest stays in the card, hidden by the stylesheet until "show"
    assert "proposes step 1" in shown(card)
    assert '<pre class="agentnb-out-stream">1</pre>' in shown(card)
    toggle = find_button(view, "show", "agentnb-fold-toggle")
    toggle.click()
    assert "agentnb-expanded" in classes(card)
    assert toggle.description == "hide"
    toggle.click()
    assert "agentnb-expanded" not in classes(card)
    css = resources.files("agentnb.ui").joinpath("style.css").read_text()
    assert ".agentnb-folded:not(.agentnb-expanded) > :not(.agentnb-fold)" in css
    view.step_inserted(1, "cell-123")  # sent again to a reopened page: still one line
    assert sum("agentnb-fold" in classes(c) for c in card.children) == 1


def test_an_edited_step_says_so_on_its_folded_line() -> None:
    view = ChatView("t")
    request = ApprovalRequest(kind="step", step=1, text="", code="print(1)")
    execution = Execution(code="print(2)", status="ok", outputs=(), execution_count=1, duration=0.1)
    feed(
        view,
        [
            *proposal_turn(1, "print(1)"),
            ApprovalRequested(request=request),
            ApprovalDecided(request=request, decision=Decision.edit("print(2)")),
            ExecutionStarted(step=1, code="print(2)"),
            ExecutionFinished(step=1, execution=execution),
        ],
    )
    view.step_inserted(1, "c1")
    assert "edited by you" in shown(cards(view)[0].children[0])


def _shown_text(text: str) -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/plain": text}, "metadata": {}}


def test_a_later_step_that_updates_a_display_redraws_the_earlier_steps_card() -> None:
    # step 1: h = display('0 %', display_id=True); step 2: h.update(...), as in a notebook
    # the card of step 1 then shows what its cell would show
    view = ChatView("t")
    first = "h = display('0 %', display_id=True)"
    feed(view, [*proposal_turn(1, first), *executed(1, first, (_shown_text("'0 %'"),))])
    view.step_inserted(1, "cell-1")  # folded: the card still holds the outputs, hidden
    card = cards(view)[0]
    assert "0 %" in shown(card)
    second = "h.update('100 %')"
    hostile = {
        "output_type": "display_data",
        "data": {"text/html": "<b>100 %</b><img src=x onerror=alert(1)><script>x()</script>"},
        "metadata": {},
    }
    update = DisplayUpdate(execution_count=1, outputs=(_shown_text("'100 %'"), hostile))
    execution = Execution(
        code=second, status="ok", outputs=(), execution_count=2, duration=0.1, updates=(update,)
    )
    request = ApprovalRequest(kind="step", step=2, text="Next step.", code=second)
    feed(
        view,
        [
            *proposal_turn(2, second),
            ApprovalRequested(request=request),
            ApprovalDecided(request=request, decision=Decision.approve()),
            ExecutionStarted(step=2, code=second),
            ExecutionFinished(step=2, execution=execution),
        ],
    )
    (part,) = (c for c in card.children if "agentnb-execution" in classes(c))
    now = part.value
    assert "0 %" not in now.replace("100 %", "")
    assert "100 %" in now
    assert "<b>100 %</b>" in now
    lowered = now.lower()
    assert "<script" not in lowered  # sanitised as every output
    assert "onerror" not in lowered
    assert "agentnb-folded" in classes(card)  # still one line that jumps to its cell
    assert "0 %" not in shown(cards(view)[1]).replace("100 %", "")  # step 2 shows nothing
    # the StepResult carries the same updates: the card is not sent to the browser again
    sent: list[Any] = []
    part.observe(sent.append, names="value")
    view.handle(MessagePosted(message=StepResult(sender="executor", step=2, execution=execution)))
    assert sent == []
    assert view.record.steps[1].execution is not None
    assert view.record.steps[1].execution.outputs == update.outputs


def test_a_display_bug_becomes_an_error_line_and_never_reaches_the_run() -> None:
    view = ChatView("t")
    broken = Proposal(sender="analyst", step=1, text="x", rationale="x", code=None)  # type: ignore[arg-type]
    view.handle(MessagePosted(message=broken))  # must not raise
    assert "could not show a MessagePosted event" in shown(view.widget)
    feed(view, a_step(2))  # and the view goes on
    assert "you approved step 2" in shown(view.widget)


# --- streaming ---------------------------------------------------------------------------------


def test_streamed_text_is_throttled_per_card() -> None:
    clock = Clock()
    view = ChatView("t", throttle=0.1, clock=clock)
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    (card,) = cards(view)
    turn = card.children[0]
    values: list[str] = []
    turn.observe(lambda change: values.append(change["new"]), names="value")
    words = [f"word{i} " for i in range(100)]
    for word in words:  # 100 chunks over one second
        view.handle(TokenDelta(agent="analyst", text=word))
        clock.now += 0.01
    assert 9 <= len(values) <= 11, len(values)
    assert "word0" in values[0]  # the first words show at once
    assert "word99" not in turn.value  # the last ones wait for the next flush
    view.handle(said("analyst", "".join(words)))
    assert "word99" in turn.value


def test_a_streaming_card_only_updates_itself() -> None:
    clock = Clock()
    view = ChatView("t", clock=clock)
    feed(view, a_step(1))
    earlier = [w for w in walk(cards(view)[0]) if isinstance(w, widgets.HTML)]
    changes: list[str] = []
    for w in earlier:
        w.observe(lambda change: changes.append(change["new"]), names="value")
    view.handle(AgentThinking(agent="analyst", phase="propose", step=2))
    for i in range(20):
        view.handle(TokenDelta(agent="analyst", text=f"w{i} "))
        clock.now += 0.2
    assert changes == []


async def test_a_buffered_chunk_is_flushed_by_the_loop_without_another_event() -> None:
    view = ChatView("t", throttle=0.05)
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    view.handle(TokenDelta(agent="analyst", text="first "))
    view.handle(TokenDelta(agent="analyst", text="second"))
    assert "first" in shown(view.widget)
    assert "second" not in shown(view.widget)
    await asyncio.sleep(0.2)
    assert "second" in shown(view.widget)
    view.handle(finished("user_stop", "stopped by the user"))


def test_the_whole_reply_replaces_what_was_streamed() -> None:
    view = ChatView("t", clock=Clock())
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    view.handle(TokenDelta(agent="analyst", text="a partial answer that was retr"))
    feed(view, proposal_turn(1, "print('final')", "The real plan.")[2:])
    (card,) = cards(view)
    assert "retr" not in shown(card)
    assert "The real plan." in shown(card)


# --- the header ------------------------------------------------------------------------------


def test_the_header_shows_the_phase_in_words() -> None:
    view = ChatView("t")
    assert view.phase == "starting"
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    assert view.phase == "analyst thinking"
    feed(view, proposal_turn(1, "print(1)")[1:])
    view.handle(AgentThinking(agent="critic", phase="review_step", step=1))
    assert view.phase == "critic reviewing step 1"
    feed(view, review_turn(1)[1:])
    request = ApprovalRequest(kind="step", step=1, text="", code="print(1)")
    view.handle(ApprovalRequested(request=request))
    assert view.phase == "awaiting your approval"
    view.handle(ApprovalDecided(request=request, decision=Decision.approve()))
    view.handle(ExecutionStarted(step=1, code="print(1)"))
    assert view.phase == "running step 1"
    assert "running step 1" in shown(by_class(view, "agentnb-phase")[0])
    view.handle(finished("user_stop", "stopped by the user at step 2"))
    assert view.phase == "stopped"
    header = shown(by_class(view, "agentnb-header")[0])
    assert "stopped by the user at step 2" in header


def test_a_failed_run_says_why() -> None:
    view = ChatView("t")
    view.handle(finished("model_error", "the model endpoint refused the key"))
    assert view.phase == "failed"
    assert "the model endpoint refused the key" in shown(by_class(view, "agentnb-header")[0])
    assert find_button(view, "Stop") is None  # nothing left to stop


def _stop_buttons(view: ChatView) -> list[Any]:
    """The Stop buttons the view shows, enabled or not."""
    return [
        w
        for w in walk(view.widget)
        if isinstance(w, widgets.Button) and w.description == "Stop" and w.layout.display != "none"
    ]


def test_a_failed_run_says_what_failed_in_the_header_and_the_whole_story_once() -> None:
    why = (
        "Cannot reach http://127.0.0.1:9/v1 (connection refused). Is the server running? "
        "Check the base URL you gave (--base-url)."
    )
    view = ChatView("t")
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    for retry in (1, 2, 3):
        view.handle(
            Notice(
                level="warning",
                agent="analyst",
                text=f"Cannot reach http://127.0.0.1:9/v1 (connection refused); "
                f"retrying in 0.{retry} s (retry {retry} of 4)",
            )
        )
    retries = [w for w in walk(view.widget) if "retry" in getattr(w, "value", "")]
    assert len(retries) == 1, "one line for the retries of one failure"
    assert "(retry 3 of 4)" in retries[0].value
    view.handle(finished("model_error", why))
    header = shown(by_class(view, "agentnb-header")[0])
    assert "Cannot reach http://127.0.0.1:9/v1 (connection refused)." in header
    assert "Is the server running?" not in re.sub(r'title="[^"]*"', "", header)
    everything = re.sub(r'title="[^"]*"', "", shown(view.widget))
    assert everything.count("Is the server running?") == 1  # the end of the chat says it all
    assert "retrying" not in everything  # the end line replaces the retries
    assert _stop_buttons(view) == []  # no dead Stop after the end


def test_a_run_that_never_finished_can_be_closed_with_a_reason() -> None:
    view = ChatView("t")
    view.close("--model: no model given")
    assert view.phase == "failed"
    assert "--model: no model given" in shown(by_class(view, "agentnb-header")[0])
    assert find_button(view, "Stop") is None
    finished_view = ChatView("t")
    finished_view.handle(finished())
    finished_view.close("ignored")
    assert finished_view.phase == "done"


def test_the_header_says_who_is_replying_before_the_first_reply_is_counted() -> None:
    view = ChatView("t")
    usage = by_class(view, "agentnb-usage")[0]
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    view.handle(TokenDelta(agent="analyst", text="Let me"))
    assert "no model calls yet" not in usage.value
    assert "analyst</span> replying" in usage.value
    view.handle(said("analyst", "Let me look.", Usage(100, 20, 1)))
    assert "replying" not in usage.value
    assert "analyst</span> 120 tokens" in usage.value
    view.handle(AgentThinking(agent="critic", phase="review_step", step=1))
    assert "critic</span> replying" in usage.value


def test_tokens_and_cost_per_agent_update_live() -> None:
    view = ChatView("t")
    usage = by_class(view, "agentnb-usage")[0]
    assert "no model calls yet" in usage.value
    view.handle(said("analyst", "a", Usage(100, 20, 1, estimated=True), cost=None))
    view.handle(said("analyst", "b", Usage(200, 30, 1, estimated=True), cost=None))
    view.handle(said("critic", "c", Usage(50, 5, 1), cost=0.002))
    assert "analyst</span> ~350 tokens · —" in usage.value
    assert "critic</span> 55 tokens · $0.0020" in usage.value
    view.handle(
        RunFinished(
            reason=StopReason("approved", "done"),
            final_report="x",
            usage={"analyst": Usage(1000, 100, 3), "critic": Usage(10, 1, 1)},
            costs={"analyst": 0.5, "critic": 0.25},
        )
    )
    assert "analyst</span> 1,100 tokens · $0.5000" in usage.value
    assert "total 1,111 tokens · $0.7500" in usage.value


def test_elapsed_time_comes_from_the_clock() -> None:
    clock = Clock()
    view = ChatView("t", clock=clock)
    clock.now += 75
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    assert "1 min 15 s" in shown(by_class(view, "agentnb-phase")[0])
    view.handle(finished())
    clock.now += 600  # the clock stops with the run
    view.handle(Notice(level="info", text="late"))
    assert "1 min 15 s" in shown(by_class(view, "agentnb-phase")[0])


def test_save_shows_the_path_or_the_error() -> None:
    view = ChatView("t")
    assert find_button(view, "Save") is None  # hidden until the magic wires it
    paths = iter(["/tmp/analysis.ipynb"])

    def save() -> str:
        for path in paths:
            return path
        raise ConfigError("--out x.txt: the analysis notebook's name must end in .ipynb")

    view.on_save = save
    button = find_button(view, "Save")
    assert button is not None
    button.click()
    (note,) = by_class(view, "agentnb-note")
    # a line one reads: the file's name in bold, on a green background, not small grey text
    assert '<b title="/tmp/analysis.ipynb">analysis.ipynb</b>' in note.value
    assert "agentnb-note-saved" in note.value
    assert "Saved the analysis as" in note.value
    button.click()
    assert "Not saved: --out x.txt" in note.value
    assert "must end in .ipynb" in shown(view.widget)


# --- approvals, without a kernel ------------------------------------------------------------


async def _waiting(view: ChatView, request: ApprovalRequest) -> asyncio.Task[Decision]:
    task = asyncio.ensure_future(view.decide(request))
    await asyncio.sleep(0)
    return task


async def test_approve_resolves_and_takes_the_buttons_away() -> None:
    view = ChatView("t")
    feed(view, [*proposal_turn(1, "print(1)"), *review_turn(1)])
    task = await _waiting(view, ApprovalRequest(kind="step", step=1, text="", code="print(1)"))
    assert view.phase == "awaiting your approval"
    (card,) = cards(view)
    panel = by_class(view, "agentnb-approval")
    assert len(panel) == 1
    assert panel[0] in list(walk(card))  # on the card it is about
    labels = [w.description for w in walk(panel[0]) if isinstance(w, widgets.Button)]
    assert labels == ["Approve & run", "Edit", "Reject"]  # Stop is the header's, once
    assert len(_stop_buttons(view)) == 1
    button = find_button(view, "Approve & run")
    button.click()
    button.click()  # a second click before the first is taken changes nothing
    assert await task == Decision.approve()
    assert by_class(view, "agentnb-approval") == []
    assert "you approved step 1" in shown(card)


async def test_edit_returns_the_edited_code() -> None:
    view = ChatView("t")
    feed(view, proposal_turn(1, "print('as proposed')"))
    task = await _waiting(
        view, ApprovalRequest(kind="step", step=1, text="", code="print('as proposed')")
    )
    await click(view, "Edit")
    (editor,) = [w for w in walk(view.widget) if isinstance(w, widgets.Textarea)]
    assert editor.value == "print('as proposed')"
    editor.value = "print('mine')"
    await click(view, "Run edited")
    assert await task == Decision.edit("print('mine')")


async def test_approve_is_disabled_while_the_editor_or_the_feedback_box_is_open() -> None:
    view = ChatView("t")
    code = "units = sales.groupby('region')['units'].sum()\nprint(units)\n"
    feed(view, proposal_turn(1, code))
    task = await _waiting(view, ApprovalRequest(kind="step", step=1, text="", code=code))
    approve = find_button(view, "Approve & run")
    await click(view, "Edit")
    assert approve.disabled, "one click beside 'Run edited' would run the unedited code"
    (editor,) = [w for w in walk(view.widget) if isinstance(w, widgets.Textarea)]
    assert editor.rows == 3  # the code's two lines and one to grow into
    assert "agentnb-edit-code" in classes(editor)  # the extension gives it CodeMirror
    await click(view, "Cancel")
    assert not approve.disabled
    await click(view, "Reject")
    assert approve.disabled
    await click(view, "Cancel")
    await click(view, "Approve & run")
    assert await task == Decision.approve()


def test_the_plain_editor_is_sized_to_the_code() -> None:
    assert editor_rows("print(1)") == 2
    assert editor_rows("a = 1\nb = 2\nc = 3\n") == 4
    assert editor_rows("x\n" * 100) == 40


async def test_reject_returns_the_feedback() -> None:
    view = ChatView("t")
    feed(view, proposal_turn(1, "print(1)"))
    task = await _waiting(view, ApprovalRequest(kind="step", step=1, text="", code="print(1)"))
    await click(view, "Reject")
    (box,) = [w for w in walk(view.widget) if isinstance(w, widgets.Textarea)]
    box.value = "Use a log scale."
    await click(view, "Send feedback")
    assert await task == Decision.reject("Use a log scale.")
    assert "you rejected step 1" in shown(view.widget)
    assert "Use a log scale." in shown(view.widget)


async def test_the_final_report_is_accepted_or_sent_back() -> None:
    view = ChatView("t")
    view.handle(MessagePosted(message=FinalReport(sender="analyst", text="It is 42.")))
    request = ApprovalRequest(kind="final", step=None, text="It is 42.")
    task = await _waiting(view, request)
    labels = [
        w.description
        for w in walk(by_class(view, "agentnb-approval")[0])
        if isinstance(w, widgets.Button)
    ]
    assert labels == ["Accept", "Reject"]
    await click(view, "Accept")
    assert await task == Decision.approve()


async def test_a_request_with_no_card_gets_one() -> None:
    view = ChatView("t")
    task = await _waiting(
        view, ApprovalRequest(kind="step", step=4, text="Plot it.", code="df.plot()")
    )
    (card,) = cards(view)
    assert "Plot it." in shown(card)
    assert '<span class="n">plot</span>' in shown(card)
    await click(view, "Stop", "agentnb-stop")
    assert await task == Decision.stop()


async def test_a_cancelled_wait_takes_the_buttons_away() -> None:
    view = ChatView("t")
    feed(view, proposal_turn(1, "print(1)"))
    task = await _waiting(view, ApprovalRequest(kind="step", step=1, text="", code="print(1)"))
    assert find_button(view, "Approve & run") is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert find_button(view, "Approve & run") is None
    assert by_class(view, "agentnb-approval") == []


async def test_the_header_stop_answers_a_waiting_approval_and_tells_the_magic() -> None:
    view = ChatView("t")
    stops: list[bool] = []
    view.on_stop = lambda: stops.append(True)
    feed(view, proposal_turn(1, "print(1)"))
    task = await _waiting(view, ApprovalRequest(kind="step", step=1, text="", code="print(1)"))
    await click(view, "Stop", "agentnb-stop")
    assert await task == Decision.stop()
    assert stops == [True]


# --- a long conversation ---------------------------------------------------------------------


def test_a_hundred_step_conversation_renders() -> None:
    view = ChatView("A long analysis", clock=Clock())
    feed(view, a_step(1))
    first = cards(view)[0]
    touched: list[Any] = []
    for w in walk(first):
        w.observe(lambda change: touched.append(change), names=["value", "children"])
    for number in range(2, 101):
        feed(view, a_step(number))
    feed(view, the_end())
    assert touched == []  # an old card is never rendered again
    all_cards = cards(view)
    assert len(all_cards) == 101
    assert "proposes step 100" in shown(all_cards[99])
    assert "you approved step 100" in shown(all_cards[99])
    assert "final report" in shown(all_cards[100])
    assert "100 steps ran" in shown(by_class(view, "agentnb-end")[0])
    no_display_errors(view)


# --- whole runs in a real kernel ---------------------------------------------------------------

DEMO = resources.files("agentnb") / "demo"


async def test_the_demo_analysis_approved_click_by_click(start: Start) -> None:
    run = await start(  # the replies and data of `agentnb demo`
        task="Which region grew fastest in 2024?",
        model=ScriptedModel(str(DEMO / "replies.yaml")),
        data=str(DEMO / "sales.csv"),
    )
    for _ in range(3):
        await click(run.view, "Approve & run")
    await click(run.view, "Accept")
    result = await run.result()
    assert result.ok, result.stop_reason
    view = run.view
    assert view.phase == "done"
    names = [shown(card).split('class="agentnb-agent">')[1].split("<")[0] for card in cards(view)]
    assert names == ["data", "analyst", "analyst", "analyst", "analyst", "analyst"]
    everything = shown(view.widget)
    assert "loaded sales" in everything
    assert everything.count("you approved step") == 3
    assert "you accepted the report" in everything
    assert everything.count('<table class="dataframe">') >= 3  # head, monthly, summary
    assert '<img src="data:image/png;base64,' in everything  # the monthly chart
    assert "South grew fastest in 2024." in everything
    header = shown(by_class(view, "agentnb-header")[0])
    assert "analyst</span> ~" in header  # scripted replies: estimated tokens
    assert "critic</span> ~" in header
    assert find_button(view, "Approve & run") is None
    no_display_errors(view)


async def test_edited_code_is_what_runs(start: Start) -> None:
    run = await start(
        {"analyst": [step("print('as proposed')"), "Done."], "critic": ["APPROVE", "APPROVE"]}
    )
    await click(run.view, "Edit")
    await asyncio.sleep(0)
    (editor,) = [w for w in walk(run.view.widget) if isinstance(w, widgets.Textarea)]
    editor.value = "print('edited in the widget')"
    await click(run.view, "Run edited")
    await click(run.view, "Accept")
    result = await run.result()
    (only,) = result.steps
    assert only.code == "print('edited in the widget')"
    assert only.execution.stdout == "edited in the widget\n"
    card = shown(cards(run.view)[0])
    assert "you edited step 1" in card
    assert "your edit, as it ran" in card
    assert "edited in the widget" in card


async def test_rejection_feedback_reaches_the_analyst(start: Start) -> None:
    run = await start(
        {
            "analyst": [step("print('linear')"), step("print('log')"), "Done."],
            "critic": ["APPROVE", "APPROVE", "APPROVE"],
        }
    )
    await click(run.view, "Reject")
    await asyncio.sleep(0)
    (box,) = [w for w in walk(run.view.widget) if isinstance(w, widgets.Textarea)]
    box.value = "Use a log scale instead."
    await click(run.view, "Send feedback")
    await click(run.view, "Approve & run")
    await click(run.view, "Accept")
    result = await run.result()
    assert [s.code for s in result.steps] == ["print('log')"]
    assert "Use a log scale instead." in run.prompts("analyst")[1]
    rejected, ran, _report = cards(run.view)
    assert "you rejected step 1" in shown(rejected)
    assert "Use a log scale instead." in shown(rejected)
    assert "agentnb-superseded" in classes(rejected)
    assert "revises step 1" in shown(ran)


async def test_stop_ends_the_run_as_the_users_choice(start: Start) -> None:
    run = await start({"analyst": [step("print('never')")], "critic": ["APPROVE"]})
    for _ in range(3000):  # until the run waits for a decision
        if find_button(run.view, "Approve & run") is not None:
            break
        await asyncio.sleep(0.01)
    await click(run.view, "Stop", "agentnb-stop")
    result = await run.result()
    assert result.stop_reason.kind == "user_stop"
    assert result.steps == ()
    assert run.view.phase == "stopped"
    assert "you stopped the run at step 1" in shown(run.view.widget)
    assert find_button(run.view, "Approve & run") is None


# --- the static copy of the chat ----------------------------------------------------------------

HOSTILE = (
    {"output_type": "display_data", "data": {"application/javascript": "window.pwned = 1"}},
    {
        "output_type": "display_data",
        "data": {
            "text/html": '<b>totals</b><img src="https://evil.example/x.png" onerror="pwn()">'
            "<script>pwn()</script>",
            "text/plain": "totals",
        },
    },
)


def test_the_static_chat_is_the_widget_as_plain_html_with_nothing_that_runs() -> None:
    view = ChatView("Which <b>region</b>?")
    request = ApprovalRequest(kind="step", step=2, text="", code="print(2)")
    feed(
        view,
        [
            RunStarted(task="t", models={"analyst": "m"}, approve="each", data=(), run_id="r-1"),
            *a_step(1),
            *proposal_turn(2, "print(2)", why="A <script>pwn()</script> idea."),
            *review_turn(2, "revise", "Use **units**."),
            ApprovalRequested(request=request),
            ApprovalDecided(request=request, decision=Decision.reject("Plot it instead.")),
            *executed(3, "display(x)", HOSTILE),
            *the_end(),
        ],
    )
    view.step_inserted(1, "cell-1")
    html = view.static_html()
    # the chat as the widget shows it: reviews, the user's feedback, the report
    assert html.startswith('<div class="agentnb agentnb-static agentnb-static-r-1">')
    assert "Use <strong>units</strong>." in html
    assert "Plot it instead." in html
    assert "It is <strong>42</strong>." in html
    assert "the final report was approved" in html
    # the folded step: its line, and the rest behind a click
    assert re.search(
        r'<details class="[^"]*agentnb-fold-static"><summary class="agentnb-fold">', html
    )
    assert "agentnb-jump agentnb-to-cell-1" in html
    # styled where <style> is kept; no buttons, no editors, nothing live
    assert "<style>" in html
    assert ".agentnb .agentnb-card" in html
    assert "<button" not in html
    assert not re.search(r'class="[^"]*agentnb-live', html)
    # and nothing that runs or fetches
    lowered = html.lower()
    assert "<script" not in lowered
    assert "onerror" not in lowered
    assert "evil.example" not in lowered
    assert "javascript" not in lowered.replace("application/javascript", "")
    assert "@import" not in lowered
    assert "url(" not in lowered


def test_the_live_widget_hides_its_own_static_copy() -> None:
    view = ChatView("t")
    view.handle(RunStarted(task="t", models={}, approve="never", data=(), run_id="r-2"))
    assert "agentnb-live-r-2" in classes(view.widget)
    style = by_class(view, "agentnb-style")[0].value
    assert "body:has(.agentnb-live-r-2) .agentnb-static-r-2 { display: none; }" in style


def test_a_running_step_has_a_place_for_its_output_as_it_comes() -> None:
    # the card's "live" part: what the managed kernel prints while a step runs goes here
    # (appended as it comes), and the finished run replaces it
    view = ChatView("t")
    feed(view, [*proposal_turn(1, "print(1)"), ExecutionStarted(step=1, code="print(1)")])
    (card,) = cards(view)
    turn = view._ran[1]
    turn.append_live('<pre class="agentnb-out-stream">first</pre>')
    turn.append_live('<pre class="agentnb-out-stream">second</pre>')
    (live,) = by_class(view, "agentnb-running-output")
    assert live.value.index("first") < live.value.index("second")
    parts = [classes(c) for c in card.children]
    assert parts.index(("agentnb-running-output",)) < parts.index(("agentnb-execution",))
    execution = Execution(code="print(1)", status="ok", outputs=(), execution_count=1, duration=1)
    view.handle(ExecutionFinished(step=1, execution=execution))
    assert by_class(view, "agentnb-running-output") == []


def test_a_running_steps_output_and_clock_show_until_it_has_run() -> None:
    view = ChatView("Q?")
    code = "for i in range(3): print('tick', i)"
    events = [*proposal_turn(1, code), *review_turn(1), *executed(1, code)]
    started = next(i for i, e in enumerate(events) if isinstance(e, ExecutionStarted))
    feed(view, events[: started + 1])
    tick = {"output_type": "stream", "name": "stdout", "text": "tick 0\ntick 1\n"}
    view.handle(ExecutionOutput(step=1, outputs=(tick,), elapsed=12.5))
    now = shown(view.widget)
    assert "running · 12" in now
    assert "tick 1" in now
    hostile = {"output_type": "display_data", "data": {"text/html": "<script>x()</script>"}}
    view.handle(ExecutionOutput(step=1, outputs=(tick, hostile), elapsed=13.0))
    assert "<script" not in shown(view.widget)  # sanitised as every output is
    feed(view, events[started + 1 :])
    assert "running ·" not in shown(view.widget)  # the finished step shows instead
