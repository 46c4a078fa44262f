"""Resuming a run from its transcript.

A run ended by Stop, a crash, a dead kernel or a closed laptop left its JSONL
transcript behind, every event in it. :func:`resumption` reads back what a new
run needs to go on where that one stopped: the task, the models, the data's
loading code, and the steps that ran with their proposals and reviews. The new
run (``GroupChat(resume=...)``) runs the steps that had worked again, in a fresh
kernel, in view of the user, and the chat continues from there; steps that had
failed are kept as they were, so the analyst sees the same history.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .events import (
    Event,
    ExecutionFinished,
    ExecutionStarted,
    MessagePosted,
    RunFinished,
    RunStarted,
)
from .messages import Proposal, Review, Step
from .transcript import read_transcript

__all__ = ["Resumption", "resumption"]


@dataclass(frozen=True)
class Resumption:
    """What a resumed run starts from."""

    run_id: str
    """The run it continues."""
    task: str
    models: dict[str, str]
    """Agent to model name, as the earlier run used them."""
    data_names: tuple[str, ...]
    data_code: str | None
    """The earlier run's step 0: the code that loaded its data files."""
    steps: tuple[Step, ...]
    stopped: str
    """Why the earlier run ended."""

    @property
    def role_models(self) -> dict[str, str]:
        """``analyst_model`` and ``critic_model`` as the earlier run had them."""
        return {f"{r}_model": m for r, m in self.models.items() if r in ("analyst", "critic")}


def resumption(transcript: str | os.PathLike[str]) -> Resumption:
    """Read a transcript back into a :class:`Resumption`; a :class:`ConfigError`
    when there is nothing to resume (no run, or one that ended approved)."""
    path = Path(transcript).expanduser()
    if not path.is_file():
        raise ConfigError(f"resume {transcript}: no such transcript")
    events = list(read_transcript(path))
    return from_events(events, where=str(path))


def from_events(events: Sequence[Event], *, where: str = "the transcript") -> Resumption:
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    if started is None:
        raise ConfigError(f"resume {where}: it holds no run (no RunStarted event)")
    finished = next((e for e in events if isinstance(e, RunFinished)), None)
    if finished is not None and finished.reason.kind == "approved":
        raise ConfigError(
            f"resume {where}: that run already ended with an approved answer; start a new one"
        )
    setup = next((e.code for e in events if isinstance(e, ExecutionStarted) and e.step == 0), None)
    proposals: dict[int, Proposal] = {}
    reviews: dict[int, list[str]] = {}
    steps: list[Step] = []
    for event in events:
        if isinstance(event, MessagePosted):
            message = event.message
            if isinstance(message, Proposal):
                proposals[message.step] = message
                reviews[message.step] = []  # a new proposal: earlier reviews were of another
            elif isinstance(message, Review) and message.step is not None:
                said = message.text.strip()
                reviews.setdefault(message.step, []).append(
                    f"{message.sender}: {said}" if said else f"{message.sender}: -"
                )
        elif isinstance(event, ExecutionFinished) and event.step > 0:
            proposal = proposals.get(event.step)
            code = event.execution.code
            steps.append(
                Step(
                    number=event.step,
                    author=proposal.sender if proposal else "analyst",
                    rationale=proposal.rationale if proposal else "",
                    code=code,
                    proposed_code=proposal.code if proposal else code,
                    execution=event.execution,
                    reviews=tuple(reviews.get(event.step, ())),
                )
            )
    return Resumption(
        run_id=started.run_id,
        task=started.task,
        models=dict(started.models),
        data_names=tuple(started.data),
        data_code=setup,
        steps=tuple(steps),
        stopped=finished.reason.message if finished is not None else "the run never ended",
    )
