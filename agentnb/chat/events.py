"""Observer events: what a run tells the outside world, in order.

Events are not agent messages: token deltas, usage, approvals and executions
are for the user interfaces and the transcript, and never enter a model's
context (except the chat messages carried by :class:`MessagePosted`). Every
event is written to the run's JSONL transcript before anyone else sees it.

Each event has the run's id, a sequence number and a wall-clock time; they are
filled in by the chat when it emits the event.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from ..models.base import Usage
from .approval import ApprovalRequest, Decision
from .messages import (
    AgentMessage,
    DisplayUpdate,
    Execution,
    Feedback,
    FinalReport,
    Proposal,
    Review,
    StepResult,
)
from .termination import StopReason

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - the openai package depends on typing_extensions
    from typing_extensions import assert_never

__all__ = [
    "EVENT_TYPES",
    "AgentThinking",
    "AnyEvent",
    "ApprovalDecided",
    "ApprovalRequested",
    "DataReady",
    "Event",
    "ExecutionFinished",
    "ExecutionOutput",
    "ExecutionStarted",
    "KernelReady",
    "MessagePosted",
    "ModelCalled",
    "Notice",
    "RunFinished",
    "RunStarted",
    "TokenDelta",
    "assert_never",
    "from_record",
    "is_event",
    "to_record",
]

Phase = Literal["propose", "review_step", "review_final", "select", "setup"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    run_id: str = ""
    seq: int = 0
    time: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    task: str
    models: dict[str, str]
    """Agent name to model name."""
    approve: str
    data: tuple[str, ...] = ()
    """Names of the data the agents were given."""
    resumed_from: str | None = None
    """The run this one continues (``agentnb resume``), if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelReady(Event):
    """The managed kernel answers; ``isolation`` says how it is kept from the user's
    secrets, files and network (``sandboxed``: True, False, or None for a gateway's)."""

    isolation: str
    sandboxed: bool | None = None
    scratch: str | None = None
    """The one folder a sandboxed kernel may write to."""

    @property
    def label(self) -> str:
        """A few words for a header: the long form is :attr:`isolation`."""
        if self.sandboxed is None:
            return "kernel on a gateway (the gateway isolates it)"
        if not self.sandboxed:
            return "kernel NOT sandboxed"
        return "sandboxed kernel" + (", network on" if "outbound network" in self.isolation else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReady(Event):
    """The data is in the managed kernel; ``summary`` is what the agents are told."""

    names: tuple[str, ...]
    summary: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentThinking(Event):
    """An agent was asked to speak; its reply will stream as :class:`TokenDelta`."""

    agent: str
    phase: Phase
    step: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenDelta(Event):
    agent: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCalled(Event):
    """A model call finished: its whole reply, its usage and its cost."""

    agent: str
    model: str
    text: str
    usage: Usage
    cost: float | None
    """Dollars, or None when the model's price is unknown."""
    duration: float
    cached: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagePosted(Event):
    """A message entered the group chat."""

    message: AgentMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested(Event):
    request: ApprovalRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalDecided(Event):
    request: ApprovalRequest
    decision: Decision


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStarted(Event):
    step: int
    """0 for the set-up that loads the data, then 1, 2, …"""
    code: str
    replayed: bool = False
    """A step of the run being resumed, run again (it was approved then)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionOutput(Event):
    """A running step's outputs so far (sent while it runs, when they changed)."""

    step: int
    outputs: tuple[dict[str, Any], ...]
    elapsed: float
    """Seconds since the step started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionFinished(Event):
    step: int
    execution: Execution
    replayed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Event):
    """Something the user should know: a retry, a protocol slip, a loop guard."""

    level: Literal["info", "warning", "error"]
    text: str
    agent: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    reason: StopReason
    final_report: str | None
    usage: dict[str, Usage] = field(default_factory=dict)
    """Per agent (the speaker selector included when it was called)."""
    cost: float | None = None
    costs: dict[str, float | None] = field(default_factory=dict)
    """Dollars per agent (None where the model's price is unknown)."""


AnyEvent = (
    RunStarted
    | KernelReady
    | DataReady
    | AgentThinking
    | TokenDelta
    | ModelCalled
    | MessagePosted
    | ApprovalRequested
    | ApprovalDecided
    | ExecutionStarted
    | ExecutionOutput
    | ExecutionFinished
    | Notice
    | RunFinished
)
"""Every event a run emits: a closed union. A consumer ``match``-es on it and ends with
``case _: assert_never(event)`` (:func:`assert_never` from here, for Python 3.10), so
mypy names every consumer a new event must reach."""

EVENT_TYPES: tuple[type[Event], ...] = typing.get_args(AnyEvent)
"""The members of :data:`AnyEvent`, in order."""


def is_event(value: object) -> TypeGuard[AnyEvent]:
    """``value`` is one of the events a run emits (a member of :data:`AnyEvent`)."""
    return isinstance(value, EVENT_TYPES)


# --- transcript records -------------------------------------------------------

_RECORD_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        *EVENT_TYPES,
        Proposal,
        FinalReport,
        Review,
        Feedback,
        StepResult,
        Execution,
        DisplayUpdate,
        ApprovalRequest,
        Decision,
        StopReason,
        Usage,
    )
}


def to_record(obj: Any) -> Any:
    """A JSON-ready form of an event (nested records carry their ``type``)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        record: dict[str, Any] = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            record[f.name] = to_record(getattr(obj, f.name))
        return record
    if isinstance(obj, dict):
        return {str(k): to_record(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_record(v) for v in obj]
    return obj


def from_record(record: Any) -> Any:
    """The inverse of :func:`to_record`."""
    if isinstance(record, list):
        return [from_record(v) for v in record]
    if not isinstance(record, dict):
        return record
    kind = record.get("type")
    cls = _RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return {k: from_record(v) for k, v in record.items()}
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in record:
            # kernel outputs are nbformat dicts, kept as they are whatever keys they hold
            raw = record[f.name]
            value = raw if f.name == "outputs" else from_record(raw)
            if isinstance(value, list) and _is_tuple(hints.get(f.name)):
                value = tuple(value)
            values[f.name] = value
    return cls(**values)


def _is_tuple(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_is_tuple(h) for h in typing.get_args(hint))
    return False
