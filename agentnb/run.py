"""``agentnb.run`` and ``agentnb.arun``: a whole analysis from Python, headless.

They resolve the models, start a managed kernel (or use yours), load the data,
run the group chat and return a :class:`~agentnb.chat.group.RunResult`. Configuration
mistakes raise :class:`~agentnb.errors.ConfigError` before anything starts;
everything that happens later ends the run with a stop reason instead.

One module past the usual length on purpose: ``run``, ``arun``, ``resume`` and their
shared set-up are the one Python entry point.
"""

from __future__ import annotations

import ast
import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._sync import SyncBridge
from .chat.approval import ApprovalMode, Approver, check_mode
from .chat.context import ContextLimits
from .chat.events import Event
from .chat.group import GroupChat, Guards, RunResult, check_task
from .chat.resume import Resumption, resumption
from .chat.roles import ANALYST, CRITIC, Role
from .chat.speakers import SelectionState, SpeakerSelector
from .chat.termination import CostBudget, MaxTurns, TerminationCondition, TimeLimit, TokenBudget
from .chat.transcript import default_transcript_dir
from .chat.usage import PriceTable
from .errors import ConfigError
from .jupyter.notebook import build_notebook, save_notebook
from .jupyter.sources import save_values
from .kernel import KernelConfig, ManagedKernel
from .kernel.data import assigned, loader_code, variable_name
from .models import resolve_model
from .models.base import ModelClient
from .options import Resolved, RunOptions, specs

__all__ = ["DataSpec", "aresume", "arun", "kernel_config_for", "resume", "run", "run_with"]

DataSpec = str | os.PathLike[str] | Mapping[str, Any] | Sequence[str | os.PathLike[str]]
"""Files to load (paths) and/or a mapping of names to objects (DataFrames) to push."""


def _split_data(data: DataSpec | None) -> tuple[dict[str, Path], dict[str, Any]]:
    files: dict[str, Path] = {}
    objects: dict[str, Any] = {}
    if data is None:
        return files, objects
    items: list[Any] = [data] if isinstance(data, Mapping | str | os.PathLike) else list(data)
    for item in items:
        if isinstance(item, Mapping):
            for name, value in item.items():
                if not str(name).isidentifier():
                    raise ConfigError(f"data name {name!r} is not a valid Python variable name")
                objects[str(name)] = value
            continue
        path = Path(item).expanduser()
        if not path.is_file():
            raise ConfigError(f"--data {item}: no such file")
        name = variable_name(path)
        if name in files:
            raise ConfigError(f"--data: two files would both be called {name!r}; rename one")
        files[name] = path.resolve()
    clash = set(files) & set(objects)
    if clash:
        raise ConfigError(f"data name(s) given twice: {', '.join(sorted(clash))}")
    return files, objects


def _conditions(
    options: RunOptions, extra: TerminationCondition | None
) -> TerminationCondition | None:
    parts: list[TerminationCondition] = []
    if options.max_turns is not None:
        parts.append(MaxTurns(options.max_turns))
    if options.budget_tokens is not None:
        parts.append(TokenBudget(options.budget_tokens))
    if options.budget_cost is not None:
        parts.append(CostBudget(options.budget_cost))
    if options.time_limit is not None:
        parts.append(TimeLimit(options.time_limit))
    if extra is not None:
        parts.append(extra)
    if not parts:
        return None
    combined = parts[0]
    for part in parts[1:]:
        combined = combined | part
    return combined


def _check_out(out: str | Path, what: str = "--out") -> Path:
    """Fail before any token is spent when the notebook could not be written;
    ``what`` names the flag or command in the message."""
    path = Path(out).expanduser().absolute()
    if path.suffix != ".ipynb":
        raise ConfigError(f"{what} {out}: the analysis notebook's name must end in .ipynb")
    parent = path.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {out}: cannot write into {parent}; choose a writable folder")
    if path.is_dir():
        raise ConfigError(f"{what} {out}: is a folder; give a file name ending in .ipynb")
    return path


class _Default:
    """``max_turns``'s default in :func:`arun`: not set, so ``$AGENTNB_MAX_TURNS``
    and then 30 apply (an explicit None means no limit)."""

    def __repr__(self) -> str:
        return "30"


_DEFAULT: Any = _Default()


async def arun(
    task: str,
    *,
    data: DataSpec | None = None,
    model: str | ModelClient | None = None,
    analyst_model: str | ModelClient | None = None,
    critic_model: str | ModelClient | None = None,
    approve: ApprovalMode | None = None,
    approver: Approver | None = None,
    protocol: str | None = None,
    max_turns: int | None = _DEFAULT,
    step_timeout: float | None = None,
    model_timeout: float | None = None,
    first_token_timeout: float | None = None,
    retries: int | None = None,
    retry_backoff: float | None = None,
    max_tokens: int | None = None,
    budget_tokens: int | None = None,
    budget_cost: float | None = None,
    time_limit: float | None = None,
    roles: Sequence[Role] | None = None,
    selector: str | SpeakerSelector | Callable[[SelectionState], object] = "workflow",
    selector_model: str | ModelClient | None = None,
    termination: TerminationCondition | None = None,
    guards: Guards | None = None,
    limits: ContextLimits | None = None,
    vision: bool | None = None,
    cache: bool | str | Path | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    transcript: str | Path | None = None,
    kernel: ManagedKernel | None = None,
    kernel_config: KernelConfig | None = None,
    gateway: str | None = None,
    gateway_token: str | None = None,
    sandbox: bool | str | None = None,
    network: bool | None = None,
    memory_limit: int | str | None = None,
    notes: bool | str | None = None,
    history: str = "",
    data_names: Sequence[str] = (),
    out: str | Path | None = None,
    data_sources: Mapping[str, str] | None = None,
    on_event: Callable[[Event], None] | None = None,
    stop: asyncio.Event | None = None,
    resume: Resumption | None = None,
) -> RunResult:
    """Run an analysis to its end. See :func:`run` for the arguments."""
    keywords = {n: v for n, v in locals().items() if n in specs() and v is not _DEFAULT}
    resolved = RunOptions.from_keywords(keywords, defaults={"approve": "never"})
    return await run_with(
        task,
        resolved,
        data=data,
        approver=approver,
        roles=roles,
        selector=selector,
        selector_model=selector_model,
        termination=termination,
        guards=guards,
        limits=limits,
        api_key=api_key,
        prices=prices,
        kernel=kernel,
        kernel_config=kernel_config,
        history=history,
        data_names=data_names,
        data_sources=data_sources,
        on_event=on_event,
        stop=stop,
        resume=resume,
    )


def kernel_config_for(resolved: Resolved, base: KernelConfig | None = None) -> KernelConfig:
    """The managed kernel the options ask for. Over a ``base`` configuration,
    only the options the caller set explicitly apply (not the environment's)."""
    options, sources = resolved.options, resolved.sources
    config = base or KernelConfig()

    def wanted(name: str) -> bool:
        return base is None or sources[name] in ("argument", "flag")

    changes: dict[str, Any] = {}
    if options.step_timeout is not None and wanted("step_timeout"):
        changes["step_timeout"] = options.step_timeout
    if wanted("sandbox"):
        changes["sandbox"] = options.sandbox
    if wanted("network"):
        changes["network"] = options.network
    if options.memory_limit is not None and wanted("memory_limit"):
        changes["memory_limit"] = options.memory_limit
    if options.gateway is not None and (wanted("gateway") or config.gateway is None):
        changes["gateway"] = options.gateway
    if options.gateway_token is not None:
        if options.gateway or config.gateway:
            changes["gateway_token"] = options.gateway_token
        elif sources["gateway_token"] == "argument":
            raise ConfigError("gateway_token was given without a gateway URL (gateway=...)")
    return replace(config, **changes)


async def run_with(
    task: str,
    resolved: Resolved,
    *,
    data: DataSpec | None = None,
    approver: Approver | None = None,
    roles: Sequence[Role] | None = None,
    selector: str | SpeakerSelector | Callable[[SelectionState], object] = "workflow",
    selector_model: str | ModelClient | None = None,
    termination: TerminationCondition | None = None,
    guards: Guards | None = None,
    limits: ContextLimits | None = None,
    api_key: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    kernel: ManagedKernel | None = None,
    kernel_config: KernelConfig | None = None,
    history: str = "",
    data_names: Sequence[str] = (),
    data_sources: Mapping[str, str] | None = None,
    on_event: Callable[[Event], None] | None = None,
    stop: asyncio.Event | None = None,
    resume: Resumption | None = None,
) -> RunResult:
    """:func:`arun` with its options resolved already (by a flag parser and
    configuration, or by :func:`arun` from its keywords)."""
    options = resolved.options
    check_task(task)  # before a kernel starts
    approve = check_mode(options.approve or "never")
    if approve != "never" and approver is None:
        raise ConfigError(
            f"approve={approve!r} needs an approver (a function taking an ApprovalRequest and "
            "returning a Decision); use approve='never' for an autonomous run"
        )
    files, objects = _split_data(data)
    setup = loader_code(files) if files else None
    known = [*files, *objects, *data_names]
    if resume is not None:
        if files:
            raise ConfigError("a resumed run loads its data as the earlier run did: give no files")
        setup, known = resume.data_code, [*resume.data_names]
        missing = [n for n in resume.data_names if n not in assigned(setup) and n not in objects]
        if missing and kernel is None:
            raise ConfigError(
                f"the earlier run was given {', '.join(missing)} from a notebook's variables: "
                f"pass them again (data={{{missing[0]!r}: ...}}) or resume it in that notebook "
                "(%agents resume)"
            )
    out_path = _check_out(options.out) if options.out is not None else None
    conditions = _conditions(options, termination)
    owned = kernel is None
    if kernel is None:
        readable = [*files.values(), *(_files_in(setup) if resume is not None else ())]
        config = _readable(kernel_config_for(resolved, kernel_config), readable)
        kernel = ManagedKernel(config)
    elif any(
        resolved.sources[name] == "argument"
        for name in ("gateway", "gateway_token", "sandbox", "network", "memory_limit")
    ):
        raise ConfigError(
            "give a kernel, or where and how to start one (gateway, sandbox, network), not "
            "both: a started kernel runs where and as it is"
        )
    roles = list(roles) if roles is not None else [ANALYST, CRITIC]

    clients: dict[str | int, ModelClient] = {}

    def client(spec: str | ModelClient | None) -> ModelClient:
        key = spec if isinstance(spec, str) else id(spec)
        if key not in clients:  # one client per spec: a script answers every role
            clients[key] = resolve_model(
                spec,
                base_url=options.base_url,
                api_key=api_key,
                vision=options.vision or None,
                cache=options.cache,
                timeout=options.model_timeout,
                max_tokens=options.max_tokens,
                retries=options.retries,
                retry_backoff=options.retry_backoff,
                first_token_timeout=options.first_token_timeout,
            )
        return clients[key]

    per_role = {"analyst": options.analyst_model, "critic": options.critic_model}
    models = {r.name: client(r.model or per_role.get(r.name) or options.model) for r in roles}
    if selector == "model" or selector_model is not None:
        models["selector"] = client(selector_model or options.model)

    transcript = options.transcript
    if transcript is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        transcript = str(default_transcript_dir() / f"{stamp}-{os.getpid()}.jsonl")
    events: list[Event] = []
    try:
        unseen = {name: path for name, path in files.items() if not kernel.can_read(path)}
        if unseen:
            # a remote kernel cannot open this machine's files, nor a sandboxed one
            # files outside its view: read them here and push them; the saved notebook
            # still reads them, as a local kernel would
            objects = {**await asyncio.to_thread(_read_here, unseen), **objects}
            data_sources = {
                **{name: loader_code({name: path}) for name, path in unseen.items()},
                **(data_sources or {}),
            }
            files = {name: path for name, path in files.items() if name not in unseen}
            setup = loader_code(files) if files else None
        pushed = dict(objects)
        for name, value in objects.items():
            await kernel.push(name, value)
        chat = GroupChat(
            roles=roles,
            models=models,
            executor=kernel,
            approve=approve,
            approver=approver,
            selector=selector,
            termination=conditions,
            guards=guards,
            limits=limits,
            data_code=setup,
            data_names=list(dict.fromkeys(known)),
            step_timeout=options.step_timeout,
            history=history,
            vision=options.vision,
            protocol=options.protocol,
            resume=resume,
            prices=PriceTable.load(prices),
            transcript=Path(transcript),
            observers=[events.append, *([on_event] if on_event else [])],
        )
        if stop is None:
            result = await chat.run(task)
        else:
            stopper = asyncio.ensure_future(_stop_when_set(stop, chat))
            try:
                result = await chat.run(task)
            finally:
                stopper.cancel()
        if out_path is not None:
            sources = dict(data_sources or {})
            # pushed data no code recreates is saved beside the notebook
            sources.update(
                save_values({n: v for n, v in pushed.items() if n not in sources}, out_path)
            )
            notebook = build_notebook(events, data_sources=sources, folder=out_path.parent)
            result = replace(result, notebook=save_notebook(notebook, out_path))
        return result
    finally:
        for c in clients.values():
            await c.aclose()
        if owned:
            await kernel.shutdown()


def _read_here(files: Mapping[str, Path]) -> dict[str, Any]:
    """The data files as DataFrames, read in this process with the kernel's own code."""
    loaded: dict[str, Any] = {}
    for name, path in files.items():
        namespace: dict[str, Any] = {}
        code = loader_code({name: path})  # our own pd.read_* line, as the kernel runs it
        try:
            exec(code, namespace)
        except Exception as err:
            raise ConfigError(
                f"--data {path}: could not be read ({type(err).__name__}: {err})"
            ) from None
        loaded[name] = namespace[name]
    return loaded


def _files_in(code: str | None) -> list[Path]:
    """The files a data-loading cell reads (string constants that name one)."""
    if not code:
        return []
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            path = Path(node.value)
            if path.is_absolute() and path.is_file():
                found.append(path)
    return found


async def aresume(transcript: str | os.PathLike[str], /, **options: Any) -> RunResult:
    """Continue a run that was stopped or cut short, from its transcript.

    The steps that worked run again in a fresh managed kernel (shown as they run),
    then the chat goes on where it stopped. Takes :func:`arun`'s keywords; without a
    model, each role gets the model it had. Data the earlier run was given from a
    notebook's variables is passed again as ``data={"name": value}``.
    """
    earlier = resumption(transcript)
    named = ("model", "analyst_model", "critic_model")
    if not any(options.get(k) or os.environ.get(f"AGENTNB_{k.upper()}") for k in named):
        options.update(earlier.role_models)
    return await arun(earlier.task, resume=earlier, **options)


def resume(transcript: str | os.PathLike[str], /, **options: Any) -> RunResult:
    """:func:`aresume` from synchronous code."""
    bridge = SyncBridge()
    try:
        return bridge.run(aresume(transcript, **options))
    finally:
        bridge.close()


def _readable(config: KernelConfig, files: Iterable[Path]) -> KernelConfig:
    """``config`` with the data files readable in its sandbox."""
    return replace(config, readable=(*config.readable, *(str(path) for path in files)))


async def _stop_when_set(stop: asyncio.Event, chat: GroupChat) -> None:
    await stop.wait()
    chat.stop()


def run(task: str, **options: Any) -> RunResult:
    """Run an analysis to its end from synchronous code (works inside Jupyter too).

    Args:
        task: what to find out, in words.
        data: file paths (CSV, Parquet, JSON, Excel, …, loaded as DataFrames named
            after the files) and/or a mapping of names to objects pushed into the
            managed kernel.
        model: the model of every role: a name for the OpenAI-compatible endpoint
            (``OPENAI_BASE_URL`` / ``base_url``), ``scripted:PATH`` or ``replay:TRANSCRIPT``.
        analyst_model, critic_model: a different model for one role.
        approve: ``never`` (default here), ``final`` or ``each``; with an ``approver``.
        protocol: ``auto`` (tool calls where the endpoint takes them, else the text
            protocol), ``tools`` or ``text``.

    Every option (see :class:`~agentnb.options.RunOptions`) left out falls back to
    its ``AGENTNB_*`` environment variable, then to its default.
        max_turns, budget_tokens, budget_cost, time_limit: stop conditions.
        step_timeout: seconds one step may run before it is interrupted (default:
            the kernel's ``KernelConfig.step_timeout``, 120).
        model_timeout: seconds a model's reply may go silent after its first token
            before it is retried and finally given up (default 60).
        first_token_timeout: seconds to wait for the first token (default 300: a local
            model on a CPU reads a long prompt for minutes before it answers).
        retries, retry_backoff: how often a model call that may pass is retried (4),
            and the seconds before the first retry (1, doubled for each next one).
        max_tokens: tokens a model's reply may have (default 8192); a reply cut by it
            is never used, and the model is asked for a shorter one.
        roles: the participants (default analyst and critic); add personas with
            :meth:`Role.persona <agentnb.chat.roles.Role.persona>`.
        selector: ``workflow``, ``round_robin``, ``model`` or a function.
        vision: send plots to models that accept images.
        cache: reuse replies from the on-disk response cache.
        transcript: where to write the JSONL transcript (default ``.agentnb/runs/``).
        kernel: a started ManagedKernel to use (it is not shut down).
        gateway: run the managed kernel on this Jupyter Kernel Gateway or Enterprise
            Gateway (default ``kernel_config.gateway``, else ``$AGENTNB_GATEWAY``).
        gateway_token: the gateway's token (default ``$AGENTNB_GATEWAY_TOKEN``).
        sandbox: run the local managed kernel in a bubblewrap sandbox: ``True`` /
            ``"on"`` (the default, unless ``$AGENTNB_SANDBOX=off``) or ``False`` /
            ``"off"`` (the agents' code runs as you, with your files and network).
        network: let the sandboxed kernel open outbound connections (default: none).
        memory_limit: bytes (or ``"4G"``) the managed kernel may take.
        notes: a notebook's ``%%agents --notes``: each inserted step's reason and the
            final report as markdown cells; nothing is inserted here, so unused.
        out: write the analysis notebook there (``RunResult.notebook``).
        data_sources: code that recreates pushed objects in the saved notebook
            (``{"sales": "pd.read_csv('sales.csv')"}``).
        data_names: variables already in ``kernel`` to describe to the agents.
        on_event: called with every event as it happens.
        stop: an :class:`asyncio.Event` (``arun`` only); setting it ends the run
            as the user's Stop does.
    """
    bridge = SyncBridge()
    try:
        return bridge.run(arun(task, **options))
    finally:
        bridge.close()
