"""How fast the ``%%agents`` widget renders, in this process and in a real browser.

Part 1, first render (browser). ``jupyter lab`` and ``jupyter notebook`` (Notebook 7) on
127.0.0.1 with a random port and token, isolated config/data/runtime dirs, driven by headless
Debian chromium through Playwright. The notebook's first cell is ``%load_ext agentnb`` (which
pre-warms the managed kernel) and loads ``sales``. Once ``%agents status`` says the managed
kernel is running, the script presses Ctrl+Enter on

    %%agents --approve never --model scripted:replies.yaml --data sales

(the demo's replies and data) and measures, in the page, from the key press (a capturing
``keydown`` listener) to the first ``.agentnb-card`` in the cell's DOM (a MutationObserver) and
to the next animation frame. The same round runs two baselines in the same cell position: a
trivial cell ``1`` (key press to its output) and a cell that displays a plain
``ipywidgets.HTML``. The page also logs every kernel message with its arrival time, which splits
the agentnb figure into: key press → request sent → kernel busy → widget displayed → card's
comm message → card in the DOM. Cold: the first ``%%agents`` cell of a fresh user kernel, once
``%load_ext``'s background imports are done (target: first frame under 300 ms); warm: the cell
run again in the same kernel (under 200 ms); the managed kernel is warm in both. Then, where
the time goes: agentnb's functions on that path, wrapped in the user kernel by a cell of this
script, note when they start and end (``time.time()``, placed on the page's clock). A fresh
interpreter times the imports ``%load_ext`` and a first cell pay for.

Part 2, a streamed chunk (in process). A ``ChatView`` is fed ``TokenDelta`` events: the cost of
``handle()`` for a delta that is buffered by the throttle and for one that flushes (a widget
update: markdown of the whole reply so far, and a comm message). Widgets get a recording comm
that JSON-encodes each message as a kernel would. Then 500 deltas over 5 s in real time: how many
widget updates the 0.1 s throttle lets through, against no throttle.

Part 3, a 100-step conversation. In process: the events of a real 100-step scripted run (a
managed kernel runs the steps: small DataFrame tables, a PNG every 10th step) are fed to a fresh
``ChatView``: total time, time per step at the start and at the end, comm messages and bytes,
tracemalloc peak. In the browser: the same replies in a real ``%%agents --approve never`` cell;
while it renders and after, the page records long tasks, animation-frame gaps, the latency of a
widget button click (a kernel round trip) and of a trivial cell, and the DOM size; once more
in the first frontend with the steps not inserted as notebook cells (the widget's own share).

Needs the project venv (jupyterlab, notebook, playwright) and /usr/bin/chromium.

    python bench/notebook_render.py [--quick] [--reps N] [--frontends lab,notebook]
                                    [--parts first,stream,long] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from _util import (
    RESULTS,
    CpuWatch,
    machine_info,
    ms,
    percentile,
    print_table,
    summarize,
    write_json,
)

from tests.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    ConsoleLog,
    JupyterServer,
    Notebook,
)

PACKAGES = [
    "agentnb",
    "ipywidgets",
    "ipykernel",
    "jupyterlab",
    "notebook",
    "jupyter_server",
    "playwright",
    "markdown-it-py",
    "pygments",
    "pandas",
]
TARGETS_MS = {"cold": 300.0, "warm": 200.0}
"""The first frame's targets (issue 19): a first cell of a fresh kernel, a cell run again."""
DEMO = Path(__file__).resolve().parent.parent / "agentnb" / "demo"

# --- the steps of the long conversation ----------------------------------------------------


def long_script(steps: int) -> dict[str, list[str]]:
    """Scripted replies of a ``steps``-step run: small tables, a bar chart every 10th step."""
    analyst, critic = [], []
    for i in range(1, steps + 1):
        if i % 10 == 0:
            code = (
                "import matplotlib.pyplot as plt\n\n"
                "totals = sales.groupby('region')['units'].sum()\n"
                f"totals.plot.bar(figsize=(4, 3), title='units by region, step {i}')\n"
                "plt.show()"
            )
        else:
            by = ("region", "product")[i % 2]
            code = (
                f"view = sales[sales['units'] > {i % 17}]\n"
                f"view.groupby('{by}')[['units', 'unit_price']].agg(['sum', 'mean']).round(2)"
            )
        analyst.append(
            f"Step {i}: units and prices by {('region', 'product')[i % 2]}.\n\n"
            f"```python\n{code}\n```\n"
        )
        critic.append(f"APPROVE. Step {i} is a fair cut of the data.")
    analyst.append("**Summary.** " + "The tables above answer the question. " * 8)
    critic.append("APPROVE. The summary matches the tables.")
    return {"analyst": analyst, "critic": critic}


# --- in process: a recording comm --------------------------------------------------------


class _Recorder:
    """Installs a comm for new widgets that JSON-encodes every message (as the kernel's
    session does before sending it) and counts them."""

    messages: ClassVar[list[tuple[str, int, str]]] = []

    def __init__(self, encode: bool = True) -> None:
        self.encode = encode

    def __enter__(self) -> _Recorder:
        import comm
        from comm.base_comm import BaseComm

        encode = self.encode
        log = _Recorder.messages

        class RecordingComm(BaseComm):  # type: ignore[misc]
            def publish_msg(
                self,
                msg_type: str,
                data: Any = None,
                metadata: Any = None,
                buffers: Any = None,
                **keys: Any,
            ) -> None:
                size = len(json.dumps(data, ensure_ascii=False, default=str)) if encode else 0
                method = data.get("method", "") if isinstance(data, dict) else ""
                log.append((msg_type, size, method))

        self._saved = comm.create_comm
        comm.create_comm = RecordingComm
        log.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        import comm

        comm.create_comm = self._saved

    @staticmethod
    def take() -> list[tuple[str, int, str]]:
        out = list(_Recorder.messages)
        _Recorder.messages.clear()
        return out


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- part 2: a streamed chunk ------------------------------------------------------------


def _reply_text(length: int) -> str:
    """Markdown like the agents' replies (prose, python fences, a table): the demo's replies,
    repeated to ``length`` characters."""
    import yaml

    script = yaml.safe_load((DEMO / "replies.yaml").read_text("utf-8"))
    unit = "\n\n".join([*script["analyst"], *script["critic"]]) + "\n\n"
    return (unit * (length // len(unit) + 1))[:length]


def _open_view(clock: _Clock, throttle: float = 0.1) -> Any:
    from agentnb.chat.events import AgentThinking
    from agentnb.ui.widget import ChatView

    view = ChatView("bench", throttle=throttle, clock=clock)
    view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
    return view


async def stream_costs(calls: int, flushes: int, lengths: Sequence[int]) -> dict[str, Any]:
    """Per ``handle(TokenDelta)``: buffered vs flushing, at several reply lengths."""
    from agentnb.chat.events import TokenDelta

    results: dict[str, Any] = {}
    for encode in (False, True):
        label = "json comm" if encode else "dummy comm"
        with _Recorder(encode):
            clock = _Clock()
            view = _open_view(clock)
            view.handle(TokenDelta(agent="analyst", text="Start "))  # flushes; sets flushed_at
            clock.now += 0.01  # inside the throttle window from here on
            view.handle(TokenDelta(agent="analyst", text="x "))  # buffers; arms the timer
            _Recorder.take()
            times = []
            for _ in range(calls):
                t = time.perf_counter_ns()
                view.handle(TokenDelta(agent="analyst", text="word "))
                times.append(time.perf_counter_ns() - t)
            buffered_msgs = len(_Recorder.take())
            results[f"buffered, {label}"] = _us(times) | {"messages": buffered_msgs}

            for length in lengths:
                clock = _Clock()
                view = _open_view(clock)
                view.handle(TokenDelta(agent="analyst", text=_reply_text(length)))
                _Recorder.take()
                times = []
                for _ in range(flushes):  # 5 characters each: the length stays about the same
                    clock.now += 0.2  # past the throttle: every delta flushes
                    t = time.perf_counter_ns()
                    view.handle(TokenDelta(agent="analyst", text="word "))
                    times.append(time.perf_counter_ns() - t)
                sent = _Recorder.take()
                results[f"flush at {length:,} chars, {label}"] = _us(times) | {
                    "messages": len(sent),
                    "message_bytes_median": statistics.median(s for _, s, _ in sent)
                    if sent and encode
                    else None,
                }
    return results


def _us(ns: Sequence[int]) -> dict[str, float]:
    xs = sorted(v / 1000 for v in ns)
    return {
        "n": len(xs),
        "median_us": statistics.median(xs),
        "p95_us": percentile(xs, 0.95),
        "min_us": xs[0],
    }


async def stream_realtime(deltas: int, seconds: float) -> dict[str, Any]:
    """``deltas`` TokenDeltas spread over ``seconds`` in real time: widget updates sent."""
    from agentnb.chat.events import AgentThinking, ModelCalled, TokenDelta
    from agentnb.models.base import Usage
    from agentnb.ui.widget import ChatView

    out: dict[str, Any] = {}
    words = _reply_text(deltas * 6).split(" ")
    for throttle in (0.1, 0.0):
        with _Recorder(True):
            view = ChatView("bench", throttle=throttle)
            view.handle(AgentThinking(agent="analyst", phase="propose", step=1))
            _Recorder.take()
            gap = seconds / deltas
            busy = 0
            started = time.perf_counter()
            for i in range(deltas):
                t = time.perf_counter_ns()
                view.handle(TokenDelta(agent="analyst", text=words[i % len(words)] + " "))
                busy += time.perf_counter_ns() - t
                target = started + (i + 1) * gap
                await asyncio.sleep(max(target - time.perf_counter(), 0))
            wall = time.perf_counter() - started
            t = time.perf_counter_ns()
            view.handle(
                ModelCalled(
                    agent="analyst",
                    model="scripted",
                    text="".join(w + " " for w in words[:deltas]),
                    usage=Usage(10, 10, 1),
                    cost=None,
                    duration=wall,
                )
            )
            busy += time.perf_counter_ns() - t
            sent = _Recorder.take()
            updates = [s for kind, s, method in sent if kind == "comm_msg" and method == "update"]
            out[f"throttle {throttle:g} s"] = {
                "deltas": deltas,
                "wall_s": round(wall, 3),
                "widget_updates": len(updates),
                "update_bytes_total": sum(updates),
                "handle_cpu_ms_total": busy / 1e6,
            }
    return out


# --- part 3, in process: a 100-step conversation -----------------------------------------


async def record_run(steps: int, script: dict[str, list[str]]) -> tuple[list[Any], float]:
    """The events of a real scripted run in a managed kernel (``sales`` pushed)."""
    import pandas as pd

    from agentnb import KernelConfig, ManagedKernel
    from agentnb.models.scripted import ScriptedModel
    from agentnb.run import arun

    sales = pd.read_csv(DEMO / "sales.csv")
    events: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="agentnb-bench-") as tmp:
        async with ManagedKernel(KernelConfig()) as kernel:
            started = time.perf_counter()
            result = await arun(
                "Summarise units and prices, step by step.",
                data={"sales": sales},
                model=ScriptedModel(script),
                approve="never",
                max_turns=4 * steps + 10,
                kernel=kernel,
                on_event=events.append,
                transcript=Path(tmp) / "run.jsonl",
            )
            wall = time.perf_counter() - started
    if result.stop_reason.kind != "approved" or len(result.steps) != steps:
        raise SystemExit(f"the {steps}-step run ended early: {result.stop_reason}")
    return events, wall


def _step_of(events: Sequence[Any]) -> list[int]:
    """Per event, the step it belongs to (0 before the first, steps + 1 for the report)."""
    from agentnb.chat.events import ExecutionFinished

    step, out = 1, []
    started = False
    for event in events:
        name = type(event).__name__
        if name == "AgentThinking":
            started = True
        out.append(step if started else 0)
        if isinstance(event, ExecutionFinished) and event.step > 0:
            step = event.step + 1
    return out


def feed(events: Sequence[Any], reps: int) -> dict[str, Any]:
    """Feed the events to fresh ChatViews: time per event and per step, messages, memory."""
    from agentnb.ui.widget import ChatView

    steps_of = _step_of(events)
    last_step = max(steps_of)
    per_event: list[list[int]] = [[] for _ in events]
    totals = []
    msgs: list[tuple[str, int, str]] = []
    for rep in range(reps + 1):  # the first pass is a warm-up
        with _Recorder(True):
            gc.collect()
            started = time.perf_counter_ns()
            view = ChatView("Summarise units and prices, step by step.")
            for i, event in enumerate(events):
                t = time.perf_counter_ns()
                view.handle(event)
                if rep:
                    per_event[i].append(time.perf_counter_ns() - t)
            if rep:
                totals.append((time.perf_counter_ns() - started) / 1e9)
            msgs = _Recorder.take()
        _close_widgets(view)
    medians = [statistics.median(xs) / 1000 for xs in per_event]  # µs per event
    by_step: dict[int, list[float]] = {}
    for step, us in zip(steps_of, medians, strict=True):
        by_step.setdefault(step, []).append(us)
    step_ms = {s: sum(v) / 1000 for s, v in by_step.items()}

    def window(lo: int, hi: int, png: bool | None = None) -> dict[str, float]:
        chosen = [
            s for s in range(lo, hi + 1) if s in step_ms and (png is None or (s % 10 == 0) == png)
        ]
        per_ev = [us for s in chosen for us in by_step[s]]
        return {
            "steps": len(chosen),
            "ms_per_step_median": statistics.median(step_ms[s] for s in chosen),
            "us_per_event_median": statistics.median(per_ev),
            "us_per_event_p95": percentile(sorted(per_ev), 0.95),
        }

    n = last_step - 1  # the steps proper
    first = window(1, 10, png=False)
    last = window(n - 9, n, png=False)
    # the memory of one pass, with tracemalloc (it slows the pass; timed separately above)
    with _Recorder(True):
        gc.collect()
        tracemalloc.start()
        view = ChatView("Summarise units and prices, step by step.")
        for event in events:
            view.handle(event)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        _Recorder.take()
    widgets_made = _count_widgets(view)
    _close_widgets(view)
    kinds: dict[str, int] = {}
    for kind, _, method in msgs:
        key = f"{kind} {method}".strip()
        kinds[key] = kinds.get(key, 0) + 1
    return {
        "events": len(events),
        "steps": n,
        "total": summarize(totals),
        "first_10_steps_without_png": first,
        "last_10_steps_without_png": last,
        "png_steps": window(1, n, png=True),
        "growth_ratio_per_event": last["us_per_event_median"] / first["us_per_event_median"],
        "growth_ratio_per_step": last["ms_per_step_median"] / first["ms_per_step_median"],
        "messages": len(msgs),
        "messages_by_kind": kinds,
        "message_bytes_total": sum(s for _, s, _ in msgs),
        "largest_message_bytes": max(s for _, s, _ in msgs),
        "widgets": widgets_made,
        "tracemalloc_peak_mb": peak / 2**20,
        "tracemalloc_retained_mb": current / 2**20,
        "per_step_ms": [round(step_ms[s], 3) for s in sorted(step_ms)],
    }


def _count_widgets(view: Any) -> int:
    seen: set[int] = set()
    todo = [view.widget]
    while todo:
        w = todo.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        todo.extend(getattr(w, "children", ()))
    return len(seen)


def _close_widgets(view: Any) -> None:
    import ipywidgets

    with contextlib.suppress(Exception):
        view.close()
    ipywidgets.Widget.close_all()


# --- the browser: the tests' Jupyter server and notebook driver, and timed runs ---------


class Server(JupyterServer):
    """The browser tier's Jupyter server, without the caller's ``AGENTNB_*`` settings."""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        return {key: value for key, value in env.items() if not key.startswith("AGENTNB_")}


# Arms one measurement: a capturing keydown listener (t0), a log of the kernel messages, and
# a MutationObserver that notes when ``selector`` first appears (new) in the cell, then the
# next animation frame.
_ARM_JS = """([index, selector, cardClass]) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const node = panel.content.widgets[index].node;
  const old = selector ? node.querySelectorAll(selector) : [];
  for (const el of old) el.setAttribute('data-bench-old', '');
  const kernel = panel.sessionContext.session.kernel;
  const m = {t0: null, t0wall: null, sent: null, busy: null, input: null, firstComm: null,
             display: null, cardMsg: null, dom: null, frame: null, visible: null, reply: null,
             idle: null,
             comms: 0, commsToCard: null, commsToDisplay: null, msgId: null};
  window.__bench = m;
  const onKey = (e) => {
    if (m.t0 !== null || e.key !== 'Enter') return;
    m.t0 = performance.now();
    m.t0wall = performance.timeOrigin + m.t0;  // to place the kernel's time.time() marks
  };
  window.addEventListener('keydown', onKey, true);  // before any handler of the page
  const onMsg = (_, a) => {
    const t = performance.now(), msg = a.msg, type = msg.header.msg_type;
    if (a.direction === 'send') {
      if (type === 'execute_request' && m.sent === null) {
        m.sent = t;
        m.msgId = msg.header.msg_id;
      }
      return;
    }
    if (m.msgId === null) return;
    const parent = msg.parent_header && msg.parent_header.msg_id;
    if (type === 'status' && parent === m.msgId) {
      if (msg.content.execution_state === 'busy' && m.busy === null) m.busy = t;
      if (msg.content.execution_state === 'idle') m.idle = t;
    } else if (type === 'execute_input' && parent === m.msgId) {
      if (m.input === null) m.input = t;
    } else if (type === 'execute_reply' && parent === m.msgId) {
      m.reply = t;
    } else if (type === 'comm_open' || type === 'comm_msg') {
      m.comms += 1;
      if (m.firstComm === null) m.firstComm = t;
      const st = msg.content.data && msg.content.data.state;
      if (cardClass && m.cardMsg === null && st && Array.isArray(st._dom_classes)
          && st._dom_classes.includes(cardClass)) { m.cardMsg = t; m.commsToCard = m.comms; }
    } else if ((type === 'display_data' || type === 'execute_result') && parent === m.msgId) {
      if (m.display === null) { m.display = t; m.commsToDisplay = m.comms; }
    }
  };
  kernel.anyMessage.connect(onMsg);
  const fresh = () => {
    for (const el of node.querySelectorAll(selector)) {
      if (!el.hasAttribute('data-bench-old')) return el;
    }
    return null;
  };
  const observer = new MutationObserver(() => {
    if (m.dom !== null) return;
    const el = fresh();
    if (!el) return;
    m.dom = performance.now();
    observer.disconnect();
    requestAnimationFrame(() => {
      m.frame = performance.now();
      const r = el.getBoundingClientRect();
      m.visible = r.width > 0 && r.height > 0;
    });
  });
  if (selector) observer.observe(node, {childList: true, subtree: true, attributes: true,
                                        attributeFilter: ['class']});
  m.waitFrame = !!selector;
  window.__benchDisarm = () => {
    observer.disconnect();
    kernel.anyMessage.disconnect(onMsg);
    window.removeEventListener('keydown', onKey, true);
  };
}"""

_DELETE_AFTER_JS = """(index) => {
  const model = window.jupyterapp.shell.currentWidget.content.model.sharedModel;
  const n = model.cells.length;
  if (n > index + 1) model.deleteCellRange(index + 1, n);
  return n - index - 1;
}"""

# Responsiveness: animation-frame times and long tasks, from now on.
_MONITOR_JS = """() => {
  const r = {frames: [], longtasks: [], stopped: false};
  window.__resp = r;
  const loop = (t) => { r.frames.push(t); if (!r.stopped) requestAnimationFrame(loop); };
  requestAnimationFrame(loop);
  r.observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) r.longtasks.push([e.startTime, e.duration]);
  });
  r.observer.observe({type: 'longtask', buffered: false});
  return performance.now();
}"""

_MONITOR_READ_JS = """() => {
  const r = window.__resp;
  r.stopped = true; r.observer.disconnect();
  return {frames: r.frames, longtasks: r.longtasks};
}"""

# A click on the probe button: time until its label changes (the kernel's handler ran).
_PROBE_JS = """async () => {
  const b = document.querySelector('button.bench-probe');
  if (!b) return null;
  const before = b.textContent;
  const t0 = performance.now();
  return await new Promise((resolve) => {
    const done = (v) => { obs.disconnect(); clearTimeout(timer); resolve(v); };
    const obs = new MutationObserver(() => {
      if (b.textContent !== before) done(performance.now() - t0);
    });
    const timer = setTimeout(() => done(-1), 20000);
    obs.observe(b, {childList: true, subtree: true, characterData: true});
    b.click();
  });
}"""

_DOM_JS = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cell = panel.content.widgets[index];
  return {document_nodes: document.getElementsByTagName('*').length,
          cell_nodes: cell.node.getElementsByTagName('*').length,
          cards: cell.node.querySelectorAll('.agentnb-card').length,
          cells: panel.content.model.cells.length,
          js_heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null,
          windowing: (panel.content.notebookConfig || {}).windowingMode || null};
}"""


class Driver(Notebook):
    """The browser tier's notebook driver (real clicks and key presses), plus timed runs."""

    def __init__(self, page: Any, server: JupyterServer) -> None:
        console = ConsoleLog()
        console.attach(page)
        super().__init__(page, server, console, server.base / "screenshots", timeout=60.0)
        self.page_errors: list[str] = []
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    @classmethod
    def in_new_page(cls, browser: Any, server: JupyterServer) -> Driver:
        """A driver of a new page in a fresh browser context (close: ``page.context``)."""
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_default_timeout(60_000)
        return cls(page, server)

    def run(self, index: int, timeout: float = 120) -> str:
        """Run a cell and wait for it to finish (its request's idle status); its output text."""
        self.timed_run(index, "", timeout=timeout)
        self.wait_for(lambda: not self.is_running(index), f"cell {index}'s prompt")
        return self.output_text(index)

    def timed_run(
        self, index: int, selector: str, card_class: str = "", timeout: float = 120
    ) -> dict[str, Any]:
        """Press Ctrl+Enter on a cell; page-side times (ms) from the key press."""
        self.select(index)
        self.page.evaluate(_ARM_JS, [index, selector, card_class])
        self.page.keyboard.press("Control+Enter")
        try:
            self.wait_for(
                lambda: self.page.evaluate(
                    "() => (!window.__bench.waitFrame || window.__bench.frame !== null)"
                    " && window.__bench.idle !== null"
                ),
                f"cell {index} to {'render ' + selector + ' and ' if selector else ''}finish",
                timeout,
            )
        finally:
            m = self.page.evaluate("() => { window.__benchDisarm(); return window.__bench; }")
        t0 = m["t0"]
        out: dict[str, Any] = {
            k: (m[k] - t0 if m[k] is not None else None)
            for k in (
                "sent", "busy", "input", "firstComm", "display",
                "cardMsg", "dom", "frame", "reply", "idle",
            )
        }  # fmt: skip
        out.update(
            t0wall=m["t0wall"],
            visible=m["visible"],
            comms=m["comms"],
            commsToCard=m["commsToCard"],
            commsToDisplay=m["commsToDisplay"],
        )
        return out

    def wait_warm(self, status_cell: int, timeout: float = 90) -> float:
        """Run ``%agents status`` until the managed kernel is running; seconds waited."""
        started = time.monotonic()
        while "managed kernel: running" not in self.run(status_cell):
            if time.monotonic() - started > timeout:
                raise RuntimeError("the managed kernel never said it was running")
            self.page.wait_for_timeout(300)
        return time.monotonic() - started

    def set_source(self, index: int, source: str) -> None:
        self.page.evaluate(
            "([i, text]) => window.jupyterapp.shell.currentWidget.content.widgets[i]"
            ".model.sharedModel.setSource(text)",
            [index, source],
        )

    def restart_kernel(self) -> None:
        """Restart the user kernel as the frontend does (its managed kernel goes with it)."""
        self.page.evaluate(
            "async () => { await window.jupyterapp.shell.currentWidget"
            ".sessionContext.session.kernel.restart(); }"
        )
        self.wait_idle(timeout=120)


SETUP_CELL = '%load_ext agentnb\nimport pandas as pd\n\nsales = pd.read_csv("sales.csv")'
LOAD_CELL = "%load_ext agentnb"  # timed on its own in part 1
DATA_CELL = 'import pandas as pd\n\nsales = pd.read_csv("sales.csv")'
STATUS_CELL = "%agents status"
TRIVIAL_CELL = "1"
HTML_CELL = 'import ipywidgets as widgets\n\nwidgets.HTML("<b>a plain ipywidgets.HTML</b>")'
AGENTS_CELL = (
    "%%agents --approve never --model scripted:replies.yaml --data sales\n"
    "Which region grew fastest in 2024?"
)
PROBE_CELL = """\
import ipywidgets as widgets

probe = widgets.Button(description="probe 0")
probe.add_class("bench-probe")


def _clicked(button):
    button.description = f"probe {int(button.description.split()[1]) + 1}"


probe.on_click(_clicked)
probe"""

# Run only for the breakdown, after the measured repetitions: wraps agentnb's functions on the
# path to the first card (in the user kernel, not in the product) to note when each starts and
# ends, as time.time(), so the marks line up with the page's key press.
INSTRUMENT_CELL = """\
import asyncio, functools, gc, json, sys, time
import agentnb.kernel.managed as _bk
import agentnb.jupyter.magics as _bm
import agentnb.models.scripted as _bs
import agentnb.jupyter.session as _bss

_bm.warmed.wait(60)  # load_ext's background imports: a first cell finds them done

_bench_marks = globals().get("_bench_marks", [])
_bench_gc = globals().get("_bench_gc", [])  # the collector's pauses: (generation, start, end)


def _bench_wrap(owner, name, label):
    f = getattr(owner, name)
    if getattr(f, "_bench", False):
        return
    if asyncio.iscoroutinefunction(f):
        @functools.wraps(f)
        async def w(*a, **k):
            _bench_marks.append((label + " >", time.time()))
            try:
                return await f(*a, **k)
            finally:
                _bench_marks.append((label + " <", time.time()))
    else:
        @functools.wraps(f)
        def w(*a, **k):
            _bench_marks.append((label + " >", time.time()))
            try:
                return f(*a, **k)
            finally:
                _bench_marks.append((label + " <", time.time()))
    w._bench = True
    setattr(owner, name, w)


_bench_targets = [
    (_bm, "run_cell", "run_cell"), (_bm, "_prepare", "prepare"),
    (_bss.Session, "check", "check (resolve models)"), (_bs, "load_script", "read the script"),
    (_bm, "_show", "display"), (_bss.Session, "start", "start"),
    (_bk.ManagedKernel, "push", "push"), (_bk.ManagedKernel, "execute", "execute"),
]
# the chat's widget module only once it is imported: a first cell must still import it itself
if "agentnb.ui.widget" in sys.modules:
    import agentnb.ui.widget as _bv

    _bench_targets += [
        (_bv.ChatView, "__init__", "ChatView()"), (_bv.ChatView, "_new_card", "new card"),
    ]
    def _bench_handler(handle):
        def handled(self, event):
            _bench_marks.append(("event " + type(event).__name__ + " >", time.time()))
            handle(self, event)
            _bench_marks.append(("event " + type(event).__name__ + " <", time.time()))
        handled._bench = True
        return handled

    # the session shows events its watcher folded (show); handle folds them itself
    for _name in ("handle", "show"):
        if not getattr(getattr(_bv.ChatView, _name), "_bench", False):
            setattr(_bv.ChatView, _name, _bench_handler(getattr(_bv.ChatView, _name)))
for _owner, _name, _label in _bench_targets:
    _bench_wrap(_owner, _name, _label)


def _bench_gc_watch(phase, info, started=[0.0]):
    if phase == "start":
        started[0] = time.time()
    else:
        _bench_gc.append((info["generation"], started[0], time.time()))


_bench_gc_watch._bench = True
gc.callbacks[:] = [c for c in gc.callbacks if not getattr(c, "_bench", False)]
gc.callbacks.append(_bench_gc_watch)
"""
MARKS_CELL = """\
print(json.dumps({"marks": _bench_marks, "gc": _bench_gc}))
_bench_marks.clear()
_bench_gc.clear()"""

VARIANTS = {"breakdown": "warm, instrumented"}

FIRST_RENDER_CELLS = [
    LOAD_CELL, DATA_CELL, STATUS_CELL, TRIVIAL_CELL, HTML_CELL, INSTRUMENT_CELL, MARKS_CELL,
    AGENTS_CELL,
]  # fmt: skip
I_LOAD, I_DATA, I_STATUS, I_TRIVIAL, I_HTML, I_INSTRUMENT, I_MARKS, I_AGENTS = range(8)


MAX_FOREIGN = 0.3
"""Cores used by other processes above which a sample is taken again (``--retries``)."""


def _noisy(sample: dict[str, Any]) -> bool:
    load = sample.get("foreign_cores")
    return load is not None and load > MAX_FOREIGN


def _until_quiet(take: Callable[[], dict[str, Any]], retries: int) -> dict[str, Any]:
    """``take()`` a sample; again (at most ``retries`` times) while other processes were busy."""
    attempt, sample = 1, take()
    while _noisy(sample) and attempt <= retries:
        attempt, sample = attempt + 1, take()
    sample["attempts"] = attempt
    return sample


def quiet(threshold: float = 0.3, window: float = 1.0, max_wait: float = 10.0) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until foreign load is at most ``threshold`` cores."""
    started = time.monotonic()
    while True:
        watch = CpuWatch()
        time.sleep(window)
        load = watch.read()["foreign_cores"]
        waited = time.monotonic() - started
        if load is None or load <= threshold or waited >= max_wait:
            return {"waited_s": round(waited, 1), "foreign_cores": load}


def first_render(browser: Any, frontend: str, base: Path, args: argparse.Namespace) -> Any:
    """Part 1 for one frontend."""
    server = Server(frontend, base / frontend)
    server.start()
    shutil.copy(DEMO / "sales.csv", server.root / "sales.csv")
    shutil.copy(DEMO / "replies.yaml", server.root / "replies.yaml")
    driver = Driver.in_new_page(browser, server)
    page = driver.page
    driver.create("first.ipynb", FIRST_RENDER_CELLS)
    out: dict[str, Any] = {"quiet_waits": [], "page_errors": driver.page_errors, "load_ext": []}
    for key in ("cold", "warm", "trivial", "html", *VARIANTS):
        out[key] = []

    def agents_run(instrumented: bool = False) -> dict[str, Any]:
        watch = CpuWatch()
        sample = driver.timed_run(I_AGENTS, ".agentnb-card", "agentnb-card")
        sample["foreign_cores"] = watch.read()["foreign_cores"]
        page.wait_for_timeout(300)  # the last inserted cells
        page.evaluate(_DELETE_AFTER_JS, I_AGENTS)
        if instrumented:
            noted = json.loads(driver.run(I_MARKS).strip().splitlines()[-1])
            sample["marks"] = _first_marks(noted["marks"], sample["t0wall"])
            # the collector's pauses in the user kernel before the card was created
            # (a first cell's ChatView is not wrapped: the page's arrival of the card instead)
            card = sample["marks"].get("new card >", sample["cardMsg"] or 0.0)
            pauses = [
                (gen, start * 1000 - sample["t0wall"], (end - start) * 1000)
                for gen, start, end in noted["gc"]
            ]
            before = [(gen, ms_) for gen, at, ms_ in pauses if 0 <= at <= card]
            sample["gc_before_card"] = {
                "collections": len(before),
                "ms": sum(ms_ for _, ms_ in before),
                "full_collections": sum(gen == 2 for gen, _ in before),
                "full_ms": sum(ms_ for gen, ms_ in before if gen == 2),
            }
        return sample

    def fresh_kernel(restart: bool) -> None:
        if restart:
            driver.restart_kernel()
        # %load_ext on its own: key press to the cell's idle status (a fresh kernel)
        out["load_ext"].append(driver.timed_run(I_LOAD, "")["idle"])
        driver.run(I_DATA)
        driver.wait_warm(I_STATUS)
        page.wait_for_timeout(1000)  # the managed kernel settles
        out["quiet_waits"].append(quiet())

    def first_cells(into: str, rounds: int, label: str) -> None:
        restart = [False]  # the first round of all uses the kernel the page started

        def take() -> dict[str, Any]:
            fresh_kernel(restart=restart[0])
            restart[0] = True  # every later round, and a retry, needs a fresh kernel
            driver.run(I_INSTRUMENT)  # wraps what load_ext imported (and warmed up)
            return agents_run(instrumented=True)

        for round_ in range(rounds):
            sample = _until_quiet(take, args.retries)
            out[into].append(sample)
            print(f"  {frontend} {label} {round_ + 1}/{rounds}: card at {ms(sample['dom'])} ms")

    try:
        open_started = time.monotonic()
        driver.open("first.ipynb", timeout=90)
        out["notebook_open_s"] = time.monotonic() - open_started
        first_cells("cold", args.cold, "first %%agents cell of a fresh kernel")
        out["quiet_waits"].append(quiet())
        for rep in range(args.reps + 1):  # rep 0 is a warm-up

            def triple() -> dict[str, Any]:
                watch = CpuWatch()
                runs = {
                    "trivial": driver.timed_run(I_TRIVIAL, ".jp-OutputArea-output"),
                    "html": driver.timed_run(I_HTML, ".widget-html"),
                    "warm": driver.timed_run(I_AGENTS, ".agentnb-card", "agentnb-card"),
                }
                load = watch.read()["foreign_cores"]
                page.wait_for_timeout(300)
                page.evaluate(_DELETE_AFTER_JS, I_AGENTS)
                return {"runs": runs, "foreign_cores": load}

            taken = _until_quiet(triple, args.retries)
            a, b, c = taken["runs"]["trivial"], taken["runs"]["html"], taken["runs"]["warm"]
            if rep:
                for into, sample in taken["runs"].items():
                    sample.update(foreign_cores=taken["foreign_cores"], attempts=taken["attempts"])
                    out[into].append(sample)
            print(
                f"  {frontend} rep {rep}/{args.reps}{' (warm-up)' if not rep else ''}: "
                f"1 {ms(a['dom'])}, HTML {ms(b['dom'])}, card {ms(c['dom'])} ms"
            )
        # the breakdown: agentnb's steps timed in the user kernel of the warm rounds
        driver.run(I_INSTRUMENT)
        driver.run(I_MARKS)
        for _ in range(args.breakdown):
            out["breakdown"].append(_until_quiet(lambda: agents_run(True), args.retries))
        print(f"  {frontend}: {args.breakdown} instrumented warm runs")
    finally:
        page.context.close()
        server.stop()
    out["server_ready_s"] = server.ready_seconds
    return out


# For a run without the steps inserted as cells: the chat widget's share of the page's work.
NO_INSERT_CELL = (
    "import agentnb.jupyter.cells\n\nagentnb.jupyter.cells.anchor_cell_id = lambda: None"
)


def long_run_browser(
    browser: Any,
    frontend: str,
    base: Path,
    steps: int,
    script: dict[str, Any],
    insert: bool = True,
) -> dict[str, Any]:
    """Part 3 in the browser: a ``steps``-step run in a real cell; the page's responsiveness.
    ``insert=False``: the user kernel is told no cell id, so no step becomes a cell."""
    server = Server(frontend, base / f"{frontend}-long{'' if insert else '-no-insert'}")
    server.start()
    shutil.copy(DEMO / "sales.csv", server.root / "sales.csv")
    (server.root / "steps.json").write_text(json.dumps(script))
    agents = (
        f"%%agents --approve never --model scripted:steps.json --data sales "
        f"--max-turns {4 * steps + 10}\nSummarise units and prices, step by step."
    )
    cells = [SETUP_CELL, STATUS_CELL, TRIVIAL_CELL, PROBE_CELL, agents, NO_INSERT_CELL]
    i_trivial, i_probe, i_agents, i_no_insert = 2, 3, 4, 5
    driver = Driver.in_new_page(browser, server)
    page = driver.page
    driver.create("long.ipynb", cells)
    try:
        driver.open("long.ipynb", timeout=90)
        driver.run(0)
        driver.wait_warm(1)
        driver.run(i_probe)
        driver.run(i_trivial)
        if not insert:
            driver.run(i_no_insert)
        page.wait_for_timeout(1000)
        quiet_before = quiet()

        def probes(n: int) -> list[float]:
            out = []
            for _ in range(n):
                value = page.evaluate(_PROBE_JS)
                if value is not None and value >= 0:
                    out.append(value)
                page.wait_for_timeout(100)
            return out

        def trivial_runs(n: int) -> list[float]:
            return [driver.timed_run(i_trivial, ".jp-OutputArea-output")["dom"] for _ in range(n)]

        idle_probe = probes(10)
        idle_trivial = trivial_runs(5)
        dom_before = page.evaluate(_DOM_JS, i_agents)
        # the run, while the page is watched
        watch = CpuWatch()
        page.evaluate(_MONITOR_JS)
        idle_window_start = page.evaluate("() => performance.now()")
        page.wait_for_timeout(2000)
        driver.select(i_agents)
        page.evaluate(_ARM_JS, [i_agents, ".agentnb-end", ""])
        page.keyboard.press("Control+Enter")
        run_probes: list[float] = []
        probe_misses = 0
        started = time.monotonic()
        while not page.evaluate("() => window.__bench.idle !== null"):
            value = page.evaluate(_PROBE_JS)
            if value is None or value < 0:
                probe_misses += 1
            else:
                run_probes.append(value)
            page.wait_for_timeout(250)
            if time.monotonic() - started > 600:
                raise RuntimeError("the long run did not finish in 10 min")
        m = page.evaluate("() => { window.__benchDisarm(); return window.__bench; }")
        load = watch.read()
        page.wait_for_timeout(500)  # the last inserted cells
        after_start = page.evaluate("() => performance.now()")
        page.wait_for_timeout(3000)
        after_end = page.evaluate("() => performance.now()")
        monitor = page.evaluate(_MONITOR_READ_JS)
        after_probe = probes(10)
        after_trivial = trivial_runs(5)
        dom_after = page.evaluate(_DOM_JS, i_agents)
        # scrolling to the end of the notebook and back, with the conversation rendered
        scroll = page.evaluate(
            """async () => {
              const panel = window.jupyterapp.shell.currentWidget;
              const frames = [];
              const scroller = panel.content.node;
              const t0 = performance.now();
              for (let i = 0; i < 60; i++) {
                scroller.scrollTop = (i % 2 ? 0 : scroller.scrollHeight);
                await new Promise((r) => requestAnimationFrame(r));
                frames.push(performance.now());
              }
              const gaps = frames.map((t, i) => t - (i ? frames[i - 1] : t0));
              return {gaps, height: scroller.scrollHeight};
            }"""
        )
    finally:
        page.context.close()
        server.stop()
    t0 = m["t0"]
    run_window = (t0, m["idle"])
    during = _frames(monitor, run_window)
    return {
        "steps": steps,
        "cells_inserted": insert,
        "run_s": (m["idle"] - t0) / 1000,
        "longtask_ms_per_step": during["longtask_total_ms"] / steps,
        "end_line_ms": m["dom"] - t0 if m["dom"] is not None else None,
        "idle_window": _frames(monitor, (idle_window_start, idle_window_start + 2000)),
        "during_run": during,
        "after_run": _frames(monitor, (after_start, after_end)),
        "probe_click_idle_ms": _stats(idle_probe),
        "probe_click_during_run_ms": _stats(run_probes),
        "probe_misses_during_run": probe_misses,
        "probe_click_after_ms": _stats(after_probe),
        "trivial_cell_idle_ms": _stats(idle_trivial),
        "trivial_cell_after_ms": _stats(after_trivial),
        "scroll_frame_gap_ms": _stats(scroll["gaps"]),
        "scroll_height_px": scroll["height"],
        "dom_before": dom_before,
        "dom_after": dom_after,
        "quiet_before": quiet_before,
        "load_during_run": load,
        "page_errors": driver.page_errors,
    }


def _first_marks(marks: Sequence[tuple[str, float]], t0wall: float) -> dict[str, float]:
    """Each label's first occurrence, in ms after the key press."""
    out: dict[str, float] = {}
    for label, when in marks:
        out.setdefault(label, when * 1000 - t0wall)
    return out


def _stats(xs: Sequence[float]) -> dict[str, Any]:
    s = sorted(x for x in xs if x is not None)
    if not s:
        return {"n": 0}
    return {
        "n": len(s),
        "median": statistics.median(s),
        "p95": percentile(s, 0.95),
        "max": s[-1],
    }


def _frames(monitor: dict[str, Any], window: tuple[float, float]) -> dict[str, Any]:
    lo, hi = window
    frames = [t for t in monitor["frames"] if lo <= t <= hi]
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    tasks = [(s, d) for s, d in monitor["longtasks"] if lo <= s <= hi]
    seconds = (hi - lo) / 1000
    return {
        "seconds": round(seconds, 2),
        "frames": len(frames),
        "frame_gap_median_ms": statistics.median(gaps) if gaps else None,
        "frame_gap_p95_ms": percentile(sorted(gaps), 0.95) if gaps else None,
        "frame_gap_max_ms": max(gaps) if gaps else None,
        "gaps_over_100ms": sum(g > 100 for g in gaps),
        # the share of the window in which the page painted no frame it could have painted
        "missed_frame_share": sum(max(g - 1000 / 60, 0) for g in gaps) / (hi - lo)
        if hi > lo
        else None,
        "longtasks": len(tasks),
        "longtask_total_ms": sum(d for _, d in tasks),
        "longtask_max_ms": max((d for _, d in tasks), default=0.0),
        "busy_share": sum(d for _, d in tasks) / (hi - lo) if hi > lo else None,
    }


# --- the kernel side of a first run, in a subprocess --------------------------------------

_IMPORTS_CODE = """
import json, sys, time
import IPython, ipykernel.ipkernel, comm  # loaded in every kernel already
t = time.perf_counter()
import agentnb.jupyter.magics
t0 = time.perf_counter()
import agentnb.ui.widget
t1 = time.perf_counter()
import openai, agentnb.models.openai_compat
t2 = time.perf_counter()
import nbformat.v4
t3 = time.perf_counter()
import agentnb.run, agentnb.jupyter.cells, agentnb.models
t4 = time.perf_counter()
from agentnb.ui.widget import ChatView
try:
    view = ChatView("task", data=["sales"])
except TypeError:  # an agentnb from before the data card came with the widget
    view = ChatView("task")
t5 = time.perf_counter()
view2 = ChatView("task")
t6 = time.perf_counter()
from agentnb.ui.render import markdown_html
markdown_html("warm **up**\\n\\n```python\\nx = 1\\n```")
t7 = time.perf_counter()
print(json.dumps({
    "%load_ext: import agentnb.jupyter.magics": t0 - t,
    "after %load_ext, in the background: agentnb.ui.widget (ipywidgets, markdown-it, pygments)":
        t1 - t0,
    "in the background: openai, agentnb's client": t2 - t1,
    "in the background: nbformat (jsonschema and its format checkers)": t3 - t2,
    "first cell: import agentnb.run, jupyter.cells, models": t4 - t3,
    "first cell: first ChatView() (with its data card)": t5 - t4,
    "second ChatView()": t6 - t5,
    "a first reply: first markdown_html (a python fence)": t7 - t6,
}))
"""


def cold_imports(reps: int) -> dict[str, Any]:
    """What the first ``%%agents`` cell of a fresh kernel pays in imports, per module group,
    and which heavy modules ``%load_ext agentnb`` itself imports."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    runs: dict[str, list[float]] = {}
    for _ in range(reps):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORTS_CODE],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
            runs.setdefault(k, []).append(v)
    result: dict[str, Any] = {k: summarize(v) for k, v in runs.items()}
    heavy = ("nbformat", "jsonschema", "ipywidgets", "openai", "pandas")
    probe = (
        "import json, sys; import agentnb.jupyter.magics; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    result["imported_by_load_ext"] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- the report ---------------------------------------------------------------------------


def _col(samples: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    return summarize([s[key] / 1000 for s in samples if s.get(key) is not None])


KINDS = {
    "trivial": "`1` → its output",
    "html": "ipywidgets.HTML → in DOM",
    "cold": "%%agents, first in kernel (instrumented) → card",
    "warm": "%%agents, again → card",
    "breakdown": "warm, instrumented",
}


def summarise_first(fr: dict[str, Any]) -> dict[str, Any]:
    keys = ("sent", "busy", "firstComm", "display", "cardMsg", "dom", "frame", "idle")
    out: dict[str, Any] = {}
    for kind in KINDS:
        samples = fr.get(kind) or []
        out[kind] = {k: _col(samples, k) for k in keys}
        out[kind]["comms_to_display"] = [s["commsToDisplay"] for s in samples]
        out[kind]["comms_to_card"] = [s["commsToCard"] for s in samples]
        out[kind]["visible"] = all(s["visible"] for s in samples)
        gcs = [s["gc_before_card"] for s in samples if "gc_before_card" in s]
        if gcs:
            out[kind]["gc_before_card_ms"] = [round(g["ms"], 1) for g in gcs]
            out[kind]["full_gc_before_card"] = [g["full_collections"] for g in gcs]
        loads = [s["foreign_cores"] for s in samples if s.get("foreign_cores") is not None]
        out[kind]["foreign_cores_median"] = statistics.median(loads) if loads else None
    out["load_ext_ms"] = summarize([x / 1000 for x in fr.get("load_ext") or [] if x is not None])
    floor = out["trivial"]["dom"].get("median_ms")
    html = out["html"]["dom"].get("median_ms")
    for kind in KINDS:
        card = out[kind]["dom"].get("median_ms")
        out[kind]["ratio_to_trivial"] = card / floor if card and floor else None
        out[kind]["ratio_to_html"] = card / html if card and html else None
    return out


def print_first(frontend: str, s: dict[str, Any]) -> None:
    rows = []
    for kind, name in KINDS.items():
        d = s[kind]
        rows.append(
            [
                name,
                d["dom"].get("n", 0),
                ms(d["sent"].get("median_ms")),
                ms(d["busy"].get("median_ms")),
                ms(d["display"].get("median_ms")),
                ms(d["cardMsg"].get("median_ms")),
                ms(d["dom"].get("median_ms")),
                ms(d["dom"].get("p95_ms")),
                ms(d["frame"].get("median_ms")),
                ms(d["idle"].get("median_ms")),
                "-" if d["ratio_to_trivial"] is None else f"{d['ratio_to_trivial']:.2f}",
            ]
        )
    print_table(
        f"First render, {frontend}: ms from the key press, medians (displayed: the cell's "
        "display_data or result arrives; card msg: the message that gives the first card its "
        "class; ratio: in DOM / `1` in DOM)",
        ["cell", "n", "sent", "busy", "displayed", "card msg", "in DOM", "p95", "frame", "done",
         "ratio"],
        rows,
    )  # fmt: skip
    for kind in ("cold", *VARIANTS):
        if "gc_before_card_ms" in s[kind]:
            print(
                f"  {KINDS[kind]}: the user kernel's garbage collector before the card: "
                f"{s[kind]['gc_before_card_ms']} ms (full collections: "
                f"{s[kind]['full_gc_before_card']})"
            )
    load = s["load_ext_ms"]
    print(
        f"  %load_ext agentnb in a fresh kernel: {ms(load.get('median_ms'))} ms median "
        f"(n={load.get('n', 0)}; key press to the cell's idle)"
    )
    for kind in ("cold", "warm"):
        d = s[kind]
        frame = d["frame"].get("median_ms")
        target = TARGETS_MS[kind]
        verdict = "PASS" if frame is not None and frame < target else "FAIL"
        print(
            f"  {kind}: card in DOM {ms(d['dom'].get('median_ms'))} ms = "
            f"{d['ratio_to_trivial']:.2f}x `1`, {d['ratio_to_html']:.2f}x HTML; first frame "
            f"{ms(frame)} ms (target < {target:.0f}): {verdict}"
        )


BREAKDOWN = [
    ("page", "sent", "execute_request sent"),
    ("page", "busy", "kernel busy (message arrives)"),
    ("kernel", "run_cell >", "run_cell starts (after transform + compile)"),
    ("kernel", "ChatView() >", "prepare: flags parsed, ChatView() starts"),
    ("kernel", "new card >", "the data card is made (in ChatView())"),
    ("kernel", "ChatView() <", "ChatView() built (its widgets' comm_open sent)"),
    ("kernel", "prepare <", "prepare done"),
    ("kernel", "check (resolve models) >", "check: resolve the models"),
    ("kernel", "check (resolve models) <", "check done"),
    ("kernel", "display <", "display(widget) done"),
    ("page", "display", "widget's display_data arrives"),
    ("page", "cardMsg", "the card's class message arrives"),
    ("page", "dom", "the card is in the DOM"),
    ("page", "frame", "next animation frame"),
    ("kernel", "push >", "then: push the data to the managed kernel"),
    ("kernel", "push <", "push done"),
    ("kernel", "event RunStarted >", "RunStarted shown"),
    ("kernel", "execute >", "data summary runs in the managed kernel"),
    ("kernel", "execute <", "data summary done"),
    ("kernel", "event DataReady <", "DataReady: the summary is on the data card"),
]


def summarise_breakdown(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for side, key, what in BREAKDOWN:
        if side == "page":
            xs = [s[key] for s in samples if s.get(key) is not None]
        else:
            xs = [s["marks"][key] for s in samples if key in s.get("marks", {})]
        rows.append(
            {
                "side": side,
                "key": key,
                "what": what,
                "median_ms": statistics.median(xs) if xs else None,
            }
        )
    scripts = [
        s["marks"]["read the script <"] - s["marks"]["read the script >"]
        for s in samples
        if "read the script <" in s.get("marks", {})
    ]
    rows.append(
        {
            "side": "kernel",
            "key": "read the script",
            "what": "of which: reading the scripted replies (first read)",
            "median_ms": statistics.median(scripts) if scripts else None,
        }
    )
    return rows


def print_breakdown(frontend: str, rows: Sequence[dict[str, Any]]) -> None:
    table, previous = [], 0.0
    for row in rows:
        value = row["median_ms"]
        if row["key"] == "read the script":
            table.append([row["what"], row["side"], "", ms(value)])
            continue
        step = None if value is None else value - previous
        table.append([row["what"], row["side"], ms(value), ms(step)])
        previous = value if value is not None else previous
    print_table(
        f"Where the time goes, {frontend} (ms after the key press, medians)",
        ["milestone", "side", "at", "+"],
        table,
    )


def part_stream(args: argparse.Namespace) -> dict[str, Any]:
    print("\npart 2: a streamed chunk, in process")
    calls, flushes = (500, 20) if args.quick else (2000, 50)
    costs = asyncio.run(stream_costs(calls, flushes, (500, 4_000, 16_000, 25_000)))
    print_table(
        "handle(TokenDelta): µs per call",
        ["delta", "n", "median", "p95", "comm messages", "bytes/msg"],
        [
            [k, v["n"], f"{v['median_us']:.1f}", f"{v['p95_us']:.1f}", v["messages"],
             v.get("message_bytes_median") or "-"]
            for k, v in costs.items()
        ],
    )  # fmt: skip
    deltas, seconds = (100, 1.0) if args.quick else (500, 5.0)
    realtime = asyncio.run(stream_realtime(deltas, seconds))
    print_table(
        f"{deltas} deltas over {seconds:g} s in real time",
        ["throttle", "widget updates", "bytes sent", "handle() CPU ms"],
        [
            [k, v["widget_updates"], f"{v['update_bytes_total']:,}",
             f"{v['handle_cpu_ms_total']:.1f}"]
            for k, v in realtime.items()
        ],
    )  # fmt: skip
    return {"per_call": costs, "realtime": realtime}


def part_long_in_process(args: argparse.Namespace, script: dict[str, Any]) -> dict[str, Any]:
    print(f"\npart 3: a {args.steps}-step conversation, in process")
    events, run_wall = asyncio.run(record_run(args.steps, script))
    fed = feed(events, 2 if args.quick else 5)
    fed["recorded_run_wall_s"] = run_wall
    first, last = fed["first_10_steps_without_png"], fed["last_10_steps_without_png"]
    print_table(
        f"{fed['events']} events of a {fed['steps']}-step run fed to a ChatView",
        ["steps", "ms per step (median)", "µs per event (median)", "µs per event (p95)"],
        [
            ["1–10 (no PNG)", ms(first["ms_per_step_median"]),
             f"{first['us_per_event_median']:.1f}", f"{first['us_per_event_p95']:.1f}"],
            [f"{fed['steps'] - 9}–{fed['steps']} (no PNG)", ms(last["ms_per_step_median"]),
             f"{last['us_per_event_median']:.1f}", f"{last['us_per_event_p95']:.1f}"],
            ["every 10th (PNG)", ms(fed["png_steps"]["ms_per_step_median"]),
             f"{fed['png_steps']['us_per_event_median']:.1f}",
             f"{fed['png_steps']['us_per_event_p95']:.1f}"],
        ],
    )  # fmt: skip
    print(
        f"  total {ms(fed['total']['median_ms'])} ms (n={fed['total']['n']}); last/first: "
        f"{fed['growth_ratio_per_event']:.2f}x per event, {fed['growth_ratio_per_step']:.2f}x "
        f"per step\n  {fed['messages']:,} comm messages, "
        f"{fed['message_bytes_total'] / 1e6:.2f} MB, largest {fed['largest_message_bytes']:,} B; "
        f"{fed['widgets']} widgets; tracemalloc peak {fed['tracemalloc_peak_mb']:.1f} MB, "
        f"retained {fed['tracemalloc_retained_mb']:.1f} MB"
    )
    return fed


def part_imports(args: argparse.Namespace) -> dict[str, Any]:
    print("\nthe kernel side of a first %%agents cell: imports in a fresh interpreter")
    imports = cold_imports(2 if args.quick else 3)
    print_table(
        "cold imports (ms)",
        ["what", "median", "min"],
        [[k, ms(v["median_ms"]), ms(v["min_ms"])] for k, v in imports.items() if "median_ms" in v],
    )
    print(
        f"  of {', '.join(('nbformat', 'jsonschema', 'ipywidgets', 'openai', 'pandas'))}, "
        f"%load_ext imports: {', '.join(imports['imported_by_load_ext']) or 'none'}"
    )
    return imports


def part_browser(
    args: argparse.Namespace, frontends: Sequence[str], script: dict[str, Any]
) -> dict[str, Any]:
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"{CHROMIUM} not found: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {"first_render": {}, "long_browser": {}}
    with (
        tempfile.TemporaryDirectory(prefix="agentnb-bench-") as tmp,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        out["chromium"] = browser.version
        try:
            if "first" in args.parts:
                for frontend in frontends:
                    print(f"\npart 1: first render in {frontend}")
                    raw = first_render(browser, frontend, Path(tmp), args)
                    summary = summarise_first(raw)
                    summary["where_the_time_goes"] = {
                        kind: summarise_breakdown(raw[kind]) for kind in ("cold", *VARIANTS)
                    }
                    print_first(frontend, summary)
                    for kind in ("breakdown", "cold"):
                        print_breakdown(
                            f"{frontend}, {KINDS[kind]}", summary["where_the_time_goes"][kind]
                        )
                    out["first_render"][frontend] = {"summary": summary, "samples": raw}
            if "long" in args.parts:
                runs = [(f, True) for f in frontends] + [(frontends[0], False)]
                for frontend, insert in runs:
                    label = frontend if insert else f"{frontend}, steps not inserted as cells"
                    print(f"\npart 3: a {args.steps}-step run in {label}")
                    long = long_run_browser(
                        browser, frontend, Path(tmp), args.steps, script, insert=insert
                    )
                    print_long(label, long)
                    out["long_browser"][frontend if insert else f"{frontend}-no-insert"] = long
        finally:
            browser.close()
    return out


PARTS = ("first", "stream", "long")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions")
    ap.add_argument("--reps", type=int, help="warm repetitions per frontend (default 8; quick 3)")
    ap.add_argument("--cold", type=int, help="fresh user kernels per frontend (default 3; quick 1)")
    ap.add_argument(
        "--breakdown", type=int, help="instrumented runs per variant (default 3; quick 1)"
    )
    ap.add_argument("--steps", type=int, default=100, help="steps of the long run (default 100)")
    ap.add_argument(
        "--frontends", default="lab,notebook", help="lab, notebook or both (default both)"
    )
    ap.add_argument(
        "--parts", default=",".join(PARTS), help="first, stream, long (default all three)"
    )
    ap.add_argument(
        "--retries",
        type=int,
        help=f"times a sample is taken again when other processes used > {MAX_FOREIGN} cores "
        "meanwhile (default 2; quick 0)",
    )
    ap.add_argument("--no-browser", action="store_true", help="only the in-process measurements")
    args = ap.parse_args()
    args.reps = args.reps if args.reps is not None else (3 if args.quick else 8)
    args.breakdown = args.breakdown if args.breakdown is not None else (1 if args.quick else 3)
    args.cold = args.cold if args.cold is not None else (1 if args.quick else 3)
    args.retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    frontends = [f.strip() for f in args.frontends.split(",") if f.strip()]
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not set(frontends) <= {"lab", "notebook"}:
        raise SystemExit("--frontends: lab, notebook or lab,notebook")
    if not set(args.parts) <= set(PARTS):
        raise SystemExit(f"--parts: some of {', '.join(PARTS)}")
    results: dict[str, Any] = {
        "machine": machine_info(PACKAGES),
        "args": vars(args),
        "targets_ms": TARGETS_MS,
    }
    started = time.monotonic()
    script = long_script(args.steps)
    if "stream" in args.parts:
        results["stream"] = part_stream(args)
    if "long" in args.parts:
        results["long_in_process"] = part_long_in_process(args, script)
    if "first" in args.parts:
        results["cold_imports"] = part_imports(args)
    if not args.no_browser and {"first", "long"} & set(args.parts):
        results.update(part_browser(args, frontends, script))
    results["wall_s"] = round(time.monotonic() - started, 1)
    if args.quick or args.no_browser:
        write_json("notebook_render-quick.json", results)
    else:
        write_json("notebook_render.json", _merged(results, args.parts))


PART_KEYS = {
    "first": ("cold_imports", "first_render"),
    "stream": ("stream",),
    "long": ("long_in_process", "long_browser"),
}


def _merged(results: dict[str, Any], parts: Sequence[str]) -> dict[str, Any]:
    """A run of some parts: the other parts' results kept from the file, each part saying
    when it was measured (``parts_from``)."""
    stamp = results["machine"].get("timestamp_utc")
    path = RESULTS / "notebook_render.json"
    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    old_stamp = old.get("machine", {}).get("timestamp_utc")
    merged = dict(results)
    merged["parts_from"] = {}
    for part, keys in PART_KEYS.items():
        if part in parts:
            merged["parts_from"][part] = stamp
            continue
        for key in keys:
            if key in old:
                merged[key] = old[key]
        if any(key in old for key in keys):
            merged["parts_from"][part] = old.get("parts_from", {}).get(part, old_stamp)
    return merged


def print_long(frontend: str, r: dict[str, Any]) -> None:
    rows = []
    for label, key in (
        ("idle, before", "idle_window"),
        ("during the run", "during_run"),
        ("3 s after", "after_run"),
    ):
        f = r[key]
        rows.append(
            [
                label,
                f["seconds"],
                f["frames"],
                ms(f["frame_gap_median_ms"]),
                ms(f["frame_gap_p95_ms"]),
                ms(f["frame_gap_max_ms"]),
                f"{f['missed_frame_share']:.0%}",
                f["longtasks"],
                ms(f["longtask_total_ms"]),
                ms(f["longtask_max_ms"]),
            ]
        )
    print_table(
        f"{r['steps']}-step run in {frontend}: {r['run_s']:.1f} s from key press to idle",
        [
            "window",
            "s",
            "frames",
            "gap med",
            "gap p95",
            "gap max",
            "no frame",
            "long tasks",
            "total",
            "max",
        ],
        rows,
    )
    probe = [
        ["button click (kernel round trip), idle", r["probe_click_idle_ms"]],
        ["button click, during the run", r["probe_click_during_run_ms"]],
        ["button click, after", r["probe_click_after_ms"]],
        ["trivial cell `1`, idle", r["trivial_cell_idle_ms"]],
        ["trivial cell `1`, after", r["trivial_cell_after_ms"]],
        ["scroll to end/top: frame gap", r["scroll_frame_gap_ms"]],
    ]
    print_table(
        "latency (ms)",
        ["what", "n", "median", "p95", "max"],
        [[k, v["n"], ms(v.get("median")), ms(v.get("p95")), ms(v.get("max"))] for k, v in probe],
    )
    before, after = r["dom_before"], r["dom_after"]
    print(
        f"  page main thread in long tasks: {r['longtask_ms_per_step']:.1f} ms per step; "
        f"JS heap {before['js_heap_mb'] or 0:.0f} → {after['js_heap_mb'] or 0:.0f} MB"
    )
    print(
        f"  DOM nodes: document {before['document_nodes']:,} → {after['document_nodes']:,}, "
        f"the %%agents cell {after['cell_nodes']:,} ({after['cards']} cards); notebook cells "
        f"{before['cells']} → {after['cells']}; windowing mode {after['windowing']}"
    )


if __name__ == "__main__":
    main()
