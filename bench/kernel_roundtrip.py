"""Managed-kernel round trips: agentnb against raw jupyter_client and AutoGen.

One process, one run, three paths side by side:

- ``raw``: jupyter_client ``AsyncKernelManager`` + ``AsyncKernelClient``; execute,
  then read iopub until idle for that msg_id and, concurrently, the shell reply.
  Nothing can reach a kernel with less client work: this is the floor.
- ``autogen``: autogen-ext's ``JupyterCodeExecutor.execute_code_blocks`` (nbclient).
- ``agentnb``: ``ManagedKernel.execute`` (``KernelConfig(preload=())``), sandboxed as
  by default (``AGENTNB_SANDBOX=off`` runs it unsandboxed, like the other two).

Warm workloads (``x = 1``, a matplotlib PNG, a groupby over a 1,000,000-row frame
built in untimed setup) run in blocks. Each block starts a fresh kernel for every
path, so the samples come from several kernel instances per path; inside a block
the paths take turns execution by execution (rotating who goes first), so load
from elsewhere on the machine hits all of them alike. Warm-ups are discarded.

"Kernel busy" is the kernel's own busy -> idle time from the iopub status message
headers; "outside" = round trip - kernel busy, which is what the client side costs.

Cold start (kernel start -> first ``x = 1``), a pre-warmed agentnb kernel (request
-> first result after ``prewarm()`` and 3 s of the user doing something else) and
shutdown times are measured in rounds with one kernel alive at a time.

The machine may be shared: before each block and round the script waits (at most
2 minutes, ``--quiet-wait``) until processes outside its own tree use at most 0.15 cores, and it
records the foreign load during every block and round.

Needs a Python with agentnb, autogen-ext[jupyter-executor] and psutil (see
README.md). If autogen-ext is missing and ``AGENTNB_BENCH_PYTHON`` names another
interpreter, the script re-runs itself with it.

    python bench/kernel_roundtrip.py            # full run, about 8 minutes on 2 cores
    python bench/kernel_roundtrip.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import os
import shutil
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from _util import (
    CpuWatch,
    default_sandbox,
    ensure_interpreter,
    machine_info,
    ms,
    print_table,
    summarize,
    wait_for_quiet,
    write_json,
)

KERNEL_NAME = os.environ.get("AGENTNB_BENCH_KERNEL", "python3")  # raw and AutoGen paths
TARGET_RATIO = 1.15
PREWARM_IDLE_S = 3.0

SETUP = """\
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
rng = np.random.default_rng(0)
df = pd.DataFrame({"key": rng.integers(0, 1000, 1_000_000), "val": rng.standard_normal(1_000_000)})
"""
WORKLOADS = {
    "x = 1": "x = 1",
    "matplotlib PNG": ("fig, ax = plt.subplots(figsize=(6,4)); ax.plot(range(1000)); plt.show()"),
    "groupby 1M rows": 'df.groupby("key")["val"].agg(["mean","sum","count"])',
}
PACKAGES = [
    "agentnb",
    "autogen-ext",
    "autogen-core",
    "nbclient",
    "jupyter_client",
    "ipykernel",
    "ipython",
    "pyzmq",
    "tornado",
    "pandas",
    "numpy",
    "matplotlib",
    "matplotlib-inline",
    "pyarrow",
    "psutil",
]


# --- the three paths ----------------------------------------------------------------


@dataclass
class Result:
    ok: bool
    busy_s: float | None  # kernel-side busy -> idle
    png: bool = False  # an image/png reached the caller (as bytes, an output or a file)


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _busy(busy: Any, idle: Any) -> float | None:
    if busy is None or idle is None:
        return None
    return (_date(idle) - _date(busy)).total_seconds()


class RawPath:
    """The floor: jupyter_client, iopub until idle plus the shell reply, concurrently."""

    key = "raw"
    label = "raw jupyter_client async (floor)"

    async def start(self) -> None:
        from jupyter_client.manager import AsyncKernelManager

        self.km = AsyncKernelManager(kernel_name=KERNEL_NAME)
        await self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)

    async def execute(self, code: str) -> Result:
        msg_id = self.kc.execute(code)
        (busy, idle, png, failed), reply = await asyncio.gather(
            self._iopub(msg_id), self._reply(msg_id)
        )
        ok = not failed and reply["content"]["status"] == "ok"
        return Result(ok=ok, busy_s=_busy(busy, idle), png=png)

    async def _iopub(self, msg_id: str) -> tuple[Any, Any, bool, bool]:
        busy = None
        png = failed = False
        while True:
            msg = await self.kc.get_iopub_msg()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status":
                if content["execution_state"] == "busy":
                    busy = msg["header"]["date"]
                elif content["execution_state"] == "idle":
                    return busy, msg["header"]["date"], png, failed
            elif kind in ("display_data", "execute_result") and "image/png" in content["data"]:
                png = bool(base64.b64decode(content["data"]["image/png"]))
            elif kind == "error":
                failed = True

    async def _reply(self, msg_id: str) -> dict[str, Any]:
        while True:
            msg: dict[str, Any] = await self.kc.get_shell_msg()
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    async def stop(self) -> int | None:
        process = self.km.provisioner.process
        self.kc.stop_channels()
        await self.km.shutdown_kernel()
        return process.poll()


class AutogenPath:
    """autogen-ext ``JupyterCodeExecutor`` with its defaults, as a user would write it."""

    key = "autogen"
    label = "AutoGen JupyterCodeExecutor"

    async def start(self) -> None:
        from autogen_ext.code_executors.jupyter import JupyterCodeExecutor

        self.ex = JupyterCodeExecutor(kernel_name=KERNEL_NAME)
        await self.ex.start()
        # Observe (not change) the nbclient cell, whose metadata holds the kernel's
        # busy and idle times.
        self.last_busy: float | None = None
        run_cell = self.ex._execute_cell

        async def observed(cell: Any) -> Any:
            out = await run_cell(cell)
            timing = out.get("metadata", {}).get("execution", {})
            self.last_busy = _busy(timing.get("iopub.status.busy"), timing.get("iopub.status.idle"))
            return out

        self.ex._execute_cell = observed  # type: ignore[method-assign]

    async def execute(self, code: str) -> Result:
        from autogen_core import CancellationToken
        from autogen_core.code_executor import CodeBlock

        self.last_busy = None
        r = await self.ex.execute_code_blocks(
            [CodeBlock(code=code, language="python")], CancellationToken()
        )
        png = any(str(f).endswith(".png") for f in r.output_files)
        return Result(ok=r.exit_code == 0, busy_s=self.last_busy, png=png)

    async def stop(self) -> int | None:
        output_dir = self.ex.output_dir
        process = self.ex._client.km.provisioner.process  # type: ignore[union-attr]
        await self.ex.stop()
        shutil.rmtree(output_dir, ignore_errors=True)  # it writes every PNG and HTML there
        return process.poll()  # type: ignore[no-any-return]


def _probed_backend() -> Any:
    """agentnb's own LocalBackend, noting the kernel's busy/idle times as they pass.

    The probe is one dict store per status message (a microsecond); the timed
    code is otherwise agentnb's, unchanged. Sandboxed or not as a default
    ``ManagedKernel`` is (``$AGENTNB_SANDBOX``).
    """
    from agentnb.kernel.local import LocalBackend

    class ProbedBackend(LocalBackend):
        def __init__(self) -> None:
            super().__init__(sandbox=default_sandbox())
            self.last_request = ""
            self.status: dict[str, Any] = {}  # execution_state -> header date

        def send(self, msg_type: str, content: Any, *, buffers: Any = ()) -> str:
            msg_id = super().send(msg_type, content, buffers=buffers)
            if msg_type == "execute_request":
                self.last_request, self.status = msg_id, {}
            return msg_id

        async def iopub(self) -> dict[str, Any]:
            msg = await super().iopub()
            if msg["msg_type"] == "status" and (
                msg["parent_header"].get("msg_id") == self.last_request
            ):
                self.status[msg["content"]["execution_state"]] = msg["header"]["date"]
            return msg

    return ProbedBackend()


class AgentnbPath:
    """agentnb ``ManagedKernel.execute``."""

    key = "agentnb"
    label = "agentnb ManagedKernel"
    preload: tuple[str, ...] = ()

    async def start(self) -> None:
        from agentnb import KernelConfig, ManagedKernel

        self.backend = _probed_backend()
        self.k = ManagedKernel(
            KernelConfig(preload=self.preload, step_timeout=120), backend=self.backend
        )
        await self.k.start()

    async def execute(self, code: str) -> Result:
        e = await self.k.execute(code)
        status = self.backend.status
        png = any("image/png" in o.get("data", {}) for o in e.outputs)
        return Result(
            ok=e.status == "ok", busy_s=_busy(status.get("busy"), status.get("idle")), png=png
        )

    async def stop(self) -> int | None:
        return await _shutdown_agentnb(self.k)


async def _shutdown_agentnb(k: Any) -> int | None:
    """``k.shutdown()``; the kernel's exit code (-9: SIGKILLed at the 1 s cap)."""
    process = k._backend._process
    await k.shutdown()
    return process.poll()  # type: ignore[no-any-return]


PATHS: list[type[RawPath] | type[AutogenPath] | type[AgentnbPath]] = [
    RawPath,
    AutogenPath,
    AgentnbPath,
]


def rotate(items: list[Any], k: int) -> list[Any]:
    k %= len(items)
    return items[k:] + items[:k]


# --- warm round trips ------------------------------------------------------------


@dataclass
class Counts:
    warmup: dict[str, int]
    timed: dict[str, int]  # per block and path


async def warm_block(
    block: int, counts: Counts, samples: dict[str, Any], quiet_wait: float
) -> dict[str, Any]:
    """One fresh kernel per path; the paths take turns, execution by execution."""
    quiet = await wait_for_quiet(max_wait=quiet_wait)
    watch = CpuWatch()
    paths = [cls() for cls in rotate(PATHS, block)]  # type: ignore[abstract]
    for p in paths:
        await p.start()
        r = await p.execute(SETUP)
        if not r.ok:
            raise RuntimeError(f"{p.key}: setup failed")
    medians: dict[str, dict[str, float]] = {}
    for workload, code in WORKLOADS.items():
        taken: dict[str, list[float]] = {p.key: [] for p in paths}
        for i in range(counts.warmup[workload] + counts.timed[workload]):
            for p in rotate(paths, i):
                t0 = time.perf_counter()
                r = await p.execute(code)
                dt = time.perf_counter() - t0
                slot = samples[workload][p.key]
                if not r.ok:
                    slot["failures"] += 1
                if workload == "matplotlib PNG" and not r.png:
                    slot["missing_png"] += 1
                if i < counts.warmup[workload]:
                    continue
                taken[p.key].append(dt)
                slot["roundtrip"].append(dt)
                if r.busy_s is not None:
                    slot["busy"].append(r.busy_s)
                    slot["outside"].append(dt - r.busy_s)
        medians[workload] = {k: statistics.median(v) * 1000 for k, v in taken.items()}
    shutdown: dict[str, float] = {}
    exit_codes: dict[str, int | None] = {}
    for p in rotate(paths, 1):
        t0 = time.perf_counter()
        exit_codes[p.key] = await p.stop()
        shutdown[p.key] = time.perf_counter() - t0
    load = watch.read()
    print(
        f"  block {block + 1}: "
        + "; ".join(
            f"{w} " + " ".join(f"{k} {ms(v)}" for k, v in m.items()) for w, m in medians.items()
        )
        + f"  (foreign load {load['foreign_cores']} cores)",
        flush=True,
    )
    return {
        "block": block + 1,
        "block_medians_ms": medians,
        "shutdown_s": shutdown,
        "exit_codes": exit_codes,
        "quiet_wait": quiet,
        **load,
    }


# --- cold start, pre-warmed start, shutdown -----------------------------------------


async def cold_raw() -> dict[str, float]:
    return await _cold(RawPath())


async def cold_autogen() -> dict[str, float]:
    return await _cold(AutogenPath())


async def cold_agentnb_bare() -> dict[str, float]:
    return await _cold(AgentnbPath())


async def cold_agentnb_default() -> dict[str, float]:
    from agentnb.kernel.config import DEFAULT_PRELOAD

    path = AgentnbPath()
    path.preload = DEFAULT_PRELOAD
    return await _cold(path)


async def _cold(path: RawPath | AutogenPath | AgentnbPath) -> dict[str, float]:
    t0 = time.perf_counter()
    await path.start()
    t1 = time.perf_counter()
    r = await path.execute("x = 1")
    t2 = time.perf_counter()
    exit_code = await path.stop()
    t3 = time.perf_counter()
    if not r.ok:
        raise RuntimeError(f"{path.key}: x = 1 failed in a new kernel")
    return {
        "total_s": t2 - t0,
        "start_s": t1 - t0,
        "first_execute_s": t2 - t1,
        "shutdown_s": t3 - t2,
        "exit_code": exit_code,
    }


async def prewarmed_agentnb() -> dict[str, float]:
    """prewarm(), the user does something else for 3 s, then the first request."""
    from agentnb import KernelConfig, ManagedKernel

    k = ManagedKernel(KernelConfig(step_timeout=120))  # default preload
    k.prewarm()
    await asyncio.sleep(PREWARM_IDLE_S)
    ready = k.is_started
    t0 = time.perf_counter()
    e = await k.execute("x = 1")
    t1 = time.perf_counter()
    warm = []
    for _ in range(5):
        t = time.perf_counter()
        await k.execute("x = 1")
        warm.append(time.perf_counter() - t)
    t2 = time.perf_counter()
    exit_code = await _shutdown_agentnb(k)
    t3 = time.perf_counter()
    if e.status != "ok":
        raise RuntimeError("agentnb pre-warmed: x = 1 failed")
    return {
        "total_s": t1 - t0,
        "first_execute_s": t1 - t0,
        "ready_before_request": ready,
        "next_5_median_s": statistics.median(warm),
        "shutdown_s": t3 - t2,
        "exit_code": exit_code,
    }


COLD: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
    "raw jupyter_client async": cold_raw,
    "AutoGen JupyterCodeExecutor": cold_autogen,
    "agentnb, preload=()": cold_agentnb_bare,
    "agentnb, default preload": cold_agentnb_default,
    "agentnb pre-warmed (default preload)": prewarmed_agentnb,
}


async def cold_rounds(
    rounds: int, warmup: int, quiet_wait: float
) -> tuple[dict[str, list[dict[str, float]]], list[dict[str, Any]]]:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in COLD}
    loads = []
    for i in range(warmup + rounds):
        quiet = await wait_for_quiet(max_wait=quiet_wait)
        watch = CpuWatch()
        for name in rotate(list(COLD), i):
            rec = await COLD[name]()
            if i >= warmup:
                results[name].append(rec)
            await asyncio.sleep(0.3)  # let the exiting kernel's CPU settle
        load = watch.read()
        loads.append({"round": i + 1, "warmup": i < warmup, "quiet_wait": quiet, **load})
        print(
            f"  cold round {i + 1}/{warmup + rounds}"
            f"{' (warm-up)' if i < warmup else ''}: foreign load {load['foreign_cores']} cores",
            flush=True,
        )
    return results, loads


# --- main ------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = Counts(
        warmup={"x = 1": 20, "matplotlib PNG": 3, "groupby 1M rows": 3},
        timed={"x = 1": 60, "matplotlib PNG": 16, "groupby 1M rows": 16},
    )
    if args.quick:
        counts = Counts(warmup=dict.fromkeys(WORKLOADS, 2), timed=dict.fromkeys(WORKLOADS, 5))
    samples = {
        w: {
            p.key: {"roundtrip": [], "busy": [], "outside": [], "failures": 0, "missing_png": 0}
            for p in PATHS
        }
        for w in WORKLOADS
    }
    machine = machine_info(PACKAGES)
    started = time.perf_counter()
    print(f"warm round trips: {args.blocks} blocks, one fresh kernel per path per block")
    print(f"  agentnb's kernel is {'' if default_sandbox() else 'NOT '}sandboxed")
    blocks = [await warm_block(b, counts, samples, args.quiet_wait) for b in range(args.blocks)]
    print(f"\ncold starts: {args.cold_rounds} rounds after {args.cold_warmup} warm-up round(s)")
    cold, cold_loads = await cold_rounds(args.cold_rounds, args.cold_warmup, args.quiet_wait)
    return {
        "machine": machine,
        "counts": counts.__dict__,
        "samples": samples,
        "blocks": blocks,
        "cold": cold,
        "cold_loads": cold_loads,
        "wall_s": time.perf_counter() - started,
    }


def report(args: argparse.Namespace, raw: dict[str, Any]) -> dict[str, Any]:
    labels = {p.key: p.label for p in PATHS}
    warm: dict[str, Any] = {}
    for workload, per_path in raw["samples"].items():
        warm[workload] = {}
        rows = []
        for key, s in per_path.items():
            block_medians = [b["block_medians_ms"][workload][key] for b in raw["blocks"]]
            summary = {
                "roundtrip": summarize(s["roundtrip"]),
                "kernel_busy": summarize(s["busy"]),
                "outside_kernel": summarize(s["outside"]),
                "block_medians_ms": block_medians,
                "failures": s["failures"],
                "missing_png": s["missing_png"],
            }
            warm[workload][key] = summary
            rt, busy, out = summary["roundtrip"], summary["kernel_busy"], summary["outside_kernel"]
            rows.append(
                [
                    labels[key],
                    rt["n"],
                    ms(rt["median_ms"]),
                    ms(rt["p95_ms"]),
                    ms(busy.get("median_ms")),
                    ms(out.get("median_ms")),
                    ms(out.get("p95_ms")),
                    f"{ms(min(block_medians))}–{ms(max(block_medians))}",
                ]
            )
        print_table(
            f"warm round trip: {workload} (ms)",
            [
                "path",
                "n",
                "median",
                "p95",
                "kernel busy",
                "outside",
                "outside p95",
                "block medians",
            ],
            rows,
        )

    ratios: dict[str, Any] = {}
    rows = []
    for workload, per_path in warm.items():
        floor = per_path["raw"]
        r = {}
        for key in ("agentnb", "autogen"):
            r[key] = {
                "roundtrip_ratio": per_path[key]["roundtrip"]["median_ms"]
                / floor["roundtrip"]["median_ms"],
                "outside_diff_ms": per_path[key]["outside_kernel"]["median_ms"]
                - floor["outside_kernel"]["median_ms"],
            }
        r["pass"] = r["agentnb"]["roundtrip_ratio"] <= TARGET_RATIO
        ratios[workload] = r
        rows.append(
            [
                workload,
                ms(floor["roundtrip"]["median_ms"]),
                ms(per_path["agentnb"]["roundtrip"]["median_ms"]),
                f"{r['agentnb']['roundtrip_ratio']:.3f}",
                f"{r['agentnb']['outside_diff_ms']:+.2f}",
                f"{r['autogen']['roundtrip_ratio']:.3f}",
                f"{r['autogen']['outside_diff_ms']:+.2f}",
                "PASS" if r["pass"] else "FAIL",
            ]
        )
    print_table(
        f"agentnb vs the floor (median round trip; target ratio <= {TARGET_RATIO})",
        [
            "workload",
            "raw",
            "agentnb",
            "agentnb/raw",
            "agentnb outside Δ",
            "autogen/raw",
            "autogen outside Δ",
            "verdict",
        ],
        rows,
    )

    cold: dict[str, Any] = {}
    rows = []
    for name, recs in raw["cold"].items():
        parts = {
            k: summarize(r[k] for r in recs)
            for k in ("total_s", "start_s", "first_execute_s", "shutdown_s", "next_5_median_s")
            if recs and k in recs[0]
        }
        if recs and "ready_before_request" in recs[0]:
            parts["ready_before_request"] = sum(bool(r["ready_before_request"]) for r in recs)
        parts["exit_codes"] = _count(r["exit_code"] for r in recs)
        cold[name] = parts
        total = parts["total_s"]
        rows.append(
            [
                name,
                total["n"],
                ms(total["median_ms"]),
                ms(total["p95_ms"]),
                ms(parts.get("start_s", {}).get("median_ms")),
                ms(parts["first_execute_s"]["median_ms"]),
                ms(parts["shutdown_s"]["median_ms"]),
                ms(parts["shutdown_s"]["p95_ms"]),
                _killed(parts["exit_codes"]),
            ]
        )
    print_table(
        "new kernel -> first `x = 1` result (ms); pre-warmed: request -> result after "
        f"prewarm() and {PREWARM_IDLE_S:g} s idle",
        [
            "path",
            "n",
            "median",
            "p95",
            "start",
            "first execute",
            "shutdown",
            "shutdown p95",
            "killed",
        ],
        rows,
    )
    pre = cold["agentnb pre-warmed (default preload)"]
    print(
        f"  pre-warmed: kernel ready before the request in {pre['ready_before_request']}/"
        f"{pre['total_s']['n']} rounds; the next 5 `x = 1` in that kernel: median "
        f"{ms(pre['next_5_median_s']['median_ms'])} ms"
    )

    shutdown_after = {
        key: {
            **summarize(b["shutdown_s"][key] for b in raw["blocks"]),
            "exit_codes": _count(b["exit_codes"][key] for b in raw["blocks"]),
        }
        for key in labels
    }
    print_table(
        "shutdown after the warm workloads (pandas, matplotlib loaded, 1M-row frame) (ms)",
        ["path", "n", "median", "p95", "max", "killed"],
        [
            [
                labels[k],
                s["n"],
                ms(s["median_ms"]),
                ms(s["p95_ms"]),
                ms(s["max_ms"]),
                _killed(s["exit_codes"]),
            ]
            for k, s in shutdown_after.items()
        ],
    )
    print(
        "  killed: kernels that ended by a signal: SIGKILL/SIGTERM from the client's time cap,"
        " SIGABRT from the kernel itself"
    )

    foreign = [
        b["foreign_cores"]
        for b in raw["blocks"] + raw["cold_loads"]
        if b["foreign_cores"] is not None
    ]
    if foreign:
        print(
            f"\nforeign load (CPU used outside this benchmark's processes): median "
            f"{statistics.median(foreign):.2f}, max {max(foreign):.2f} cores per block/round"
        )
    print(f"wall time {raw['wall_s']:.0f} s")
    return {
        "benchmark": "kernel_roundtrip",
        "quick": args.quick,
        "machine": raw["machine"],
        "kernel_name_for_raw_and_autogen": KERNEL_NAME,
        "agentnb_sandboxed": default_sandbox() is not None,
        "method": {
            "blocks": args.blocks,
            "counts_per_block_and_path": raw["counts"],
            "cold_rounds": args.cold_rounds,
            "cold_warmup_rounds": args.cold_warmup,
            "prewarm_idle_s": PREWARM_IDLE_S,
            "quiet_wait_s": args.quiet_wait,
            "setup": SETUP,
            "workloads": WORKLOADS,
            "target_ratio": TARGET_RATIO,
        },
        "warm": warm,
        "ratios_vs_floor": ratios,
        "cold_start": cold,
        "shutdown_after_warm_workloads": shutdown_after,
        "blocks": raw["blocks"],
        "cold_round_loads": raw["cold_loads"],
        "wall_s": raw["wall_s"],
    }


def _count(codes: Iterable[int | None]) -> dict[str, int]:
    """How many kernels ended with each exit code ("-9": SIGKILL)."""
    return dict(collections.Counter(str(c) for c in codes))


def _killed(exit_codes: dict[str, int]) -> str:
    killed = {c: n for c, n in exit_codes.items() if c.startswith("-")}
    total = sum(exit_codes.values())
    if not killed:
        return f"0/{total}"
    names = ", ".join(f"{signal.Signals(-int(c)).name} {n}" for c, n in killed.items())
    return f"{sum(killed.values())}/{total} ({names})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run with small counts")
    ap.add_argument("--blocks", type=int, help="warm blocks (kernel instances per path)")
    ap.add_argument("--cold-rounds", type=int, help="measured cold-start rounds")
    ap.add_argument("--cold-warmup", type=int, help="discarded cold-start rounds")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="longest wait for a quiet machine before each block and round (s)",
    )
    args = ap.parse_args()
    for name, full, quick in (("blocks", 10, 2), ("cold_rounds", 20, 2), ("cold_warmup", 2, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    ensure_interpreter(
        ["autogen_ext.code_executors.jupyter", "agentnb"],
        "agentnb and autogen-ext[jupyter-executor]",
    )
    raw = asyncio.run(run(args))
    write_json(
        "kernel_roundtrip-quick.json" if args.quick else "kernel_roundtrip.json", report(args, raw)
    )


if __name__ == "__main__":
    main()
