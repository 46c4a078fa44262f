"""Native tool calls: the analyst calls run_step / final_report, the critic review,
through the real ``openai`` client, a loopback server and a real kernel; and the
move to the text protocol when an endpoint refuses tools."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentnb import ConfigError, ManagedKernel
from agentnb.chat.events import Event, ModelCalled, Notice, TokenDelta
from agentnb.chat.group import RunResult
from agentnb.chat.transcript import read_transcript
from agentnb.models.base import ChatMessage, ToolsRefused
from agentnb.models.cache import ReplayModel
from agentnb.models.openai_compat import OpenAIModel
from agentnb.models.scripted import ScriptedModel
from agentnb.models.server import Reply, ScriptedServer, call
from agentnb.run import arun

STEP = call("run_step", why="Sum them.", code="print(sum([1, 2, 3]))")
REPORT = call("final_report", report="The sum is **6**.")
APPROVE = call("review", verdict="approve", comments="Fine.")


def tool_names(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", ())]


async def analyse(
    model: OpenAIModel, kernel: ManagedKernel, tmp_path: Path, **options: Any
) -> tuple[list[Event], RunResult]:
    events: list[Event] = []
    result = await arun(
        "Add up 1, 2 and 3.",
        model=model,
        kernel=kernel,
        transcript=tmp_path / "t.jsonl",
        on_event=events.append,
        **options,
    )
    return events, result


async def test_a_run_of_tool_calls_runs_the_step_and_approves_the_report(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(STEP, APPROVE, REPORT, APPROVE)
    events, result = await analyse(make_model(srv), shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    assert result.final_report == "The sum is **6**."
    assert result.steps[0].code == "print(sum([1, 2, 3]))"
    assert result.steps[0].rationale == "Sum them."
    assert result.steps[0].execution.stdout == "6\n"
    # each role was offered its own tools, and had to call one
    assert [tool_names(r) for r in srv.requests] == [
        ["run_step", "final_report"],
        ["review"],
        ["run_step", "final_report"],
        ["review"],
    ]
    assert {r["tool_choice"] for r in srv.requests} == {"required"}
    assert "call run_step" in srv.requests[0]["messages"][0]["content"]
    # the code streamed into the card as the arguments arrived, in a fence
    shown = "".join(e.text for e in events if isinstance(e, TokenDelta) and e.agent == "analyst")
    assert "```python\nprint(sum([1, 2, 3]))\n```" in shown
    # the transcript keeps each call in the text protocol, so a replay reads it
    called = [e.text for e in events if isinstance(e, ModelCalled)]
    assert called[0] == "Sum them.\n\n```python\nprint(sum([1, 2, 3]))\n```"
    assert called[1] == "APPROVE\n\nFine."


async def test_a_replay_of_a_tool_call_run_gives_the_same_analysis(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(STEP, APPROVE, REPORT, APPROVE)
    _, first = await analyse(make_model(srv), shared_kernel, tmp_path)
    assert first.transcript_path is not None
    again = await arun(
        "Add up 1, 2 and 3.",
        model=ReplayModel(first.transcript_path),
        kernel=shared_kernel,
        transcript=tmp_path / "replayed.jsonl",
    )
    assert again.ok, again.stop_reason
    assert [s.code for s in again.steps] == [s.code for s in first.steps]
    assert again.final_report == first.final_report


async def test_a_revise_call_sends_the_analyst_back(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    revise = call("review", verdict="revise", comments="Use the built-in sum on a tuple.")
    fixed = call("run_step", why="As asked.", code="print(sum((1, 2, 3)))")
    srv = server(STEP, revise, fixed, APPROVE, REPORT, APPROVE)
    _, result = await analyse(make_model(srv), shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    assert [s.code for s in result.steps] == ["print(sum((1, 2, 3)))"]
    assert "Use the built-in sum on a tuple." in json.dumps(srv.requests[2]["messages"])


@pytest.mark.parametrize(
    "bad",
    [
        call("review", verdict="approve with changes", comments="Mostly fine."),
        Reply("", calls=(("review", '{"verdict": "approve", "comm'),)),  # cut JSON
        call("review", comments="No verdict at all."),
        call("run_step", why="Wrong tool.", code="print(1)"),
    ],
)
async def test_a_call_that_is_not_a_clean_verdict_is_never_an_approval(
    bad: Reply,
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(STEP, bad, bad)
    events, result = await analyse(make_model(srv), shared_kernel, tmp_path)
    assert result.stop_reason.kind == "protocol"
    assert result.steps == ()  # nothing ran unreviewed
    assert len(srv.requests) == 3  # one correction, then a clean stop
    assert any("protocol" in e.text for e in events if isinstance(e, Notice))


async def test_an_endpoint_without_tools_gets_the_text_protocol_said_once(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    text_step = "Sum them.\n\n```python\nprint(sum([1, 2, 3]))\n```"
    srv = server(text_step, "APPROVE", "The sum is 6.", "APPROVE", tools=False)
    model = make_model(srv)
    events, result = await analyse(model, shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    assert result.steps[0].execution.stdout == "6\n"
    # one request offered tools and was refused; every later one was in text
    assert [bool(tool_names(r)) for r in srv.requests] == [True] + [False] * 4
    assert "call run_step" not in srv.requests[1]["messages"][0]["content"]
    notices = [e.text for e in events if isinstance(e, Notice)]
    said = [n for n in notices if "does not take tool calls" in n]
    assert len(said) == 1
    assert "analyst, critic now reply in the text protocol" in said[0]
    assert "does not support tools" in said[0]  # the server's own words
    # remembered: a new client for that endpoint and model offers none
    assert not make_model(srv).takes_tools


async def test_a_refusal_of_tools_is_raised_by_the_client(
    server: Callable[..., ScriptedServer], make_model: Callable[..., OpenAIModel]
) -> None:
    srv = server("hello", tools=False, models=("refuser",))
    model = make_model(srv, model="refuser")
    assert model.takes_tools
    with pytest.raises(ToolsRefused, match="does not take tool calls for refuser"):
        await model.complete(
            [ChatMessage("user", "hi")], role="analyst", tools=[{"type": "function"}]
        )
    assert not model.takes_tools
    reply = await model.complete([ChatMessage("user", "hi")], role="analyst")
    assert reply.text == "hello"


async def test_protocol_text_offers_no_tools(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    text_step = "Sum them.\n\n```python\nprint(sum([1, 2, 3]))\n```"
    srv = server(text_step, "APPROVE", "The sum is 6.", "APPROVE")
    _, result = await analyse(make_model(srv), shared_kernel, tmp_path, protocol="text")
    assert result.ok, result.stop_reason
    assert not any("tools" in r for r in srv.requests)


async def test_protocol_tools_with_a_model_that_takes_none_is_a_config_error(
    shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="takes no tool calls"):
        await arun(
            "Q?",
            model=ScriptedModel({"analyst": ["x"], "critic": ["APPROVE"]}),
            kernel=shared_kernel,
            protocol="tools",
            transcript=tmp_path / "t.jsonl",
        )
    assert not (tmp_path / "t.jsonl").exists() or not list(read_transcript(tmp_path / "t.jsonl"))


def test_streamed_arguments_show_as_text_whatever_the_cuts() -> None:
    from agentnb.models.arguments import ArgumentStream

    raw = json.dumps({"why": 'Count "rows".', "code": "x = 1\nprint(x)\t# ünï"})
    for size in (1, 2, 3, 7, len(raw)):
        stream = ArgumentStream("run_step")
        shown = "".join(stream.feed(raw[i : i + size]) for i in range(0, len(raw), size))
        assert shown == 'Count "rows".\n\n```python\nx = 1\nprint(x)\t# ünï\n```', size
