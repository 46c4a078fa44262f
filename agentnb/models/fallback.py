"""Model fallback: ``--model a,b`` moves to the next model when one fails for good.

"For good" is what a :class:`~agentnb.errors.ModelError` means once the client's
own retries are spent: an unknown model, a server that keeps failing, a prompt
too long for that model. The move is said in a notice, and it lasts for the rest
of the run: a model that failed for good is not tried again on the next call. A
refusal of tools is not a failure (the caller moves to the text protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ModelError
from .base import (
    ChatMessage,
    DeltaCallback,
    ModelClient,
    ModelReply,
    NoticeCallback,
    Tool,
    ToolsRefused,
)

__all__ = ["FallbackModel"]


class FallbackModel:
    """The first of ``clients`` that works; the next one when it fails for good."""

    def __init__(self, clients: Sequence[ModelClient]) -> None:
        if not clients:
            raise ValueError("FallbackModel needs at least one client")
        self.clients = list(clients)
        self.current = 0

    def __repr__(self) -> str:
        return f"FallbackModel({', '.join(c.name for c in self.clients)})"

    @property
    def client(self) -> ModelClient:
        return self.clients[self.current]

    @property
    def name(self) -> str:
        return self.client.name

    @property
    def accepts_images(self) -> bool:
        return self.client.accepts_images

    @property
    def takes_tools(self) -> bool:
        return bool(getattr(self.client, "takes_tools", False))

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        role: str,
        on_delta: DeltaCallback | None = None,
        on_notice: NoticeCallback | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> ModelReply:
        while True:
            client = self.client
            more = {"tools": tools} if tools and getattr(client, "takes_tools", False) else {}
            try:
                return await client.complete(
                    messages, role=role, on_delta=on_delta, on_notice=on_notice, **more
                )
            except ToolsRefused:
                raise
            except ModelError as failed:
                if self.current + 1 >= len(self.clients):
                    raise
                self.current += 1
                if on_notice is not None:
                    on_notice(
                        f"{client.name} failed for good ({failed}); moving to "
                        f"{self.client.name} for the rest of the run"
                    )

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
