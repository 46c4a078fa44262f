"""Scripted replies: a model that answers from a file, for tests, demos and
users' own tests, with no network.

The file maps an agent's name to its replies, in order (JSON or YAML)::

    analyst:
      - |
        Load the data first.
        ```python
        df.head()
        ```
      - The answer is ...
    critic:
      - APPROVE
      - APPROVE, the report matches the results.

A ``default`` list answers agents the file does not name. Every prompt received
is recorded (``prompts``; as text per agent, ``prompt_texts``), and written as JSON
lines when ``record`` is given.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from .base import (
    ChatMessage,
    DeltaCallback,
    ModelReply,
    NoticeCallback,
    Tool,
    Usage,
    estimate_tokens,
    message_text,
)

__all__ = ["ScriptedModel", "load_script"]


def load_script(path: str | Path) -> dict[str, list[str]]:
    """Read a script file: ``{agent: [reply, ...]}`` from JSON or YAML."""
    path = Path(path).expanduser()
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the script {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml's and json's errors share no base class
        raise ConfigError(
            f"the script {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}"
        ) from exc
    return _check_script(data, str(path))


def _check_script(data: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(data, Mapping) or not all(
        isinstance(v, list) and all(isinstance(r, str) for r in v) for v in data.values()
    ):
        raise ConfigError(
            f"the script {where} must map agent names to lists of reply strings, "
            'e.g. {"analyst": ["..."], "critic": ["APPROVE"]}'
        )
    return {str(k): list(v) for k, v in data.items()}


class ScriptedModel:
    """Answers each agent with the next reply of its list.

    ``chunk_delay`` (seconds) paces the streamed words, for demos.
    """

    def __init__(
        self,
        script: str | Path | Mapping[str, Sequence[str]],
        *,
        record: str | Path | None = None,
        chunk_delay: float = 0.0,
        vision: bool = False,
        source: str = "the given script",
        name: str = "scripted",
        cached: bool = False,
    ) -> None:
        if isinstance(script, str | Path):
            self._source = str(script)
            replies = load_script(script)
        else:
            self._source = source
            replies = _check_script(dict(script), self._source)
        self._name = name
        self._cached = cached
        self._replies = {k: list(v) for k, v in replies.items()}
        self._used: dict[str, int] = {}
        self._record = Path(record) if record else None
        self._delay = chunk_delay
        self._vision = vision
        self.prompts: list[tuple[str, list[ChatMessage]]] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def accepts_images(self) -> bool:
        return self._vision

    def prompt_texts(self, role: str) -> list[str]:
        """What ``role`` was asked, call by call: each prompt's messages but the system
        prompt, as text joined by newlines. For assertions on what an agent saw."""
        return [
            "\n".join(message_text(m) for m in messages if m.role != "system")
            for who, messages in self.prompts
            if who == role
        ]

    def remaining(self, role: str) -> int:
        return len(self._queue(role)) - self._used.get(self._key(role), 0)

    def _key(self, role: str) -> str:
        return role if role in self._replies else "default"

    def _queue(self, role: str) -> list[str]:
        return self._replies.get(self._key(role), [])

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        role: str,
        on_delta: DeltaCallback | None = None,
        on_notice: NoticeCallback | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> ModelReply:
        # scripted replies are text: it takes no tools, so ``tools`` never comes
        self.prompts.append((role, list(messages)))
        if self._record:
            with self._record.open("a", encoding="utf-8") as f:
                record = {"role": role, "messages": [m.to_openai() for m in messages]}
                f.write(json.dumps(record) + "\n")
        key = self._key(role)
        queue = self._queue(role)
        used = self._used.get(key, 0)
        if used >= len(queue):
            raise ModelError(
                f"the {self._name} model has no more replies for {role!r} in {self._source} "
                f"({len(queue)} given, all used)"
            )
        self._used[key] = used + 1
        text = queue[used]
        if on_delta:
            for piece in re.findall(r"\S+\s*|\s+", text):
                on_delta(piece)
                if self._delay:
                    await asyncio.sleep(self._delay)
        prompt = sum(estimate_tokens(message_text(m)) for m in messages)
        usage = Usage(prompt, estimate_tokens(text), 1, estimated=True, cached=int(self._cached))
        return ModelReply(text, usage, self._name, finish_reason="stop", cached=self._cached)

    async def aclose(self) -> None:
        return None
