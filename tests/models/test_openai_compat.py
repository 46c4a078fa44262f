"""OpenAIModel through the real openai client, against ScriptedServer on 127.0.0.1."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import pytest

from agentnb.errors import ConfigError, ModelError
from agentnb.models.base import ChatMessage, ModelClient, estimate_tokens
from agentnb.models.openai_compat import OpenAIModel, parse_retry_after
from agentnb.models.server import (
    Drop,
    Hang,
    HangMidStream,
    Malformed,
    Reply,
    ScriptedServer,
    Status,
)

from .conftest import SleepRecorder

Server = Callable[..., ScriptedServer]
MakeModel = Callable[..., OpenAIModel]

PROMPT = (
    ChatMessage("system", "You are a careful analyst."),
    ChatMessage("user", "How many rows does the frame have?"),
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


async def ask(model: OpenAIModel, notes: Notes | None = None) -> str:
    notes = notes or Notes()
    reply = await model.complete(
        PROMPT, role="analyst", on_delta=notes.delta, on_notice=notes.notice
    )
    return reply.text


# -- the plain path ----------------------------------------------------------------------


async def test_is_a_model_client(server: Server, make_model: MakeModel) -> None:
    model = make_model(server())
    assert isinstance(model, ModelClient)
    assert model.name == "scripted"


async def test_deltas_stream_in_order_and_join_to_the_reply(
    server: Server, make_model: MakeModel
) -> None:
    text = "The frame has 1,234 rows and 7 columns; two of them hold dates."
    srv = server(Reply(text, chunk=5))
    notes = Notes()
    reply = await make_model(srv).complete(PROMPT, role="analyst", on_delta=notes.delta)
    assert len(notes.deltas) == len(text) // 5 + 1
    assert notes.deltas == [text[i : i + 5] for i in range(0, len(text), 5)]
    assert "".join(notes.deltas) == reply.text == text
    assert reply.finish_reason == "stop"
    assert reply.model == "scripted"
    assert srv.requests[0]["stream"] is True
    assert srv.requests[0]["stream_options"] == {"include_usage": True}


async def test_reply_names_the_model_the_server_reported(
    server: Server, make_model: MakeModel
) -> None:
    srv = server(Reply("ok", model="scripted-2025-01-01", finish_reason="length"))
    reply = await make_model(srv).complete(PROMPT, role="analyst")
    assert reply.model == "scripted-2025-01-01"
    assert reply.finish_reason == "length"


async def test_usage_comes_from_the_server(server: Server, make_model: MakeModel) -> None:
    srv = server(Reply("Seven columns.", usage=(123, 45)))
    reply = await make_model(srv).complete(PROMPT, role="analyst")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (123, 45)
    assert reply.usage.calls == 1
    assert not reply.usage.estimated


async def test_usage_is_estimated_when_the_server_sends_none(
    server: Server, make_model: MakeModel
) -> None:
    text = "Seven columns, no missing values."
    srv = server(Reply(text, usage=False))
    reply = await make_model(srv).complete(PROMPT, role="analyst")
    prompt = "\n".join(str(m.content) for m in PROMPT)
    assert reply.usage.estimated
    assert reply.usage.calls == 1
    assert reply.usage.prompt_tokens == estimate_tokens(prompt)
    assert reply.usage.completion_tokens == estimate_tokens(text)


async def test_prompt_reaches_the_server_intact(server: Server, make_model: MakeModel) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [
        ChatMessage("system", "You are a careful analyst."),
        ChatMessage("user", ({"type": "text", "text": "What does this plot show?"}, image)),
        ChatMessage("assistant", "A rising trend."),
        ChatMessage("user", "And the outliers — «any»?"),
    ]
    srv = server("Two outliers.")
    await make_model(srv, temperature=0.2).complete(messages, role="analyst")
    (body,) = srv.requests
    assert body["messages"] == [m.to_openai() for m in messages]
    assert body["messages"][1]["content"][1] == image
    assert body["model"] == "scripted"
    assert body["temperature"] == 0.2


async def test_a_server_that_rejects_stream_options_is_asked_again_without(
    server: Server, make_model: MakeModel
) -> None:
    refusal = {"error": {"message": "Unrecognized request argument supplied: stream_options"}}
    srv = server(Status(400, body=refusal), "first", "second")
    model = make_model(srv, max_retries=0)
    notes = Notes()
    reply = await model.complete(PROMPT, role="analyst", on_notice=notes.notice)
    assert reply.text == "first"
    assert reply.usage.estimated
    assert len(notes.notices) == 1
    assert "stream_options" in notes.notices[0]
    assert (await model.complete(PROMPT, role="analyst")).text == "second"
    assert ["stream_options" in body for body in srv.requests] == [True, False, False]


# -- retries -----------------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_asks(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(Status(429, retry_after=7), "Done.")
    notes = Notes()
    assert await ask(make_model(srv), notes) == "Done."
    assert sleeps.delays == [7.0]
    assert notes.notices == [
        f"HTTP 429 from {srv.base_url} (rate limited); retrying in 7.0 s (retry 1 of 4)"
    ]


async def test_retry_after_ms_and_http_dates_are_honoured(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    srv = server(
        Status(503, headers=(("retry-after-ms", "250"),)),
        Status(429, retry_after=date),
        "Done.",
    )
    assert await ask(make_model(srv)) == "Done."
    assert sleeps.delays[0] == pytest.approx(0.25)
    assert 27 <= sleeps.delays[1] <= 30


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "20", "retry-after": "9"}) == 0.02
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


async def test_a_retry_after_beyond_the_cap_gives_up_at_once(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(Status(429, retry_after=600), "never sent")
    with pytest.raises(ModelError, match=r"asked to wait 600 s") as caught:
        await ask(make_model(srv, retry_after_cap=60))
    assert srv.base_url in str(caught.value)
    assert sleeps.delays == []
    assert srv.pending == 1


async def test_500_is_retried_with_jittered_backoff(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(Status(500), Status(502), Status(503), "Recovered.")
    notes = Notes()
    model = make_model(srv, backoff_base=2.0, backoff_cap=5.0)
    assert await ask(model, notes) == "Recovered."
    assert len(srv.requests) == 4
    assert len(notes.notices) == 3
    assert all(srv.base_url in n for n in notes.notices)
    assert "HTTP 502" in notes.notices[1]
    assert notes.notices[2].endswith("(retry 3 of 4)")
    for delay, ceiling in zip(sleeps.delays, (2.0, 4.0, 5.0), strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_exhausted_retries_raise_a_model_error_naming_the_url(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(*[Status(503)] * 3, "too late")
    with pytest.raises(ModelError) as caught:
        await ask(make_model(srv, max_retries=2))
    message = str(caught.value)
    assert srv.base_url in message
    assert "HTTP 503" in message
    assert "3 attempts" in message
    assert len(sleeps.delays) == 2
    assert srv.pending == 1


LOADING = Status(
    503, body={"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
)


async def test_a_server_loading_its_model_is_waited_for_without_spending_retries(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(*[LOADING] * 5, "Loaded.")
    notes = Notes()
    assert await ask(make_model(srv, max_retries=0), notes) == "Loaded."
    assert sleeps.delays == [1.0] * 5
    assert notes.notices == [
        f"{srv.base_url} is loading the model; waiting up to 300 s (--first-token-timeout)"
    ]


async def test_a_model_that_takes_longer_to_load_than_the_first_token_timeout_is_an_error(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(*[LOADING] * 5, "too late")
    with pytest.raises(ModelError) as caught:
        await ask(make_model(srv, first_token_timeout=3))
    message = str(caught.value)
    assert message == (
        f"{srv.base_url} was still loading the model after 3 s (HTTP 503: Loading model):"
        " try again once it is ready, or allow longer with --first-token-timeout."
    )
    assert sleeps.delays == [1.0] * 3
    assert srv.pending == 2  # asked four times: the last answers are never asked for


async def test_other_client_errors_are_not_retried(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    body = {"error": {"message": "messages: too many tokens for this model"}}
    srv = server(Status(400, body=body), "never sent")
    with pytest.raises(ModelError, match=r"HTTP 400: messages: too many tokens") as caught:
        await ask(make_model(srv))
    assert srv.base_url in str(caught.value)
    assert sleeps.delays == []


async def test_connection_refused_names_the_url_and_the_fix(
    closed_port: int, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    notes = Notes()
    with pytest.raises(ModelError) as caught:
        await ask(make_model(url, max_retries=4), notes)
    message = str(caught.value)
    assert url in message
    assert "connection refused" in message
    assert "server running" in message
    # the URL was given: that is what to check, not a variable the user did not use
    assert "OPENAI_BASE_URL" not in message
    assert "Check the base URL given (--base-url)." in message
    # nothing listens on that port of this machine: no retries, no waiting
    assert notes.notices == []
    assert sleeps.delays == []


async def test_connection_refused_at_the_environments_url_names_the_variable(
    closed_port: int, sleeps: SleepRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://localhost:{closed_port}/v1")
    model = OpenAIModel("scripted", sleep=sleeps, timeout=5.0)
    try:
        with pytest.raises(ModelError, match="Set OPENAI_BASE_URL or pass the model's base URL"):
            await ask(model)
    finally:
        await model.aclose()
    assert sleeps.delays == []


async def test_a_dropped_connection_is_retried(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(Drop(), "Back.")
    notes = Notes()
    assert await ask(make_model(srv), notes) == "Back."
    assert len(notes.notices) == 1
    assert srv.base_url in notes.notices[0]


async def test_a_hanging_server_times_out(server: Server, make_model: MakeModel) -> None:
    srv = server(Hang(30))
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        await ask(make_model(srv, timeout=0.5, first_token_timeout=0.5, max_retries=0))
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert srv.base_url in message
    assert "within 0.5 s" in message
    assert "timeout" in message


async def test_a_stream_that_stalls_is_retried_and_the_partial_reply_discarded(
    server: Server, make_model: MakeModel
) -> None:
    srv = server(HangMidStream("The frame has ", 30), "It has 12 rows.")
    notes = Notes()
    started = time.monotonic()
    reply = await make_model(srv, timeout=0.5).complete(
        PROMPT, role="analyst", on_delta=notes.delta, on_notice=notes.notice
    )
    assert time.monotonic() - started < 3
    assert reply.text == "It has 12 rows."
    assert "".join(notes.deltas) == "The frame has It has 12 rows."
    (notice,) = notes.notices
    assert "partial reply is discarded" in notice
    assert "within 0.5 s" in notice


async def test_malformed_json_is_retried(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(Malformed(), "Fine now.")
    notes = Notes()
    assert await ask(make_model(srv), notes) == "Fine now."
    (notice,) = notes.notices
    assert "not valid JSON" in notice
    assert len(sleeps.delays) == 1


async def test_persistently_malformed_json_is_a_model_error(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    srv = server(Malformed(), Malformed())
    with pytest.raises(ModelError, match="not valid JSON") as caught:
        await ask(make_model(srv, max_retries=1))
    assert srv.base_url in str(caught.value)
    assert len(srv.requests) == 2


async def test_a_reply_that_is_not_an_event_stream_is_a_model_error(
    server: Server, make_model: MakeModel
) -> None:
    plain = {"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]}
    srv = server(Status(200, body=plain), Status(200, body=plain))
    with pytest.raises(ModelError, match="not a valid chat-completion stream") as caught:
        await ask(make_model(srv, max_retries=1))
    assert srv.base_url in str(caught.value)
    assert len(srv.requests) == 2


# -- errors that are not retried -------------------------------------------------------


async def test_a_wrong_key_is_named_but_not_shown(
    server: Server, make_model: MakeModel, sleeps: SleepRecorder
) -> None:
    key = "sk-test-wrong-0123456789abcdef"
    srv = server("never sent", api_key="sk-test-right-0123456789abcdef")
    with pytest.raises(ModelError) as caught:
        await ask(make_model(srv, api_key=key))
    message = str(caught.value)
    assert "API key" in message
    assert "api_key" in message  # says where the key came from
    assert srv.base_url in message
    assert key not in message
    assert "0123456789abcdef" not in message
    assert sleeps.delays == []
    assert srv.pending == 1


async def test_a_wrong_key_from_the_environment_says_so(
    server: Server, make_model: MakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "local-secret-value-42"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    srv = server("never sent", api_key="another")
    with pytest.raises(ModelError, match="OPENAI_API_KEY") as caught:
        await ask(make_model(srv))
    assert key not in str(caught.value)


async def test_an_unknown_model_is_named(server: Server, make_model: MakeModel) -> None:
    srv = server("never sent", models=("llama3.1:8b", "qwen2.5:7b"))
    with pytest.raises(ModelError) as caught:
        await ask(make_model(srv, "gpt-4o-mini"))
    message = str(caught.value)
    assert "'gpt-4o-mini'" in message
    assert srv.base_url in message
    assert "model name" in message
    assert "llama3.1:8b, qwen2.5:7b" in message  # what the server lists
    assert srv.pending == 1


# -- configuration -----------------------------------------------------------------------


def test_openai_without_a_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini", base_url="https://api.openai.com/v1/")


async def test_a_local_server_needs_no_key(server: Server, make_model: MakeModel) -> None:
    srv = server("Hi.")
    assert await ask(make_model(srv)) == "Hi."


async def test_base_url_and_key_come_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = server("From the environment.", api_key="env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    model = OpenAIModel("scripted")
    try:
        assert model.base_url == srv.base_url
        assert await ask(model) == "From the environment."
    finally:
        await model.aclose()
    assert "env-key" not in repr(model)


@pytest.mark.parametrize(
    ("name", "vision"),
    [
        ("gpt-4o-mini", True),
        ("gpt-4.1", True),
        ("o3-mini", True),
        ("llava:13b", True),
        ("qwen2.5-vl-7b", True),
        ("gpt-3.5-turbo", False),
        ("llama3.1:8b", False),
        ("scripted", False),
    ],
)
async def test_accepts_images_guesses_from_the_name(
    make_model: MakeModel, name: str, vision: bool
) -> None:
    url = "http://127.0.0.1:1/v1"
    assert make_model(url, name).accepts_images is vision
    assert make_model(url, name, vision=not vision).accepts_images is (not vision)


async def test_a_slow_first_token_is_waited_for_and_silence_after_it_is_not(
    server: Server, make_model: MakeModel
) -> None:
    # a local model reading a long prompt: 1.5 s before it says anything
    srv = server(Reply("Read it all.", wait=1.5), Reply("Read it all.", wait=1.5))
    notes = Notes()
    model = make_model(srv, timeout=0.5, first_token_timeout=5)
    reply = await model.complete(PROMPT, role="analyst", on_notice=notes.notice)
    assert reply.text == "Read it all."
    assert notes.notices == []  # no retry resent the prompt
    impatient = make_model(srv, timeout=5, first_token_timeout=0.5, max_retries=0)
    with pytest.raises(ModelError, match=r"No first token from .* within 0\.5 s") as caught:
        await impatient.complete(PROMPT, role="analyst")
    assert "--first-token-timeout" in str(caught.value)


async def test_reasoning_tokens_are_counted_where_the_server_says(
    server: Server, make_model: MakeModel
) -> None:
    srv = server(Reply("42.", reasoning="Six times seven.", usage=(100, 50, 30)))
    reply = await make_model(srv).complete(PROMPT, role="analyst")
    assert (reply.usage.completion_tokens, reply.usage.reasoning_tokens) == (50, 30)
