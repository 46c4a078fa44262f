"""Model-side faults: the real ``openai`` client in the notebook's kernel against a
misbehaving OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentnb.models.server import Hang, Malformed, ScriptedServer, Status

from .conftest import REPORT, Agents, step

TOTALS = step('totals = sales.groupby("region")["revenue"].sum()\ntotals', "Totals per region.")
HAPPY = (TOTALS, "APPROVE", REPORT, "APPROVE")
"""A whole run: a step, its review, the report, its review."""


def by_role(analyst: Callable[[int], str]) -> Callable[[dict[str, Any]], str]:
    """A ``respond`` for ScriptedServer: the critic approves everything, the analyst's
    n-th call (from 0) is answered with ``analyst(n)``."""
    calls = itertools.count()

    def respond(body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        return "APPROVE" if "critical reviewer" in system else analyst(next(calls))

    return respond


def flags(srv: ScriptedServer | str, extra: str = "") -> str:
    """The cell's flags; retries wait 0.05 s where a real run waits 1 s, then 2, 4, 8."""
    url = srv if isinstance(srv, str) else srv.base_url
    return (
        f"--data sales --approve never --model scripted --base-url {url} --retry-backoff 0.05 "
        f"{extra}"
    ).strip()


async def test_429_waits_as_long_as_retry_after_asks_and_the_run_goes_on(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(Status(429, retry_after=1), *HAPPY)
    done = await agents(flags(srv))
    assert done.kind == "approved", done.message
    assert done.error == ""
    assert done.statuses == ["ok"]
    assert any("rate limited" in n.lower() and "retrying in 1.0 s" in n for n in done.notices)
    assert "retrying in 1.0 s" in done.shown  # the widget says it too
    assert len(srv.requests) == 5  # the refused call was asked again, once
    assert done.transcript_complete()


async def test_a_500_is_retried_and_the_run_goes_on(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(Status(500), *HAPPY)
    done = await agents(flags(srv))
    assert done.kind == "approved", done.message
    assert any("500" in n and "retry 1 of 4" in n for n in done.notices)
    assert done.transcript_complete()


async def test_a_500_that_persists_fails_the_cell_naming_the_endpoint(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(*[Status(500)] * 5)
    done = await agents(flags(srv))
    assert done.kind == "model_error"
    assert srv.base_url in done.message
    assert "Gave up after 5 attempts" in done.message
    assert done.error.startswith("AgentsError: ")
    assert srv.base_url in done.error
    assert "what ran is kept" in done.error
    assert done.phase == "failed"
    assert done.transcript_complete()


async def test_connection_refused_names_the_url(agents: Agents, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    done = await agents(flags(url))
    assert done.kind == "model_error"
    assert url in done.message
    assert "is the server running" in done.message.lower()
    assert url in done.error
    assert done.transcript_complete()


async def test_a_server_that_hangs_is_given_up_on_after_the_model_timeout(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(Hang(30), *HAPPY)
    done = await agents(flags(srv, "--model-timeout 1 --first-token-timeout 1"))
    assert done.kind == "approved", done.message
    assert any("no answer" in n.lower() and "retry 1 of 4" in n for n in done.notices)
    assert done.transcript_complete()


async def test_malformed_json_is_retried(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(Malformed(), *HAPPY)
    done = await agents(flags(srv))
    assert done.kind == "approved", done.message
    assert any("json" in n.lower() for n in done.notices)
    assert done.transcript_complete()


async def test_an_empty_reply_gets_one_correction(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server("", *HAPPY)
    done = await agents(flags(srv))
    assert done.kind == "approved", done.message
    assert done.statuses == ["ok"]
    # the correction told the model what was wrong and what the protocol is
    assert "Your reply was empty" in json.dumps(srv.requests[1]["messages"])
    assert any("protocol" in n for n in done.notices)
    assert done.transcript_complete()


async def test_a_model_that_keeps_ignoring_the_protocol_fails_the_cell(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    # the critic answers in prose, never APPROVE or REVISE
    srv = server(TOTALS, "Looks reasonable to me.", "I think it is fine.")
    done = await agents(flags(srv))
    assert done.kind == "protocol"
    assert "critic" in done.message
    assert done.statuses == []  # nothing ran unreviewed
    assert done.error.startswith("AgentsError: ")
    assert len(srv.requests) == 3  # one correction, then the end: no endless re-prompting
    assert done.transcript_complete()


async def test_the_same_failing_code_again_and_again_is_not_rerun(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    failing = step("sales['profit'].sum()", "Sum the profit.")
    srv = server(respond=by_role(lambda _: failing))
    done = await agents(flags(srv))
    assert done.kind == "loop_guard"
    assert done.statuses == ["error"]  # ran once; the repeats were refused before running
    assert "already failed in step 1" in done.message
    assert any("was not run again" in n for n in done.notices)
    assert done.error == ""  # a guard ended it, as designed: the widget says why
    assert done.transcript_complete()


async def test_an_analyst_that_never_reports_is_stopped_by_max_turns(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(respond=by_role(lambda n: step(f"x{n} = {n}")))
    done = await agents(flags(srv, "--max-turns 9"))
    assert done.kind == "max_turns"
    assert "9" in done.message
    assert done.statuses == ["ok", "ok", "ok"]  # 3 × (proposal, review, execution)
    assert len(srv.requests) == 6
    assert done.transcript_complete()


async def test_a_wrong_key_fails_the_cell_without_showing_the_key(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(*HAPPY, api_key="sk-the-right-one")
    wrong = "sk-wrong-0123456789abcdef"
    await agents.cell(f"import os\nos.environ['OPENAI_API_KEY'] = '{wrong}'")
    done = await agents(flags(srv))
    assert done.kind == "model_error"
    assert "OPENAI_API_KEY" in done.message
    assert "rejected" in done.message.lower()
    for seen in (done.message, done.error, done.shown):
        assert wrong not in seen
    assert done.transcript_path is not None
    assert wrong not in Path(done.transcript_path).read_text()
    assert len(srv.requests) == 1  # a rejected key is not tried again
    assert done.transcript_complete()


async def test_an_unknown_model_is_named(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    srv = server(*HAPPY, models=("llama3.1:8b", "qwen2.5:7b"))
    done = await agents(flags(srv))
    assert done.kind == "model_error"
    assert f"The model 'scripted' is not known at {srv.base_url}" in done.message
    assert "Models available there: llama3.1:8b, qwen2.5:7b." in done.message
    assert done.error.startswith("AgentsError: ")
    assert done.transcript_complete()
