"""The contract every model client keeps, and the records that cross it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ModelError

__all__ = [
    "ChatMessage",
    "ContentPart",
    "ContextTooLong",
    "DeltaCallback",
    "ModelClient",
    "ModelReply",
    "NoticeCallback",
    "Tool",
    "ToolCall",
    "ToolsRefused",
    "Usage",
    "estimate_tokens",
    "message_text",
]

ContentPart = Mapping[str, Any]
"""An OpenAI chat content part: ``{"type": "text", "text": ...}`` or
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a prompt, in the OpenAI chat shape."""

    role: Literal["system", "user", "assistant"]
    content: str | tuple[ContentPart, ...]

    def to_openai(self) -> dict[str, Any]:
        content: Any = (
            self.content if isinstance(self.content, str) else [dict(p) for p in self.content]
        )
        return {"role": self.role, "content": content}


def message_text(message: ChatMessage) -> str:
    """The text of a message, images left out."""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(str(p.get("text", "")) for p in message.content if p.get("type") == "text")


def estimate_tokens(text: str) -> int:
    """A server-independent token estimate: about four characters per token.

    Used only where a server reports no usage (scripted replies, some local
    servers); results say when a count is an estimate.
    """
    return (len(text) + 3) // 4


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one model call (or a sum of calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    estimated: bool = False
    """At least one count is an estimate, not the server's figure."""
    cached: int = 0
    """Calls answered from the response cache, which cost nothing."""
    reasoning_tokens: int = 0
    """Of the completion tokens, those the model spent thinking (where the server
    says: ``completion_tokens_details.reasoning_tokens``)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.calls + other.calls,
            self.estimated or other.estimated,
            self.cached + other.cached,
            self.reasoning_tokens + other.reasoning_tokens,
        )


Tool = Mapping[str, Any]
"""An OpenAI function tool: ``{"type": "function", "function": {"name": ..., ...}}``."""


class ContextTooLong(ModelError):
    """The prompt is longer than the model's context window (the server said so)."""


class ToolsRefused(ModelError):
    """The endpoint refused a request with tools (said once: the caller goes on
    with the text protocol, and the client no longer offers tools)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of one of the tools a prompt offered."""

    name: str
    arguments: str
    """The arguments as the model wrote them: JSON text, unchecked."""


@dataclass(frozen=True, slots=True)
class ModelReply:
    """What one model call produced."""

    text: str
    """The reply's text; for a tool call, the call written out in the text protocol
    (what the transcript keeps, what a replay answers)."""
    usage: Usage
    model: str
    """The model that answered, as the server named it."""
    finish_reason: str | None = None
    cached: bool = False
    tool_calls: tuple[ToolCall, ...] = ()


DeltaCallback = Callable[[str], None]
"""Called with each piece of text as the model streams it."""

NoticeCallback = Callable[[str], None]
"""Called with a plain-words note about the call (a retry and why, a slow server)."""


@runtime_checkable
class ModelClient(Protocol):
    """A chat model. Implementations: OpenAI-compatible, scripted, cached, replay.

    ``complete`` sends one prompt and returns the whole reply. A client that can
    offer the model tools says so with a ``takes_tools`` attribute that is true;
    only then is ``complete`` given ``tools=`` (and the model must call one of
    them). ``on_delta`` receives
    the text as it streams; when a call is retried after a partial stream,
    ``on_delta("")`` is never used to signal it: the caller is told through
    ``on_notice`` and the final ``ModelReply.text`` is the only authoritative text.
    Failures raise :class:`agentnb.errors.ModelError` with a message that names the
    endpoint and says how to fix the problem.
    """

    @property
    def name(self) -> str:
        """The model's name as the user gave it (shown in usage tables)."""
        ...

    @property
    def accepts_images(self) -> bool:
        """Whether prompts may carry image parts."""
        ...

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        role: str,
        on_delta: DeltaCallback | None = None,
        on_notice: NoticeCallback | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> ModelReply:
        """Answer ``messages``; ``role`` names the agent asking (scripted models use it)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
