"""The transcript holds every event before anyone sees it; cache and replay re-run for free."""

from __future__ import annotations

import json
from pathlib import Path

from agentnb.chat.events import (
    Event,
    ExecutionFinished,
    ModelCalled,
    Notice,
    RunFinished,
    to_record,
)
from agentnb.chat.transcript import read_transcript
from agentnb.models.cache import CachedModel, ReplayModel
from agentnb.models.scripted import ScriptedModel

from .conftest import ChatRunner, step

REPLIES = {
    "analyst": [step("tr_x = sum(range(5))\nprint(tr_x)"), "The sum is 10."],
    "critic": ["APPROVE", "APPROVE"],
}


async def test_every_event_is_in_the_transcript_in_order(chat: ChatRunner) -> None:
    run = await chat(REPLIES)
    written = list(read_transcript(run.transcript))
    assert written == run.events
    assert [e.seq for e in written] == list(range(1, len(written) + 1))
    assert run.result.transcript_path == run.transcript


async def test_each_event_is_on_disk_before_observers_see_it(
    chat: ChatRunner, tmp_path: Path
) -> None:
    lines_seen: list[int] = []
    path = tmp_path / "live.jsonl"

    def observe(event: Event) -> None:
        lines = path.read_text().splitlines()
        lines_seen.append(len(lines))
        assert json.loads(lines[-1]) == to_record(event)

    run = await chat(REPLIES, transcript=path, on_event=observe)
    assert run.result.ok
    assert lines_seen == list(range(1, len(lines_seen) + 1))


async def test_a_torn_last_line_is_skipped(chat: ChatRunner) -> None:
    run = await chat(REPLIES)
    with run.transcript.open("a") as f:
        f.write('{"type": "TokenDelta", "agent": "ana')  # a crash mid-write
    assert list(read_transcript(run.transcript)) == run.events


async def test_replay_from_a_transcript_reproduces_the_run_without_a_model(
    chat: ChatRunner,
) -> None:
    first = await chat(REPLIES)
    again = await chat(model=ReplayModel(first.transcript))
    assert again.result.ok
    assert again.result.final_report == first.result.final_report
    assert [s.code for s in again.result.steps] == [s.code for s in first.result.steps]
    assert [s.execution.stdout for s in again.result.steps] == ["10\n"]
    assert again.result.cost == 0.0
    assert all(e.cached for e in again.of(ModelCalled))


async def test_the_cache_answers_an_unchanged_rerun(chat: ChatRunner, tmp_path: Path) -> None:
    inner = ScriptedModel(REPLIES)
    cached = CachedModel(inner, tmp_path / "cache")
    first = await chat(model=cached)
    assert first.result.ok
    assert (cached.hits, cached.misses) == (0, 4)
    # a second run: the script is used up, so any miss would fail the run
    second = await chat(model=cached)
    assert second.result.ok, second.result.stop_reason
    assert (cached.hits, cached.misses) == (4, 4)
    assert second.result.final_report == first.result.final_report
    assert second.result.usage["analyst"].cached == 2
    assert second.of(ExecutionFinished)[0].execution.stdout == "10\n"


async def test_a_transcript_on_a_full_disk_does_not_end_the_run(chat: ChatRunner) -> None:
    # /dev/full takes the file open and fails every write with ENOSPC, as a full disk does
    run = await chat(REPLIES, transcript=Path("/dev/full"))
    assert run.result.ok
    assert [s.status for s in run.result.steps] == ["ok"]
    (notice,) = [n for n in run.of(Notice) if "transcript" in n.text]
    assert "/dev/full can no longer be written (No space left on device)" in notice.text
    assert notice.level == "error"
    assert run.events[0].seq == 1  # the event that failed to be written was still shown
    assert isinstance(run.events[-1], RunFinished)
