"""ScriptedServer on its own, spoken to with plain HTTP from the standard library."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentnb.models.server import Hang, Reply, ScriptedServer, Status

from ..processes import interruptible

Server = Callable[..., ScriptedServer]


def post(srv: ScriptedServer, body: dict[str, Any], key: str = "k") -> tuple[int, bytes]:
    request = urllib.request.Request(
        srv.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def chat(stream: bool = False, model: str = "scripted", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": stream,
        **extra,
    }


def events(raw: bytes) -> list[str]:
    lines = raw.decode().split("\n\n")
    return [line.removeprefix("data: ") for line in lines if line]


def test_a_plain_reply_is_a_chat_completion(server: Server) -> None:
    srv = server(Reply("Four five.", usage=(9, 2)))
    status, raw = post(srv, chat())
    assert status == 200
    answer = json.loads(raw)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Four five."}
    assert answer["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert srv.requests == [chat()]


def test_a_streamed_reply_is_server_sent_events(server: Server) -> None:
    srv = server("Alpha beta gamma.")
    status, raw = post(srv, chat(stream=True, stream_options={"include_usage": True}))
    assert status == 200
    data = events(raw)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Alpha beta gamma."
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 3
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_no_usage_chunk_unless_asked(server: Server) -> None:
    srv = server("Alpha.", Reply("Beta.", usage=False))
    for _ in range(2):
        chunks = [json.loads(d) for d in events(post(srv, chat(stream=True))[1])[:-1]]
        assert all("usage" not in c for c in chunks)
    assert srv.pending == 0


def test_models_are_listed_and_unknown_ones_refused(server: Server) -> None:
    srv = server("unused", models=("a", "b"))
    with urllib.request.urlopen(srv.base_url + "/models", timeout=5) as response:
        listed = json.loads(response.read())
    assert [m["id"] for m in listed["data"]] == ["a", "b"]
    status, raw = post(srv, chat(model="c"))
    assert status == 404
    assert json.loads(raw)["error"]["code"] == "model_not_found"
    assert srv.pending == 1


def test_a_wrong_key_gets_401(server: Server) -> None:
    srv = server("unused", api_key="right")
    status, raw = post(srv, chat(), key="wrong")
    assert status == 401
    assert json.loads(raw)["error"]["code"] == "invalid_api_key"
    assert post(srv, chat(), key="right")[0] == 200


def test_status_faults_send_their_headers(server: Server) -> None:
    srv = server(Status(429, retry_after=3))
    request = urllib.request.Request(
        srv.base_url + "/chat/completions", json.dumps(chat()).encode()
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    with caught.value as error:
        assert error.code == 429
        assert error.headers["Retry-After"] == "3"
        assert json.loads(error.read())["error"]["type"] == "rate_limit_error"


def test_an_exhausted_script_says_so(server: Server) -> None:
    srv = server("only one")
    assert post(srv, chat())[0] == 200
    status, raw = post(srv, chat())
    assert status == 500
    message = json.loads(raw)["error"]["message"]
    assert "script is exhausted" in message
    assert "1 chat request" in message


def test_respond_answers_when_the_queue_is_empty(server: Server) -> None:
    def respond(body: dict[str, Any]) -> str:
        return "echo: " + body["messages"][-1]["content"]

    srv = server("queued first", respond=respond)
    replies = [json.loads(post(srv, chat())[1])["choices"][0]["message"]["content"] for _ in "ab"]
    assert replies == ["queued first", "echo: one two three"]


def test_add_queues_more(server: Server) -> None:
    srv = server()
    srv.add("late", Reply("later"))
    assert srv.pending == 2
    assert json.loads(post(srv, chat())[1])["choices"][0]["message"]["content"] == "late"


def test_stop_does_not_wait_for_a_hanging_request() -> None:
    srv = ScriptedServer([Hang(60)]).start()
    failures: list[BaseException] = []

    def client() -> None:
        try:
            post(srv, chat())
        except Exception as exc:
            failures.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while not srv.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.requests
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.5
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert failures  # the client saw the connection close without an answer


def test_the_command_line_serves_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["From the command line."]))
    process = subprocess.Popen(
        [sys.executable, "-m", "agentnb.models.server", str(script)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=interruptible,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = line.split(" at ", 1)[1].split()[0]
        request = urllib.request.Request(
            url + "/chat/completions", json.dumps(chat()).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"] == "From the command line."
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        if process.stderr is not None:
            process.stderr.close()
