"""A model client for any OpenAI-compatible chat endpoint.

:class:`OpenAIModel` speaks the chat-completions API through the ``openai`` package
to OpenAI itself, Azure OpenAI (via ``base_url``), Ollama, vLLM, LM Studio,
llama.cpp's server and the like. Every call streams; the retries are agentnb's own
(the ``openai`` client is made with ``max_retries=0``) so that the user is told about
each one through ``on_notice``, and every failure that ends a call is a
:class:`~agentnb.errors.ModelError` naming the endpoint and the fix.

One module past the usual length on purpose: the client, its streaming and its
account of every failure are one conversation with the endpoint.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import openai
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.chat.chat_completion_stream_options_param import (
    ChatCompletionStreamOptionsParam,
)

from ..errors import ConfigError, ModelError
from .arguments import ArgumentStream
from .base import (
    ChatMessage,
    ContextTooLong,
    DeltaCallback,
    ModelReply,
    NoticeCallback,
    Tool,
    ToolCall,
    ToolsRefused,
    Usage,
    estimate_tokens,
    message_text,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_TOKENS",
    "OpenAIModel",
    "ToolsRefused",
    "parse_retry_after",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_FIRST_TOKEN_TIMEOUT = 300.0
"""Seconds to wait for the first token: a 7–8B model on a CPU reads a prompt of a
few thousand tokens for one to three minutes before it answers."""
DEFAULT_MAX_TOKENS = 8192
"""Tokens a reply may have: local servers have no limit of their own, and a model
caught in a repetition loop would otherwise stream for minutes. Room for a reasoning
model's thinking and a step."""
_PLACEHOLDER_KEY = "agentnb-no-key"
"""Sent to servers that need no key (local ones ignore it): the client insists on one."""

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
_VISION_HINTS = ("gpt-4o", "gpt-4.1", "gpt-5", "vision", "llava", "-vl")
_O_SERIES = re.compile(r"(?:^|[^a-z0-9])o[134](?:$|[^a-z0-9])")
_SECRET_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{3})[A-Za-z0-9_\-]{6,}")
_STATUS_REASONS = {408: "request timeout", 409: "conflict", 429: "rate limited"}
_LOADING_POLL = 1.0
"""Seconds between two asks of a server that is loading its model."""
_TOO_LONG = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long"
    r"|exceeds? the (available )?context|input is too long|reduce the length",
    re.IGNORECASE,
)
"""How servers say a prompt does not fit: OpenAI (context_length_exceeded), vLLM,
llama.cpp ("exceeds the available context size"), Ollama, LM Studio."""

KeySource = Literal["argument", "environment", "placeholder"]


_NO_TOOLS: set[tuple[str, str]] = set()
"""Endpoints and models that refused tools, remembered for this process."""


class _Silent(Exception):
    """No chunk came in time: before the first token, or in the middle of a reply."""

    def __init__(self, first: bool, seconds: float) -> None:
        super().__init__(f"{'no first token' if first else 'silence'} for {seconds} s")
        self.first = first
        self.seconds = seconds


class _BrokenStream(Exception):
    """The server answered 200 but not with a usable chat-completion stream."""


@dataclass
class _PendingCall:
    """A tool call being streamed: its name and its arguments so far."""

    name: str = ""
    arguments: str = ""
    stream: ArgumentStream | None = None

    def show(self, piece: str) -> str:
        if self.stream is None:
            self.stream = ArgumentStream(self.name)
        return self.stream.feed(piece)


@dataclass(frozen=True)
class _Failure:
    """How one failed attempt is reported and handled."""

    what: str
    """A short clause for notices: ``HTTP 429 from URL (rate limited)``."""
    message: str
    """The ModelError message if the call ends here."""
    retryable: bool
    retry_after: float | None = None
    model_unknown: bool = False
    too_long: bool = False
    loading: bool = False
    """The server is up but still loading the model (llama.cpp's 503 "Loading model")."""


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _is_local(url: str) -> bool:
    host = _host(url)
    return host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def _is_openai(url: str) -> bool:
    host = _host(url)
    return host == "openai.com" or host.endswith(".openai.com")


def _looks_visual(model: str) -> bool:
    name = model.lower()
    return any(hint in name for hint in _VISION_HINTS) or bool(_O_SERIES.search(name))


def _seconds(value: float) -> str:
    return f"{value:g}"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asks to wait: ``retry-after-ms``, or ``Retry-After`` in seconds
    or as an HTTP date. ``None`` when absent or unreadable; never negative."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            continue
        if math.isnan(value):
            continue
        return max(0.0, value)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    try:
        return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))
    except (OverflowError, ValueError):
        return None


def _reasoning(delta: object) -> str:
    """The reasoning text a stream delta carries in a field of its own, if any."""
    if delta is None:
        return ""
    extra = getattr(delta, "model_extra", None) or {}
    for name in ("reasoning_content", "reasoning"):
        value = getattr(delta, name, None) or extra.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


class OpenAIModel:
    """A chat model behind an OpenAI-compatible endpoint.

    ``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``
    (then to OpenAI's own URL). Without any key, a local or non-OpenAI server gets a
    placeholder key; OpenAI itself needs a real one (:class:`ConfigError`).

    A failed attempt is retried up to ``max_retries`` times when it may pass: HTTP
    408, 409, 429 and 5xx, connection failures, timeouts, replies that are not valid
    JSON or a broken stream. Two timeouts: ``first_token_timeout`` seconds for the
    first token (a local model on a CPU reads a long prompt for minutes before it
    says anything), then ``timeout`` seconds of silence in the middle of a reply.
    The wait between attempts honours the server's ``Retry-After`` /
    ``retry-after-ms`` up to ``retry_after_cap`` seconds (asking for more ends the
    call), otherwise it is ``backoff_base * 2**retry``, capped at ``backoff_cap``,
    with jitter (between half and all of it). A server that answers 503 "Loading
    model" (llama.cpp while it reads the weights) is asked again every second for up
    to ``first_token_timeout`` seconds, without spending a retry.

    Every call asks for at most ``max_tokens`` tokens (as ``max_completion_tokens``
    where the server refuses ``max_tokens``, as OpenAI's reasoning models do); a reply
    cut by it comes back with ``finish_reason == "length"``.

    ``sleep`` is how a retry waits its delay (default :func:`asyncio.sleep`); give your
    own to record the delays or to wait less, as tests do.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT,
        max_retries: int = 4,
        vision: bool | None = None,
        temperature: float | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        retry_after_cap: float = 60.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        if not model:
            raise ConfigError("A model name is needed, e.g. gpt-4o-mini or llama3.1:8b.")
        if timeout <= 0:
            raise ConfigError(f"The model timeout must be positive, not {timeout!r}.")
        if first_token_timeout <= 0:
            raise ConfigError(
                f"The first-token timeout must be positive, not {first_token_timeout!r}."
            )
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, not {max_tokens!r}.")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {max_retries!r}.")
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        source: KeySource
        if api_key:
            key, source = api_key, "argument"
        elif os.environ.get("OPENAI_API_KEY"):
            key, source = os.environ["OPENAI_API_KEY"], "environment"
        elif _is_openai(url):
            raise ConfigError(
                f"No API key for {url}: set the OPENAI_API_KEY environment variable or pass"
                " an API key. (For a local server, set OPENAI_BASE_URL to its URL instead.)"
            )
        else:
            key, source = _PLACEHOLDER_KEY, "placeholder"
        self._model = model
        self._base_url = url
        self._url_given = bool(base_url)
        self._api_key = key
        self._key_source: KeySource = source
        self._vision = vision
        self.timeout = float(timeout)
        self.first_token_timeout = float(first_token_timeout)
        self.max_retries = max_retries
        self.temperature = temperature
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self._stream_options = True
        """Cleared for good when the server rejects ``stream_options``."""
        self.max_tokens = max_tokens
        self._limit_name = "max_tokens"
        """Switched for good to ``max_completion_tokens`` when the server asks for it."""
        self._tools = (url, model) not in _NO_TOOLS
        self._sleep = sleep or asyncio.sleep
        self._http: openai.AsyncOpenAI | None = None

    @property
    def _client(self) -> openai.AsyncOpenAI:
        """The HTTP client, made at the first call: making one loads the system's CA
        certificates (about 20 ms), which a client that is only checked, as a
        ``%%agents`` cell checks its models before its widget shows, never needs."""
        if self._http is None:
            self._http = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                # the stream's own watchdog (_next) tells the first token from silence
                timeout=openai.Timeout(
                    max(self.timeout, self.first_token_timeout), connect=min(self.timeout, 30.0)
                ),
                max_retries=0,
            )
        return self._http

    def __repr__(self) -> str:
        return f"OpenAIModel({self._model!r}, base_url={self._base_url!r})"

    @property
    def name(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        """The endpoint, as used in messages (no trailing slash)."""
        return self._base_url

    @property
    def accepts_images(self) -> bool:
        return self._vision if self._vision is not None else _looks_visual(self._model)

    @property
    def takes_tools(self) -> bool:
        """False once this endpoint refused tools for this model (for the process)."""
        return self._tools

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    # -- one call --------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        role: str,
        on_delta: DeltaCallback | None = None,
        on_notice: NoticeCallback | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> ModelReply:
        """One reply; with ``tools``, the model must call one of them (a refusal of
        tools by the endpoint raises :class:`ToolsRefused`, once)."""
        payload = cast(list[ChatCompletionMessageParam], [m.to_openai() for m in messages])
        retries = 0
        loading = 0.0  # seconds waited for the server to load its model
        while True:
            streamed: list[str] = []
            try:
                return await self._attempt(messages, payload, streamed, on_delta, tools)
            except (openai.APIError, json.JSONDecodeError, _BrokenStream, _Silent) as exc:
                error: Exception = exc
            if tools and self._refuses_tools(error):
                self._tools = False
                _NO_TOOLS.add((self._base_url, self._model))
                said = self._server_message(cast(openai.APIError, error)) or "no details"
                raise ToolsRefused(
                    f"{self._base_url} does not take tool calls for {self._model} ({said})"
                ) from error
            if self._wants_completion_tokens(error):
                self._limit_name = "max_completion_tokens"
                continue
            if self._rejects_stream_options(error):
                self._stream_options = False
                if on_notice is not None:
                    on_notice(
                        f"{self._base_url} does not accept stream_options; asking again"
                        " without it (token counts will be estimates)."
                    )
                continue
            failure = self._classify(error)
            if failure.too_long:
                raise ContextTooLong(failure.message) from error
            if not failure.retryable:
                raise ModelError(await self._final_message(failure)) from error
            if failure.loading and loading < self.first_token_timeout:
                # not a failure: loading a model from disk takes as long as it takes, up
                # to the wait for a first token; the retries stay for real failures
                if not loading and on_notice is not None:
                    on_notice(
                        f"{self._base_url} is loading the model; waiting up to"
                        f" {_seconds(self.first_token_timeout)} s (--first-token-timeout)"
                    )
                loading += _LOADING_POLL
                await self._sleep(_LOADING_POLL)
                continue
            if failure.loading:
                raise ModelError(
                    f"{self._base_url} was still loading the model after {_seconds(loading)}"
                    " s (HTTP 503: Loading model): try again once it is ready, or allow"
                    " longer with --first-token-timeout."
                ) from error
            if retries >= self.max_retries:
                message = failure.message
                if retries:
                    message += f" Gave up after {retries + 1} attempts."
                raise ModelError(message) from error
            delay = self._delay(retries, failure)
            retries += 1
            if on_notice is not None:
                what = failure.what[:1].upper() + failure.what[1:]
                discarded = "; the partial reply is discarded" if streamed else ""
                on_notice(
                    f"{what}{discarded}; retrying in {delay:.1f} s"
                    f" (retry {retries} of {self.max_retries})"
                )
            await self._sleep(delay)

    async def _attempt(
        self,
        messages: Sequence[ChatMessage],
        payload: list[ChatCompletionMessageParam],
        streamed: list[str],
        on_delta: DeltaCallback | None,
        tools: Sequence[Tool] | None = None,
    ) -> ModelReply:
        stream_options: ChatCompletionStreamOptionsParam | openai.Omit = (
            {"include_usage": True} if self._stream_options else openai.omit
        )
        temperature: float | openai.Omit = (
            self.temperature if self.temperature is not None else openai.omit
        )
        stream = await self._client.chat.completions.create(
            model=self._model,
            messages=payload,
            stream=True,
            stream_options=stream_options,
            temperature=temperature,
            max_tokens=self.max_tokens if self._limit_name == "max_tokens" else openai.omit,
            max_completion_tokens=(
                self.max_tokens if self._limit_name != "max_tokens" else openai.omit
            ),
            **self._tool_arguments(tools),
        )
        calls: dict[int, _PendingCall] = {}
        reported = ""
        finish: str | None = None
        usage: CompletionUsage | None = None
        chunks = 0
        thinking = False
        spoke = False
        """A token came (text, reasoning or a call): from now on silence is timed."""

        def say(text: str) -> None:
            nonlocal spoke
            spoke = True
            streamed.append(text)
            if on_delta is not None:
                on_delta(text)

        async with stream:
            chunks_in = stream.__aiter__()
            while True:
                limit = self.timeout if spoke else self.first_token_timeout
                try:
                    chunk = await asyncio.wait_for(chunks_in.__anext__(), limit)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise _Silent(not spoke, limit) from None
                item: object = chunk  # unvalidated: a server can send any JSON value
                if not isinstance(item, ChatCompletionChunk):
                    raise _BrokenStream(f"a stream event was not a chunk object: {item!r:.80}")
                chunks += 1
                reported = chunk.model or reported
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    if choice.index:  # only one choice is asked for
                        continue
                    delta = cast("ChoiceDelta | None", choice.delta)
                    # a reasoning field (vLLM, llama.cpp, DeepSeek, OpenRouter) becomes a
                    # <think> block, which the parser sets aside and the widget folds
                    thought = _reasoning(delta)
                    if thought:
                        if not thinking:
                            say("<think>\n")
                            thinking = True
                        say(thought)
                    text = delta.content if delta is not None else None
                    pieces = (delta.tool_calls or []) if delta is not None else []
                    if (text or pieces) and thinking:
                        say("\n</think>\n\n")
                        thinking = False
                    if text:
                        say(text)
                    for piece in pieces:
                        call = calls.setdefault(piece.index, _PendingCall())
                        function = piece.function
                        spoke = True
                        if function is not None and function.name:
                            call.name += function.name
                        if function is not None and function.arguments:
                            call.arguments += function.arguments
                            shown = call.show(function.arguments)
                            if shown:
                                say(shown)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        if not chunks:
            raise _BrokenStream("no chunk came before the stream ended")
        if thinking:  # the reasoning took the whole reply (cut, or nothing after it)
            say("\n</think>\n")
        text = "".join(streamed)
        made = tuple(ToolCall(c.name, c.arguments) for _, c in sorted(calls.items()) if c.name)
        if usage is not None and usage.prompt_tokens is not None:
            details = usage.completion_tokens_details
            reasoned = (details.reasoning_tokens or 0) if details is not None else 0
            counted = Usage(
                usage.prompt_tokens, usage.completion_tokens or 0, 1, reasoning_tokens=reasoned
            )
        else:
            prompt = "\n".join(message_text(m) for m in messages)
            counted = Usage(estimate_tokens(prompt), estimate_tokens(text), 1, estimated=True)
        return ModelReply(text, counted, reported or self._model, finish, tool_calls=made)

    def _tool_arguments(self, tools: Sequence[Tool] | None) -> dict[str, Any]:
        """``tools`` and a ``tool_choice`` that requires a call; strict schemas where
        the server is OpenAI's (others may refuse the field)."""
        if not tools:
            return {}
        offered = [dict(tool) for tool in tools]
        if _is_openai(self._base_url):
            offered = [
                {**tool, "function": {**tool["function"], "strict": True}} for tool in offered
            ]
        return {"tools": offered, "tool_choice": "required"}

    def _refuses_tools(self, error: Exception) -> bool:
        """An error that says the server or the model takes no tools (Ollama's
        "does not support tools", llama.cpp without --jinja, vLLM without a tool
        parser), as opposed to a bad call."""
        if not isinstance(error, openai.APIStatusError) or error.status_code in (401, 403, 429):
            return False
        said = f"{error.message} {error.body}".lower()
        return "tool" in said or "function call" in said

    # -- failures --------------------------------------------------------------------

    def _mask(self, text: str) -> str:
        """``text`` with the API key (and anything like an OpenAI key) masked."""
        if self._key_source != "placeholder" and len(self._api_key) >= 4:
            text = text.replace(self._api_key, self._api_key[:3] + "***")
        return _SECRET_LIKE.sub(r"\1***", text)

    def _server_message(self, exc: openai.APIError) -> str:
        body = exc.body
        message: object = None
        if isinstance(body, Mapping):
            message = body.get("message")
            if isinstance(message, Mapping):  # some servers nest it once more
                message = message.get("message")
        elif isinstance(body, str):
            message = body
        if not isinstance(message, str) or not message.strip():
            return ""
        message = " ".join(message.split())
        if len(message) > 300:
            message = message[:297] + "..."
        return self._mask(message).rstrip(".")

    def _wants_completion_tokens(self, error: Exception) -> bool:
        if self._limit_name != "max_tokens" or not isinstance(error, openai.BadRequestError):
            return False
        said = f"{error.message} {error.body}".lower()
        return "max_completion_tokens" in said

    def _rejects_stream_options(self, error: Exception) -> bool:
        if not self._stream_options or not isinstance(error, openai.BadRequestError):
            return False
        said = f"{error.message} {error.body}".lower()
        return "stream_options" in said or "include_usage" in said

    def _key_hint(self) -> str:
        if self._key_source == "argument":
            return (
                "The key was passed as an argument (api_key); pass a key that is valid"
                " for this endpoint."
            )
        if self._key_source == "environment":
            return (
                "The key came from the OPENAI_API_KEY environment variable; set it to a"
                " key that is valid for this endpoint, or pass one as api_key."
            )
        return (
            "No API key was set, so agentnb sent a placeholder; this server wants a real"
            " one: set OPENAI_API_KEY or pass an API key."
        )

    def _classify(self, error: Exception) -> _Failure:
        url = self._base_url
        if isinstance(error, openai.APIStatusError):
            return self._classify_status(error)
        if isinstance(error, _Silent) and error.first:
            within = f"within {_seconds(error.seconds)} s"
            return _Failure(
                f"no first token from {url} {within}",
                f"No first token from {url} {within} (timeout). A local model may still be "
                "reading a long prompt: allow longer with --first-token-timeout, or use a "
                "smaller model or prompt.",
                retryable=True,
            )
        if isinstance(error, _Silent):
            within = f"within {_seconds(error.seconds)} s"
            return _Failure(
                f"no answer from {url} {within}",
                f"No answer from {url} {within} (timeout): the reply stopped in the middle. "
                "The server may be overloaded: try again, or allow longer with "
                "--model-timeout.",
                retryable=True,
            )
        if isinstance(error, openai.APITimeoutError):
            within = f"within {_seconds(max(self.timeout, self.first_token_timeout))} s"
            return _Failure(
                f"no answer from {url} {within}",
                f"No answer from {url} {within} (timeout). The server may be overloaded or"
                " still loading the model: try again, or allow a longer timeout.",
                retryable=True,
            )
        if isinstance(error, openai.APIConnectionError):
            detail, unreachable = _connection_detail(error)
            if detail == "host name not found":
                return _Failure(
                    f"cannot reach {url} ({detail})",
                    f"Cannot reach {url}: the host name was not found. Check the base URL"
                    " (OPENAI_BASE_URL or the model's base URL).",
                    retryable=True,
                )
            if unreachable:
                fix = (
                    "Check the base URL given (--base-url)."
                    if self._url_given
                    else "Set OPENAI_BASE_URL or pass the model's base URL (--base-url) to"
                    " point agentnb at it."
                )
                return _Failure(
                    f"cannot reach {url} ({detail})",
                    f"Cannot reach {url} ({detail}). Is the server running? {fix}",
                    # nothing listens on that port of this machine: a retry finds the same
                    retryable=not (detail == "connection refused" and _is_local(url)),
                )
            return _Failure(
                f"the connection to {url} broke ({detail})",
                f"The connection to {url} broke before the reply was complete ({detail})."
                " Check that the server is healthy and try again.",
                retryable=True,
            )
        if isinstance(error, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return _Failure(
                f"the reply from {url} was not valid JSON",
                f"The server's reply from {url} was not valid JSON ({error})."
                " Is it an OpenAI-compatible endpoint (the base URL usually ends in /v1)?",
                retryable=True,
            )
        if isinstance(error, _BrokenStream):
            return _Failure(
                f"the reply from {url} was not a chat-completion stream",
                f"The server's reply from {url} was not a valid chat-completion stream"
                f" ({error}). Is it an OpenAI-compatible endpoint (the base URL usually"
                " ends in /v1)?",
                retryable=True,
            )
        said = self._server_message(cast(openai.APIError, error)) or "no details"
        return _Failure(
            f"{url} reported an error mid-reply ({said})",
            f"{url} reported an error in the middle of its reply: {said}",
            retryable=True,
        )

    def _classify_status(self, error: openai.APIStatusError) -> _Failure:
        url, code = self._base_url, error.status_code
        said = self._server_message(error)
        colon_said = f": {said}" if said else ""
        if code in (401, 403):
            verb = "rejected the API key" if code == 401 else "refused the API key access"
            return _Failure(
                f"HTTP {code} from {url}",
                f"{url} {verb} (HTTP {code}{colon_said}). {self._key_hint()}",
                retryable=False,
            )
        if code == 404:
            unknown = error.code == "model_not_found" or "model" in said.lower()
            if unknown:
                message = (
                    f"The model {self._model!r} is not known at {url} (HTTP 404{colon_said})."
                    " Check the model name."
                )
                if ":11434" in url:
                    message += f" With Ollama, pull it first: ollama pull {self._model}"
            else:
                message = (
                    f"{url} has no chat-completions endpoint (HTTP 404{colon_said}). Check"
                    " the base URL: OpenAI-compatible servers usually end in /v1."
                )
            return _Failure(f"HTTP 404 from {url}", message, False, model_unknown=unknown)
        if code in (400, 413, 422, 500) and _TOO_LONG.search(said):
            return _Failure(
                f"HTTP {code} from {url} (the prompt is too long)",
                f"The prompt is too long for {self._model} at {url} (HTTP {code}{colon_said}). "
                "Give it a larger context window (llama-server -c, Ollama num_ctx), or use a "
                "model with a longer one.",
                retryable=False,
                too_long=True,
            )
        if code in _STATUS_REASONS or code >= 500:
            reason = _STATUS_REASONS.get(code, "server error")
            return _Failure(
                f"HTTP {code} from {url} ({reason})",
                f"{url} kept failing: HTTP {code} ({reason}){colon_said}.",
                retryable=True,
                retry_after=parse_retry_after(error.response.headers),
                loading=code == 503 and "loading" in said.lower(),
            )
        return _Failure(
            f"HTTP {code} from {url}",
            f"{url} refused the request: HTTP {code}{colon_said or ' (no message)'}.",
            retryable=False,
        )

    async def _final_message(self, failure: _Failure) -> str:
        if not failure.model_unknown:
            return failure.message
        names = await self._available_models()
        if not names:
            return failure.message
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return f"{failure.message} Models available there: {shown}."

    async def _available_models(self) -> list[str]:
        """A few model names the endpoint lists, or none if it cannot say quickly."""
        try:
            page = await self._client.models.list(timeout=min(self.timeout, 5.0))
            return sorted(str(m.id) for m in page.data)
        except (openai.OpenAIError, ValueError, TypeError, AttributeError):
            return []

    def _delay(self, retries: int, failure: _Failure) -> float:
        if failure.retry_after is not None:
            if failure.retry_after > self.retry_after_cap:
                raise ModelError(
                    f"{failure.message} The server asked to wait"
                    f" {_seconds(round(failure.retry_after, 1))} s before retrying, more than"
                    f" agentnb waits ({_seconds(self.retry_after_cap)} s): try again later."
                )
            return failure.retry_after
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0**retries)
        return random.uniform(ceiling / 2, ceiling)


def _connection_detail(error: openai.APIConnectionError) -> tuple[str, bool]:
    """A few words on why a connection failed, and whether the server was never reached."""
    cause: BaseException | None = error.__cause__ or error.__context__
    seen = 0
    unreachable = False
    detail = ""
    while cause is not None and seen < 8:
        seen += 1
        name = type(cause).__name__
        text = str(cause)
        lowered = text.lower()
        if name == "ConnectError" or isinstance(cause, ConnectionRefusedError):
            unreachable = True
        if "refused" in lowered or isinstance(cause, ConnectionRefusedError):
            return "connection refused", True
        if (
            "name or service not known" in lowered
            or "nodename nor servname" in lowered
            or "getaddrinfo" in lowered
            or "name resolution" in lowered
        ):
            return "host name not found", True
        if text and not detail:
            detail = text
        cause = cause.__cause__ or cause.__context__
    return (detail or error.message or "connection error"), unreachable
