"""Model fallback (``--model a,b``) and a prompt too long for the model's context,
through the real ``openai`` client and a loopback server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentnb import ManagedKernel
from agentnb.chat.context import Brief, ContextLimits, author_prompt
from agentnb.chat.events import Event, ModelCalled, Notice
from agentnb.chat.group import RunResult
from agentnb.chat.messages import Execution, Step
from agentnb.chat.roles import ANALYST
from agentnb.models.base import message_text
from agentnb.models.server import ScriptedServer, Status
from agentnb.run import arun

STEP = "Sum them.\n\n```python\nprint(sum([1, 2, 3]))\n```"
HAPPY = (STEP, "APPROVE", "The sum is 6.", "APPROVE")
TOO_LONG = Status(
    400,
    body={
        "error": {
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
        }
    },
)


async def analyse(
    srv: ScriptedServer, model: str, kernel: ManagedKernel, tmp_path: Path, **options: Any
) -> tuple[list[Event], RunResult]:
    events: list[Event] = []
    result = await arun(
        "Add up 1, 2 and 3.",
        model=model,
        base_url=srv.base_url,
        retries=0,
        kernel=kernel,
        transcript=tmp_path / "t.jsonl",
        on_event=events.append,
        **options,
    )
    return events, result


async def test_a_model_that_fails_for_good_hands_over_to_the_next(
    server: Callable[..., ScriptedServer], shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    srv = server(*HAPPY, models=("small",))
    events, result = await analyse(srv, "missing, small", shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    moved = [e.text for e in events if isinstance(e, Notice) and "failed for good" in e.text]
    # the roles share the client: it moved once, saying why (the server's 404) and to what
    (said,) = moved
    assert "moving to small for the rest of the run" in said
    assert "'missing' is not known" in said
    assert {e.model for e in events if isinstance(e, ModelCalled)} == {"small"}
    assert [r["model"] for r in srv.requests] == ["missing", *["small"] * 4]


async def test_the_last_model_failing_ends_the_run_with_its_reason(
    server: Callable[..., ScriptedServer], shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    srv = server(*HAPPY, models=("small",))
    _, result = await analyse(srv, "missing,also-missing", shared_kernel, tmp_path)
    assert result.stop_reason.kind == "model_error"
    assert "'also-missing' is not known" in result.stop_reason.message


async def test_a_prompt_too_long_is_compacted_and_asked_again_once(
    server: Callable[..., ScriptedServer], shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    srv = server(TOO_LONG, *HAPPY)
    events, result = await analyse(srv, "scripted", shared_kernel, tmp_path)
    assert result.ok, result.stop_reason
    (said,) = [e.text for e in events if isinstance(e, Notice) and "too long" in e.text]
    assert "the oldest steps are compacted" in said
    assert "exceeds the available context size" in said  # the server's own words


async def test_a_prompt_still_too_long_after_compaction_is_a_clear_error(
    server: Callable[..., ScriptedServer], shared_kernel: ManagedKernel, tmp_path: Path
) -> None:
    srv = server(TOO_LONG, TOO_LONG, *HAPPY)
    _, result = await analyse(srv, "scripted", shared_kernel, tmp_path)
    assert result.stop_reason.kind == "model_error"
    assert "too long for scripted" in result.stop_reason.message
    assert "larger context window" in result.stop_reason.message
    assert len(srv.requests) == 2  # asked again once, not forever


def test_compaction_keeps_the_latest_steps_and_one_line_of_each_older_one() -> None:
    def step(n: int) -> Step:
        execution = Execution(
            code="",
            status="ok",
            execution_count=n,
            duration=0.1,
            outputs=({"output_type": "stream", "name": "stdout", "text": "x" * 2_000},),
        )
        code = f"frame_{n} = load({n})\n" + "\n".join(f"line_{i} = {i}" for i in range(40))
        return Step(
            number=n,
            author="analyst",
            rationale="",
            code=code,
            proposed_code=code,
            execution=execution,
        )

    brief = Brief(task="T", data_summary="d" * 3_000, steps=[step(n) for n in range(1, 6)])
    full = message_text(author_prompt(ANALYST, brief)[-1])
    small = message_text(author_prompt(ANALYST, brief, limits=ContextLimits().compacted())[-1])
    assert len(small) < len(full) / 2
    assert "### Step 1 (ok): `frame_1 = load(1)` …" in small
    assert "line_39 = 39" in small.split("### Step 5")[1]  # the latest in full
    assert "### Step 4 (ok)\n" in small
