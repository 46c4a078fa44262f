"""Fixtures for model clients: scripted OpenAI-compatible servers and clients of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agentnb.models.openai_compat import OpenAIModel
from agentnb.models.server import ScriptedServer


@pytest.fixture(autouse=True)
def clean_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's OpenAI settings must not leak into these tests."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


class SleepRecorder:
    """Stands in for ``asyncio.sleep`` in retries: records the delay, waits not at all."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def make_model(sleeps: SleepRecorder) -> AsyncIterator[Callable[..., OpenAIModel]]:
    """``make_model(srv_or_url, model="scripted", **options)``: an OpenAIModel whose
    retries record their delays in ``sleeps`` instead of waiting; closed afterwards."""
    made: list[OpenAIModel] = []

    def make(target: ScriptedServer | str, model: str = "scripted", **options: Any) -> OpenAIModel:
        url = target if isinstance(target, str) else target.base_url
        options.setdefault("timeout", 5.0)
        client = OpenAIModel(model, base_url=url, sleep=sleeps, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
