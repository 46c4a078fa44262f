"""agentnb's OpenAI client and a whole run against llama.cpp's ``llama-server``, a real
OpenAI-compatible server that nobody here wrote, serving Gemma 3 270M (``llama.py``).

A 270M base model does not follow the analyst's protocol, so what is asserted is what
must hold whatever it says: streaming, the server's own token counts, cut replies
reported as cut, reasoning fields, stops, a server still loading, a context too small.

What this llama-server does with ``tools`` (agentnb sends none yet, so no test): with
:data:`~tests.models.llama.GEMMA_TEMPLATE`, which has no tool support (``/props`` says
``supports_tools: false``), it accepts the request, leaves the tools out of the prompt
and answers in plain content. With a template that has tools (Qwen 2.5's) they go into
the prompt and replies are parsed for calls (this model makes none). With
``--no-jinja`` it refuses them with HTTP 500 "tools param requires --jinja flag", a 500
that no retry will change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentnb import ManagedKernel
from agentnb.chat.events import Event, ModelCalled, Notice, RunFinished, TokenDelta
from agentnb.chat.protocol.reasoning import split_reasoning
from agentnb.chat.termination import StopReason
from agentnb.chat.transcript import read_transcript
from agentnb.errors import ModelError
from agentnb.models.base import ChatMessage
from agentnb.models.openai_compat import OpenAIModel
from agentnb.run import arun

from .conftest import Llamas
from .llama import ALIAS, THINKING_TEMPLATE, LlamaServer

pytestmark = pytest.mark.llama

Connect = Callable[..., OpenAIModel]

PROMPT = (
    ChatMessage("system", "You are a careful analyst. Answer in one short sentence."),
    ChatMessage("user", "A table has the columns region and revenue. What could we ask of it?"),
)


class Notes:
    """Collects on_delta / on_notice calls."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.notices: list[str] = []

    def delta(self, text: str) -> None:
        self.deltas.append(text)

    def notice(self, text: str) -> None:
        self.notices.append(text)


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``connect(server, **options)``: agentnb's client of a llama-server, closed after
    the test. Its retries really wait: a loading server needs the time."""
    made: list[OpenAIModel] = []

    def make(server: LlamaServer, **options: Any) -> OpenAIModel:
        model = OpenAIModel(ALIAS, base_url=server.base_url, **options)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


# -- one call --------------------------------------------------------------------------


async def test_the_reply_streams_in_deltas(llama: Llamas, connect: Connect) -> None:
    notes = Notes()
    reply = await connect(llama.ready(), max_tokens=24).complete(
        PROMPT, role="analyst", on_delta=notes.delta, on_notice=notes.notice
    )
    assert len(notes.deltas) > 1
    assert "".join(notes.deltas) == reply.text
    assert reply.text.strip()
    assert not reply.text.startswith("<think>")  # no reasoning from a plain template
    assert reply.model == ALIAS
    assert reply.finish_reason in ("stop", "length")
    assert notes.notices == []


async def test_usage_is_the_servers_own_count(llama: Llamas, connect: Connect) -> None:
    server = llama.ready()
    reply = await connect(server, max_tokens=24).complete(PROMPT, role="analyst")
    usage = reply.usage
    assert not usage.estimated
    assert usage.calls == 1
    # the tokens of the prompt the server built from the messages with its template
    built = server.post("/apply-template", {"messages": [m.to_openai() for m in PROMPT]})
    tokens = server.post(
        "/tokenize", {"content": built["prompt"], "add_special": True, "parse_special": True}
    )["tokens"]
    assert isinstance(tokens, list)
    assert usage.prompt_tokens == len(tokens)
    assert 1 <= usage.completion_tokens <= 24


async def test_a_reply_cut_by_max_tokens_is_reported_as_cut(
    llama: Llamas, connect: Connect
) -> None:
    reply = await connect(llama.ready(), max_tokens=3).complete(PROMPT, role="analyst")
    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 3
    assert reply.text


async def test_reasoning_fields_become_a_folded_think_block(
    llama: Llamas, connect: Connect
) -> None:
    # a template that opens a thinking block: the server streams reasoning_content
    server = llama.ready(template=THINKING_TEMPLATE, args=("--reasoning-format", "deepseek"))
    notes = Notes()
    reply = await connect(server, max_tokens=12).complete(
        PROMPT, role="analyst", on_delta=notes.delta
    )
    assert notes.deltas[0] == "<think>\n"
    assert "".join(notes.deltas) == reply.text
    thought, answer = split_reasoning(reply.text)
    assert thought.strip()
    assert answer.strip() == ""  # the model never closed its thinking: no answer to use
    assert reply.text.endswith("\n</think>\n")
    assert reply.finish_reason == "length"
    assert not reply.usage.estimated


# -- failures ----------------------------------------------------------------------------


async def test_a_server_still_loading_is_waited_for(llama: Llamas, connect: Connect) -> None:
    server = llama.start()
    try:
        server.wait(503)  # listening, still loading the model
        # asked again at once (no real wait), so that the model is still loading
        impatient = connect(server, first_token_timeout=0.5, sleep=lambda _: asyncio.sleep(0))
        with pytest.raises(ModelError) as caught:
            await impatient.complete(PROMPT, role="analyst")
        message = str(caught.value)
        assert "HTTP 503: Loading model" in message
        assert f"{server.base_url} was still loading the model" in message
        # the wait for a loading model is not a retry: none is spent, one notice
        notes = Notes()
        patient = connect(server, max_tokens=4, max_retries=0)
        reply = await patient.complete(PROMPT, role="analyst", on_notice=notes.notice)
        assert reply.text
        assert notes.notices == [
            f"{server.base_url} is loading the model; waiting up to 300 s (--first-token-timeout)"
        ]
    finally:
        server.stop()


LONG = (ChatMessage("user", "Describe the columns region, month and revenue. " * 60),)


async def test_a_prompt_longer_than_the_context_is_a_clear_model_error(
    llama: Llamas, connect: Connect, shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    server = llama.ready(ctx=256)
    notes = Notes()
    with pytest.raises(ModelError) as caught:
        await connect(server).complete(LONG, role="analyst", on_notice=notes.notice)
    message = str(caught.value)
    assert "exceeds the available context size (256 tokens)" in message
    assert server.base_url in message
    assert notes.notices == []  # a refusal that waiting will not change is not retried
    # a prompt that fits leaves the reply what is left of the context: cut, and said so
    reply = await connect(server).complete(
        (ChatMessage("user", "one two three " * 50),), role="analyst"
    )
    assert reply.finish_reason == "length"
    assert reply.usage.total_tokens <= 256
    # a run whose prompts do not fit ends with the reason, not a traceback
    result = await arun(
        "Which region sold most? " * 40,
        model=ALIAS,
        base_url=server.base_url,
        kernel=shared_kernel,
        transcript=tmp_path / "run.jsonl",
    )
    assert result.stop_reason.kind == "model_error"
    assert "context size (256 tokens)" in result.stop_reason.message


# -- whole runs --------------------------------------------------------------------------


async def test_a_stop_mid_reply_ends_the_call_and_the_generation(
    llama: Llamas, shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    server = llama.ready()
    stop = asyncio.Event()
    deltas: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, TokenDelta):
            deltas.append(event.text)
            stop.set()

    result = await asyncio.wait_for(
        arun(
            "Describe a sales table at length.",
            model=ALIAS,
            base_url=server.base_url,
            kernel=shared_kernel,
            max_tokens=4000,  # minutes of writing at this speed, unless the stop ends it
            transcript=tmp_path / "run.jsonl",
            on_event=on_event,
            stop=stop,
        ),
        60,
    )
    assert deltas
    assert result.stop_reason.kind == "user_stop"
    # the abandoned call is counted, as an estimate of what was sent and streamed
    (usage,) = result.usage.values()
    assert (usage.calls, usage.estimated) == (1, True)
    assert usage.prompt_tokens > 0
    # the closed stream stops the server too: it does not write on for nobody
    deadline = time.monotonic() + 10
    while server.busy():
        assert time.monotonic() < deadline, "llama-server still generates after the stop"
        await asyncio.sleep(0.1)


async def test_replies_cut_by_max_tokens_are_never_used(
    llama: Llamas, shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    events: list[Event] = []
    result = await arun(
        "Which region sold most?",
        model=ALIAS,
        base_url=llama.ready().base_url,
        kernel=shared_kernel,
        max_tokens=4,
        transcript=tmp_path / "run.jsonl",
        on_event=events.append,
    )
    reason = result.stop_reason
    assert reason.kind == "protocol"
    assert "cut off at the token limit" in reason.message
    assert result.steps == ()
    assert any(isinstance(e, Notice) and "cut off at the token limit" in e.text for e in events)
    analyst = result.usage["analyst"]
    assert (analyst.calls, analyst.completion_tokens) == (2, 8)  # the cut calls count
    assert not analyst.estimated


async def test_a_whole_run_ends_with_a_reason_and_counts_every_call(
    llama: Llamas, tmp_path: Path
) -> None:
    sales = tmp_path / "sales.csv"
    sales.write_text("region,month,revenue\nNorth,1,10\nSouth,1,12\nNorth,2,20\nSouth,2,9\n")
    # Gemma's <end_of_turn> (token 106) made likelier: a base model's replies then end
    # now and again, so the critic gets turns too; what is asserted holds either way
    server = llama.ready(args=("--logit-bias", "106+18"))
    events: list[Event] = []
    result = await asyncio.wait_for(
        arun(
            "Which region had the most revenue?",
            data=sales,
            model=ALIAS,
            base_url=server.base_url,
            approve="never",
            max_turns=4,
            max_tokens=96,
            transcript=tmp_path / "run.jsonl",
            on_event=events.append,
        ),  # the managed kernel in its default sandbox
        180,
    )
    reason = result.stop_reason
    assert isinstance(reason, StopReason)
    # whatever the model said: no failure of agentnb, the kernel or the endpoint
    assert reason.kind not in ("error", "kernel_error", "model_error", "user_stop"), reason
    # every call counted, per agent, with the server's own figures
    calls = [e for e in events if isinstance(e, ModelCalled)]
    assert calls
    for agent, usage in result.usage.items():
        mine = [c.usage for c in calls if c.agent == agent]
        assert usage.calls == len(mine) > 0
        assert usage.prompt_tokens == sum(u.prompt_tokens for u in mine) > 0
        assert usage.completion_tokens == sum(u.completion_tokens for u in mine)
        assert not usage.estimated
    assert {c.agent for c in calls} == set(result.usage)
    assert all(c.model == ALIAS for c in calls)
    # the transcript holds the whole run, ending with its reason
    assert result.transcript_path is not None
    written = list(read_transcript(result.transcript_path))
    assert len(written) == len(events)
    last = written[-1]
    assert isinstance(last, RunFinished)
    assert last.reason == reason
