"""Re-running for free: an on-disk response cache, and replay from a transcript.

:class:`CachedModel` keys each call by the model's name, the agent and the exact
prompt, so an unchanged analysis re-runs with no model call and the same answer;
any change in the prompt (a different result, an edited step) misses the cache
and calls the model. :class:`ReplayModel` answers each agent with the replies
recorded in a run's transcript, in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .base import (
    ChatMessage,
    DeltaCallback,
    ModelClient,
    ModelReply,
    NoticeCallback,
    Tool,
    ToolCall,
    Usage,
)
from .scripted import ScriptedModel

__all__ = ["CachedModel", "ReplayModel", "default_cache_dir"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agentnb" / "responses"


class CachedModel:
    """Wraps a model with a response cache in ``directory`` (one JSON file per call)."""

    def __init__(self, inner: ModelClient, directory: str | Path | None = None) -> None:
        self.inner = inner
        self.directory = Path(directory) if directory else default_cache_dir()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def accepts_images(self) -> bool:
        return self.inner.accepts_images

    @property
    def takes_tools(self) -> bool:
        return bool(getattr(self.inner, "takes_tools", False))

    def _key(self, messages: Sequence[ChatMessage], role: str, tools: Sequence[Tool] | None) -> str:
        call = {
            "model": self.inner.name,
            "role": role,
            "messages": [m.to_openai() for m in messages],
        }
        if tools:
            call["tools"] = [dict(tool) for tool in tools]
        payload = json.dumps(call, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        role: str,
        on_delta: DeltaCallback | None = None,
        on_notice: NoticeCallback | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> ModelReply:
        path = self.directory / f"{self._key(messages, role, tools)}.json"
        try:
            entry = json.loads(path.read_text("utf-8"))
            text, model = str(entry["text"]), str(entry["model"])
            usage = Usage(int(entry["prompt_tokens"]), int(entry["completion_tokens"]), 1)
            calls = tuple(ToolCall(str(n), str(a)) for n, a in entry.get("tool_calls", ()))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a miss, or an unreadable entry: ask the model and rewrite it
        else:
            self.hits += 1
            if on_delta:
                on_delta(text)
            cached = Usage(usage.prompt_tokens, usage.completion_tokens, 1, usage.estimated, 1)
            return ModelReply(
                text, cached, model, finish_reason="stop", cached=True, tool_calls=calls
            )
        self.misses += 1
        more = {"tools": tools} if tools else {}
        reply = await self.inner.complete(
            messages, role=role, on_delta=on_delta, on_notice=on_notice, **more
        )
        self._store(path, reply)
        return reply

    def _store(self, path: Path, reply: ModelReply) -> None:
        entry = {
            "text": reply.text,
            "model": reply.model,
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "tool_calls": [[c.name, c.arguments] for c in reply.tool_calls],
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(
                f"cannot write to the response cache {self.directory}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayModel(ScriptedModel):
    """Answers each agent with the replies its transcript recorded, in order.

    Replayed calls cost nothing and count as cached.
    """

    def __init__(self, transcript: str | Path) -> None:
        from ..chat.events import ModelCalled
        from ..chat.transcript import read_transcript

        path = Path(transcript)
        replies: dict[str, list[str]] = {}
        for event in read_transcript(path):
            if isinstance(event, ModelCalled):
                replies.setdefault(event.agent, []).append(event.text)
        if not replies:
            raise ConfigError(f"the transcript {path} records no model replies to replay")
        super().__init__(replies, source=f"the transcript {path}", name="replay", cached=True)
