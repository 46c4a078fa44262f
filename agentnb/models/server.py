"""An OpenAI-compatible HTTP server that answers from a script.

:class:`ScriptedServer` listens on 127.0.0.1 and answers ``POST /v1/chat/completions``
(streamed or not) and ``GET /v1/models`` the way an OpenAI-compatible endpoint does,
taking each answer from a queue: a plain string is a normal reply, a :class:`Fault`
makes the server misbehave in one specific way (an HTTP error, a hang, a broken
stream). It lets agentnb's real ``openai`` code path run offline, in tests and by
hand::

    with ScriptedServer(["First answer.", Status(429, retry_after=1), "Second."]) as srv:
        model = OpenAIModel("scripted", base_url=srv.base_url)

From a shell, ``python -m agentnb.models.server SCRIPT.json [--port N]`` serves the
replies of a JSON list of strings until Ctrl-C; point agentnb at the URL it logs.

Only the standard library is used: the server runs in a background daemon thread,
so it works from synchronous and asynchronous code alike. :meth:`ScriptedServer.stop`
wakes hanging handlers and closes every connection, so it never waits for a fault
to run its course.

One module past the usual length on purpose: a test server that is also a command,
kept in one file that a user can read and copy.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

__all__ = [
    "Drop",
    "Fault",
    "Hang",
    "HangMidStream",
    "Malformed",
    "Reply",
    "ScriptedServer",
    "Status",
    "call",
    "main",
]

log = logging.getLogger(__name__)

Responder = Callable[[dict[str, Any]], "str | Fault"]
"""Answers a chat request (its JSON body) when the queue is empty."""


class Fault:
    """One scripted answer other than a plain reply; the variants below."""

    __slots__ = ()


@dataclass(frozen=True)
class Status(Fault):
    """Answer with HTTP ``code``.

    ``retry_after`` sets the ``Retry-After`` header (seconds, or a string sent as is,
    such as an HTTP date); ``headers`` adds more (e.g. ``(("retry-after-ms", "250"),)``).
    ``body``: a dict is sent as JSON, a string as plain text, ``None`` means an
    OpenAI-style error body.
    """

    code: int
    retry_after: float | str | None = None
    body: dict[str, Any] | str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hang(Fault):
    """Read the request, then send nothing for ``seconds`` and close the connection."""

    seconds: float = 30.0


@dataclass(frozen=True)
class HangMidStream(Fault):
    """Stream ``text_before`` as deltas, then stall for ``seconds`` and close the
    connection without finishing the stream."""

    text_before: str = "A partial answer that never "
    seconds: float = 30.0


@dataclass(frozen=True)
class Malformed(Fault):
    """Answer 200 with a body that is not JSON (a streamed request gets an SSE
    ``data:`` line that is not JSON)."""


@dataclass(frozen=True)
class Drop(Fault):
    """Read the request, then close the connection without any response."""


@dataclass(frozen=True)
class Reply(Fault):
    """A normal reply, with options.

    ``usage``: ``True`` reports token counts the server makes up (words, not real
    tokens), a ``(prompt, completion)`` pair reports exactly those (a third number:
    of the completion, the reasoning tokens), ``False`` reports
    none (no usage chunk, no ``usage`` field), as some local servers do.
    ``delay``: seconds to wait before each streamed delta, or before a non-streamed
    reply. ``chunk``: characters per streamed delta; 0 splits at word boundaries.
    ``model``: the model name to report; ``None`` echoes the requested one.
    ``reasoning``: streamed first as ``reasoning_content`` deltas (and sent as that
    field of the message), as reasoning models behind vLLM, llama.cpp and DeepSeek's
    API send their thinking.
    ``wait``: seconds between the stream's start and its first delta, as a model
    reading a long prompt keeps the client waiting.
    ``calls``: tool calls, ``(name, arguments)`` with the arguments a dict (sent as
    JSON) or a string (sent as it is, valid or not), streamed after ``text`` in
    ``chunk``-sized pieces of arguments; the finish reason becomes ``tool_calls``.
    """

    text: str
    usage: bool | tuple[int, int] | tuple[int, int, int] = True
    delay: float = 0.0
    chunk: int = 0
    finish_reason: str = "stop"
    model: str | None = None
    reasoning: str = ""
    calls: tuple[tuple[str, dict[str, Any] | str], ...] = ()
    wait: float = 0.0

    def arguments(self) -> list[tuple[str, str]]:
        return [(n, a if isinstance(a, str) else json.dumps(a)) for n, a in self.calls]


def call(name: str, **arguments: Any) -> Reply:
    """A reply that is one tool call: ``call("run_step", why=..., code=...)``."""
    return Reply("", calls=((name, arguments),))


class ScriptedServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers from a script.

    ``replies`` (strings and :class:`Fault` items) are consumed in order, one per
    chat request; :meth:`add` queues more. When the queue is empty, ``respond`` (if
    given) is called with the request's JSON body; otherwise the server answers 500
    saying the script is exhausted. Requests for a model not in ``models`` get a 404
    (``model_not_found``) and, when ``api_key`` is set, requests with another bearer
    token get a 401; neither consumes a scripted reply. The 401 message repeats the
    key it received in full, as some proxies do, so that clients can be checked for
    masking it.

    Every chat request body is appended to :attr:`requests`.

    ``tools=False`` answers every request that offers tools with a 400 saying the
    model does not support tools, as Ollama does for such models (no scripted reply
    is consumed).
    """

    def __init__(
        self,
        replies: Iterable[str | Fault] = (),
        *,
        models: Iterable[str] = ("scripted",),
        api_key: str | None = None,
        respond: Responder | None = None,
        port: int = 0,
        tools: bool = True,
    ) -> None:
        self.models: tuple[str, ...] = tuple(models)
        self.tools = tools
        self.api_key = api_key
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        """The JSON bodies of the chat requests received, in order."""
        self._queue: deque[str | Fault] = deque(replies)
        self._answered = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind a port and serve in a background thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("ScriptedServer is already running")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", self._port), self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ScriptedServer:{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        log.debug("ScriptedServer serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving: wake hanging handlers, close all connections, free the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.abort_connections()
        httpd.server_close()  # joins the handler threads, which are all awake now
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the script ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ScriptedServer is not running: call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *items: str | Fault) -> None:
        """Queue more replies and faults after those already waiting."""
        with self._lock:
            self._queue.extend(items)

    @property
    def pending(self) -> int:
        """How many scripted items are still waiting."""
        with self._lock:
            return len(self._queue)

    def _next(self, body: dict[str, Any]) -> str | Fault | None:
        with self._lock:
            if self._queue:
                self._answered += 1
                return self._queue.popleft()
            respond = self.respond
        if respond is None:
            return None
        item = respond(body)
        with self._lock:
            self._answered += 1
        return item

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def _exhausted_message(self) -> str:
        with self._lock:
            answered = self._answered
        return (
            f"ScriptedServer: the script is exhausted: {answered} chat request(s) answered"
            f" and no reply is left for this one. Queue more with ScriptedServer.add()"
            f" or add them to the script file."
        )

    def _sleep(self, seconds: float) -> bool:
        """Wait; False when the server is stopping (the handler should give up)."""
        return not self._stopping.wait(max(0.0, seconds))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins handlers (stop() wakes them first)

    def __init__(self, address: tuple[str, int], script: ScriptedServer) -> None:
        self.script = script
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def abort_connections(self) -> None:
        """Unblock every handler still reading or writing a connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away, or stop() closed it
            log.debug("ScriptedServer: connection from %s ended: %s", client_address, error)
        else:
            log.exception("ScriptedServer: error answering %s", client_address)


_WORDS = re.compile(r"^\s+|\S+\s*")


def _pieces(text: str, chunk: int) -> list[str]:
    if chunk > 0:
        return [text[i : i + chunk] for i in range(0, len(text), chunk)]
    return _WORDS.findall(text)


def _prompt_words(body: dict[str, Any]) -> int:
    count = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(content.split()) + 3
        elif isinstance(content, list):
            texts = [p.get("text", "") for p in content if isinstance(p, dict)]
            count += sum(len(str(t).split()) for t in texts) + 3
    return count


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentnb-ScriptedServer/1"

    @property
    def script(self) -> ScriptedServer:
        return cast(_HTTPServer, self.server).script

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ScriptedServer: " + format, *args)

    # -- routing ---------------------------------------------------------------------

    def do_GET(self) -> None:
        self.close_connection = True
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/models", "/models"):
            self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
            return
        if not self._authorized():
            return
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "agentnb-scripted"}
            for m in self.script.models
        ]
        self._send_json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        self.close_connection = True
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(f"Unknown path {path}", "invalid_request_error"))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            message = "The request body is not a JSON object."
            self._send_json(400, _error_body(message, "invalid_request_error"))
            return
        self.script._record(body)
        if not self._authorized():
            return
        model = body.get("model")
        if model not in self.script.models:
            message = (
                f"The model `{model}` does not exist or you do not have access to it."
                f" Models served here: {', '.join(self.script.models)}."
            )
            self._send_json(404, _error_body(message, "invalid_request_error", "model_not_found"))
            return
        if body.get("tools") and not self.script.tools:
            message = f"registry.ollama.ai/library/{model} does not support tools"
            self._send_json(400, _error_body(message, "invalid_request_error"))
            return
        item = self.script._next(body)
        if item is None:
            message = self.script._exhausted_message()
            self._send_json(500, _error_body(message, "server_error", "script_exhausted"))
            return
        self._answer(body, Reply(item) if isinstance(item, str) else item)

    def _authorized(self) -> bool:
        expected = self.script.api_key
        if expected is None:
            return True
        given = self.headers.get("Authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else given
        if token == expected:
            return True
        message = f"Incorrect API key provided: {token}. Check the key for this server."
        self._send_json(401, _error_body(message, "invalid_request_error", "invalid_api_key"))
        return False

    # -- answers ---------------------------------------------------------------------

    def _answer(self, body: dict[str, Any], item: Fault) -> None:
        stream = bool(body.get("stream"))
        if isinstance(item, Reply):
            if stream:
                self._stream_reply(body, item)
            else:
                self._full_reply(body, item)
        elif isinstance(item, Status):
            self._status(item)
        elif isinstance(item, Hang):
            self.script._sleep(item.seconds)
        elif isinstance(item, HangMidStream):
            self._start_stream()
            self._send_event(self._chunk(body, {"role": "assistant", "content": ""}))
            for piece in _pieces(item.text_before, 0):
                self._send_event(self._chunk(body, {"content": piece}))
            self.script._sleep(item.seconds)
        elif isinstance(item, Malformed):
            if stream:
                self._start_stream()
                self._send_event(self._chunk(body, {"role": "assistant", "content": ""}))
                self._send_chunked(b'data: {"id": "chatcmpl-broken", "choices": [{"delta": \n\n')
                self._send_event("[DONE]")
                self._send_chunked(b"")
            else:
                self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
        elif isinstance(item, Drop):
            pass  # close_connection is set: the connection closes with nothing sent
        else:
            raise TypeError(f"ScriptedServer cannot answer with {item!r}")

    def _status(self, item: Status) -> None:
        headers = list(item.headers)
        if item.retry_after is not None:
            value = item.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            headers.append(("Retry-After", str(value)))
        if isinstance(item.body, str):
            self._send_bytes(item.code, item.body.encode(), "text/plain", headers)
            return
        body = item.body
        if body is None:
            try:
                phrase = HTTPStatus(item.code).phrase
            except ValueError:
                phrase = "Scripted error"
            kind = "rate_limit_error" if item.code == 429 else "server_error"
            if 400 <= item.code < 500 and item.code != 429:
                kind = "invalid_request_error"
            body = _error_body(f"Scripted {item.code}: {phrase}.", kind)
        self._send_json(item.code, body, headers)

    def _usage(self, body: dict[str, Any], item: Reply) -> dict[str, Any] | None:
        if item.usage is False:
            return None
        reasoned: list[int] = []
        if item.usage is True:
            said = item.text + " ".join(a for _, a in item.arguments())
            prompt, completion = _prompt_words(body), len(said.split())
        else:
            prompt, completion, *reasoned = item.usage
        counts: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if reasoned:
            counts["completion_tokens_details"] = {"reasoning_tokens": reasoned[0]}
        return counts

    def _full_reply(self, body: dict[str, Any], item: Reply) -> None:
        if item.wait and not self.script._sleep(item.wait):
            return
        if item.delay and not self.script._sleep(item.delay):
            return
        answer: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{next(self.script._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": item.model or body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": item.text,
                        **({"reasoning_content": item.reasoning} if item.reasoning else {}),
                        **(
                            {
                                "tool_calls": [
                                    _tool_call(i, name, arguments)
                                    for i, (name, arguments) in enumerate(item.arguments())
                                ]
                            }
                            if item.calls
                            else {}
                        ),
                    },
                    "finish_reason": "tool_calls" if item.calls else item.finish_reason,
                }
            ],
        }
        usage = self._usage(body, item)
        if usage is not None:
            answer["usage"] = usage
        self._send_json(200, answer)

    def _stream_reply(self, body: dict[str, Any], item: Reply) -> None:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        model = item.model
        self._start_stream()
        self._send_event(self._chunk(body, {"role": "assistant", "content": ""}, model=model))
        if item.wait and not self.script._sleep(item.wait):
            return
        for piece in _pieces(item.reasoning, item.chunk):
            if item.delay and not self.script._sleep(item.delay):
                return
            self._send_event(self._chunk(body, {"reasoning_content": piece}, model=model))
        for piece in _pieces(item.text, item.chunk):
            if item.delay and not self.script._sleep(item.delay):
                return
            self._send_event(self._chunk(body, {"content": piece}, model=model))
        for i, (name, arguments) in enumerate(item.arguments()):
            opening = _tool_call(i, name, "")
            self._send_event(self._chunk(body, {"tool_calls": [opening]}, model=model))
            size = item.chunk or 7  # arguments arrive in small pieces, as from a real model
            for start in range(0, len(arguments), size):
                if item.delay and not self.script._sleep(item.delay):
                    return
                more = {"index": i, "function": {"arguments": arguments[start : start + size]}}
                self._send_event(self._chunk(body, {"tool_calls": [more]}, model=model))
        finish = "tool_calls" if item.calls and item.finish_reason == "stop" else item.finish_reason
        self._send_event(self._chunk(body, {}, finish_reason=finish, model=model))
        usage = self._usage(body, item)
        if include_usage and usage is not None:
            last = self._chunk(body, None, model=model)
            last["usage"] = usage
            self._send_event(last)
        self._send_event("[DONE]")
        self._send_chunked(b"")

    def _chunk(
        self,
        body: dict[str, Any],
        delta: dict[str, Any] | None,
        *,
        finish_reason: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        choices = (
            [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        )
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model or body.get("model"),
            "choices": choices,
        }

    # -- the wire --------------------------------------------------------------------

    def _send_bytes(
        self,
        code: int,
        data: bytes,
        content_type: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(
        self, code: int, body: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._send_bytes(code, json.dumps(body).encode(), "application/json", headers)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()

    def _send_chunked(self, data: bytes) -> None:
        """One chunk of a chunked body; empty ``data`` ends the body."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_event(self, data: dict[str, Any] | str) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        self._send_chunked(f"data: {text}\n\n".encode())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentnb.models.server SCRIPT.json [--port N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m agentnb.models.server",
        description="Serve scripted replies on an OpenAI-compatible endpoint (127.0.0.1).",
    )
    parser.add_argument("script", type=Path, help="a JSON file holding a list of reply strings")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help="a model name to accept (repeatable; default: scripted)",
    )
    parser.add_argument("--api-key", help="accept only this bearer token (default: any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    try:
        replies = json.loads(args.script.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read {args.script}: {exc}")
    if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
        parser.error(f"{args.script} must hold a JSON list of strings (the replies, in order)")

    models = tuple(args.models or ("scripted",))
    server = ScriptedServer(replies, models=models, api_key=args.api_key, port=args.port)
    try:
        server.start()
    except OSError as exc:
        parser.error(f"cannot listen on port {args.port}: {exc}")
    log.info(
        "Serving %d scripted replies at %s (models: %s). Use: OPENAI_BASE_URL=%s, "
        "model %s. Ctrl-C stops.",
        len(replies),
        server.base_url,
        ", ".join(models),
        server.base_url,
        models[0],
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("Stopped.")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _tool_call(index: int, name: str, arguments: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
