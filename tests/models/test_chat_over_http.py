"""Whole runs through the real ``openai`` client against a loopback server, with a
real managed kernel: what a user with a flaky or sloppy endpoint experiences."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from agentnb import ManagedKernel
from agentnb.chat.events import Event, ModelCalled, Notice, TokenDelta
from agentnb.chat.group import RunResult
from agentnb.models.openai_compat import OpenAIModel
from agentnb.models.server import Hang, Reply, ScriptedServer, Status
from agentnb.run import arun
from agentnb.ui.widget import ChatView

from ..ui.conftest import walk
from .conftest import SleepRecorder

STEP = "Sum them.\n\n```python\nprint(sum([1, 2, 3]))\n```"


async def run_with(
    model: OpenAIModel, kernel: ManagedKernel, tmp_path: Path
) -> tuple[list[Event], RunResult]:
    events: list[Event] = []
    result = await arun(
        "Add up 1, 2 and 3.",
        model=model,
        kernel=kernel,
        transcript=tmp_path / "t.jsonl",
        on_event=events.append,
    )
    return events, result


async def test_a_run_over_http_streams_counts_and_survives_a_429(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    sleeps: SleepRecorder,
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(
        Reply(STEP, usage=(120, 15)),
        Status(429, retry_after=2),
        Reply("APPROVE", usage=(200, 1)),
        Reply("The sum is 6.", usage=(300, 5)),
        Status(500),
        Reply("APPROVE, 6 is what the step printed.", usage=(310, 8)),
    )
    events, result = await run_with(make_model(srv), shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    assert result.steps[0].execution.stdout == "6\n"
    # the server's own counts, per agent
    usage = result.usage
    assert (usage["analyst"].prompt_tokens, usage["analyst"].completion_tokens) == (420, 20)
    assert (usage["critic"].prompt_tokens, usage["critic"].calls) == (510, 2)
    assert not usage["critic"].estimated
    # the retries were announced and honoured Retry-After
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert any("429" in n and "retrying in 2" in n for n in notices)
    assert any("500" in n for n in notices)
    assert sleeps.delays[0] == 2
    assert "".join(e.text for e in events if isinstance(e, TokenDelta) and e.agent == "analyst")
    # the prompts reached the server: the critic saw the proposed code
    critic_prompt = srv.requests[2]["messages"][-1]["content"]
    assert "print(sum([1, 2, 3]))" in critic_prompt
    assert [e.agent for e in events if isinstance(e, ModelCalled)] == [
        "analyst",
        "critic",
        "analyst",
        "critic",
    ]


async def test_an_unreachable_endpoint_ends_the_run_naming_the_url(
    make_model: Callable[..., OpenAIModel],
    closed_port: int,
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    _, result = await run_with(make_model(url, max_retries=1), shared_kernel, tmp_path)
    reason = result.stop_reason
    assert reason.kind == "model_error"
    assert url in reason.message


async def test_a_hanging_server_ends_the_run_with_a_timeout(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(Hang(30))
    model = make_model(srv, timeout=0.5, first_token_timeout=0.5, max_retries=0)
    _, result = await run_with(model, shared_kernel, tmp_path)
    reason = result.stop_reason
    assert reason.kind == "model_error"
    assert "0.5" in reason.message


async def test_a_model_that_ignores_the_protocol_is_corrected_then_stopped(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(
        Reply("The sum is 6."),
        Reply("Sure! Happy to help."),
        Reply("Great job, nice work."),
    )
    _, result = await run_with(make_model(srv), shared_kernel, tmp_path)
    reason = result.stop_reason
    assert reason.kind == "protocol"
    correction = srv.requests[2]["messages"][-1]["content"]
    assert "APPROVE or REVISE" in correction


async def test_cost_per_agent_from_the_price_table(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    srv = server(
        Reply("It is 6.", usage=(1_000_000, 0)),
        Reply("APPROVE", usage=(0, 1_000_000)),
        models=("gpt-4o-mini-2024-07-18",),
    )
    model = make_model(srv, model="gpt-4o-mini-2024-07-18")
    _, result = await run_with(model, shared_kernel, tmp_path)
    assert result.ok
    assert result.costs == {"analyst": 0.15, "critic": 0.60}
    assert result.cost == 0.75


async def test_every_call_is_bounded_and_a_cut_step_never_runs(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    cut = "Sum them.\n\n```python\nimport shutil\nshutil.rmtree('data')  # then copy it back, in\n"
    srv = server(
        Reply(cut, finish_reason="length", usage=(100, 512)),
        Reply(STEP),
        Reply("APPROVE"),
        Reply("The sum is 6."),
        Reply("APPROVE"),
    )
    events, result = await run_with(make_model(srv, max_tokens=512), shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    assert [s.code for s in result.steps] == ["print(sum([1, 2, 3]))"]  # the cut one never ran
    assert all(body["max_tokens"] == 512 for body in srv.requests)
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert "analyst's reply was cut off at the token limit; asking for a shorter one" in notices
    correction = srv.requests[1]["messages"][-1]["content"]
    assert "cut off at the token limit" in correction
    assert "shorter" in correction
    assert result.usage["analyst"].completion_tokens >= 512  # the cut call is counted


async def test_a_server_that_wants_max_completion_tokens_gets_it(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    refusal = {
        "error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this "
            "model. Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    }
    srv = server(Status(400, body=refusal), Reply("The sum is 6."), Reply("APPROVE"))
    _, result = await run_with(make_model(srv), shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    assert "max_tokens" in srv.requests[0]
    assert [("max_tokens" in b, b.get("max_completion_tokens")) for b in srv.requests[1:]] == [
        (False, 8192),
        (False, 8192),
    ]


async def test_max_tokens_is_an_option_of_the_run(
    server: Callable[..., ScriptedServer], shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    srv = server(Reply("The sum is 6."), Reply("APPROVE"))
    result = await arun(
        "Add up 1, 2 and 3.",
        model="scripted",
        base_url=srv.base_url,
        max_tokens=300,
        kernel=shared_kernel,
        transcript=tmp_path / "t.jsonl",
    )
    assert result.ok, result.stop_reason
    assert [body["max_tokens"] for body in srv.requests] == [300, 300]


async def test_a_reasoning_field_is_folded_never_run_and_never_resent(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    tmp_path: Path,
) -> None:
    draft = "Maybe:\n```python\nimport os\nprint(os.listdir('/'))\n```\nNo, just sum them."
    srv = server(
        Reply(STEP, reasoning=draft),
        Reply("APPROVE", reasoning="The step prints the sum; fine."),
        Reply("The sum is 6.", reasoning="Step 1 printed 6."),
        Reply("APPROVE"),
    )
    view = ChatView("Add up 1, 2 and 3.")
    result = await arun(
        "Add up 1, 2 and 3.",
        model=make_model(srv),
        kernel=shared_kernel,
        transcript=tmp_path / "t.jsonl",
        on_event=view.handle,
    )
    assert result.ok, result.stop_reason
    assert [s.code for s in result.steps] == ["print(sum([1, 2, 3]))"]  # not the draft's
    for body in srv.requests[1:]:  # what later calls sent: no reasoning of earlier ones
        sent = json.dumps(body["messages"])
        assert "os.listdir" not in sent
        assert "Step 1 printed 6" not in sent
        assert "<think>" not in sent
    html = "".join(w.value for w in walk(view.widget) if isinstance(w, widgets.HTML))
    assert html.count('<details class="agentnb-reasoning">') == 3  # folded, per turn
    assert "No, just sum them." in html  # the user can open and read it
    assert "&lt;think&gt;" not in html


async def test_a_call_stopped_midway_is_counted(
    server: Callable[..., ScriptedServer],
    make_model: Callable[..., OpenAIModel],
    shared_kernel: ManagedKernel,
    run_later: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # a model streaming slowly, stopped by the user after a few words
    srv = server(Reply("word " * 200, delay=0.05, chunk=5))
    stop = asyncio.Event()
    run_later(1.0, stop.set)
    events: list[Event] = []
    result = await arun(
        "Add up 1, 2 and 3.",
        model=make_model(srv),
        kernel=shared_kernel,
        transcript=tmp_path / "t.jsonl",
        on_event=events.append,
        stop=stop,
    )
    assert result.stop_reason.kind == "user_stop"
    (called,) = [e for e in events if isinstance(e, ModelCalled)]
    assert called.text.startswith("word word")
    assert called.usage.calls == 1
    assert called.usage.estimated  # the server never sent its count
    assert result.usage["analyst"].prompt_tokens > 0
    assert 0 < result.usage["analyst"].completion_tokens < 200
