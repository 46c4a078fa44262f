"""Managed-kernel round trips: a local kernel against one on a Kernel Gateway, on loopback.

Two paths, one ``ManagedKernel`` each, the same kernelspec interpreter:

- ``local``: ``LocalBackend``, jupyter_client over ipc, not sandboxed, like the
  gateway's kernel (agentnb's sandbox is for local kernels; a gateway isolates its own),
  so that only the transport differs;
- ``gateway``: ``GatewayBackend`` against a ``jupyter kernelgateway`` that this
  script starts on 127.0.0.1 (REST + one websocket, token auth).

Loopback is the best case for the gateway: what is left is the cost of its extra
hops (agentnb → websocket → gateway → zmq → kernel), not the network's.

Warm workloads (``x = 1``, a matplotlib PNG, a groupby over a 1,000,000-row frame
built in untimed setup) run in blocks; each block starts a fresh kernel on each
path, and inside a block the paths take turns execution by execution (rotating who
goes first). "Kernel busy" is the kernel's own busy -> idle time from the iopub
status headers; "outside" = round trip - kernel busy, the client and transport
cost. Also measured: cold start (ManagedKernel creation -> first ``x = 1``),
shutdown, and push/pull of a 1,000,000-row DataFrame (35 MiB, so the gateway's
push travels in parts).

    python bench/gateway_roundtrip.py            # full: about 3 minutes on 2 cores
    python bench/gateway_roundtrip.py --quick    # smoke run, about 40 s
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from _util import (
    CpuWatch,
    machine_info,
    ms,
    print_table,
    summarize,
    wait_for_quiet,
    write_json,
)

from agentnb import KernelConfig, ManagedKernel
from agentnb.kernel.backend import Message
from agentnb.kernel.gateway import GatewayBackend
from agentnb.kernel.local import LocalBackend
from tests.kernel.gateway import running_gateway

SETUP = """\
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
rng = np.random.default_rng(0)
df = pd.DataFrame({"key": rng.integers(0, 1000, 1_000_000), "val": rng.standard_normal(1_000_000)})
"""
WORKLOADS = {
    "x = 1": "x = 1",
    "matplotlib PNG": "fig, ax = plt.subplots(figsize=(6,4)); ax.plot(range(1000)); plt.show()",
    "groupby 1M rows": 'df.groupby("key")["val"].agg(["mean","sum","count"])',
}
PACKAGES = [
    "agentnb",
    "jupyter_kernel_gateway",
    "jupyter_server",
    "jupyter_client",
    "ipykernel",
    "tornado",
    "pyzmq",
    "pandas",
    "numpy",
    "pyarrow",
    "psutil",
]
PATHS = ("local", "gateway")


# --- the gateway -----------------------------------------------------------------------


@contextmanager
def kernel_gateway() -> Iterator[tuple[str, str]]:
    """A ``jupyter kernelgateway`` on a free loopback port, the tests' own: (url, token)."""
    where = Path(tempfile.mkdtemp(prefix="agentnb-bench-gateway-"))
    with running_gateway(where) as gateway:
        yield gateway.url, gateway.token
        left = gateway.kernels()
        if left:
            print(f"warning: {len(left)} kernel(s) left on the gateway")


# --- the two paths, with the kernel's busy time noted as messages pass -----------------


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class _Probe:
    """Notes the dates of the last busy and idle status messages (one dict store each)."""

    status: dict[str, Any]

    def note(self, msg: Message) -> Message:
        if msg["msg_type"] == "status":
            state = msg["content"].get("execution_state")
            if state in ("busy", "idle"):
                self.status[state] = msg["header"]["date"]
        return msg

    def busy_s(self) -> float | None:
        busy, idle = self.status.get("busy"), self.status.get("idle")
        if busy is None or idle is None:
            return None
        return (_date(idle) - _date(busy)).total_seconds()


class ProbedLocal(LocalBackend, _Probe):
    def __init__(self) -> None:
        super().__init__()
        self.status = {}

    async def iopub(self) -> Message:
        return self.note(await super().iopub())


class ProbedGateway(GatewayBackend, _Probe):
    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token=token)
        self.status = {}

    async def iopub(self) -> Message:
        return self.note(await super().iopub())


def make_kernel(path: str, gateway: tuple[str, str], preload: tuple[str, ...] = ()) -> Any:
    backend: Any = ProbedLocal() if path == "local" else ProbedGateway(*gateway)
    config = KernelConfig(preload=preload, step_timeout=120)
    return ManagedKernel(config, backend=backend), backend


# --- measurements ---------------------------------------------------------------------


class GatewayCpuWatch(CpuWatch):
    """:class:`CpuWatch` that also counts the kernels the gateway started and reaped.

    Their CPU time lands in the gateway's ``children_*`` times, which the shared
    helper does not add for descendants; without this it shows up as foreign load.
    """

    def __init__(self) -> None:
        self.reaped0 = _reaped_by_descendants()
        super().__init__()

    def read(self) -> dict[str, float | None]:
        load = super().read()
        reaped = _reaped_by_descendants() - self.reaped0
        wall = load["wall_s"] or 1.0
        if load.get("foreign_cores") is not None:
            own = (load["own_cores"] or 0.0) + reaped / wall
            load["own_cores"] = round(own, 3)
            load["foreign_cores"] = round(max((load["machine_cores"] or 0.0) - own, 0.0), 3)
        return load


def _reaped_by_descendants() -> float:
    """CPU seconds of processes that descendants of this one have started and reaped."""
    import psutil  # type: ignore[import-untyped]

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.children_user + times.children_system
    return total


async def warm_block(
    block: int, counts: dict[str, tuple[int, int]], gateway: tuple[str, str], samples: Any
) -> dict[str, Any]:
    quiet = await wait_for_quiet()
    watch = GatewayCpuWatch()
    order = PATHS if block % 2 == 0 else PATHS[::-1]
    kernels = {path: make_kernel(path, gateway) for path in order}
    for kernel, _ in kernels.values():
        await kernel.start()
        setup = await kernel.execute(SETUP)
        assert setup.ok, setup.to_model_text()
    for name, code in WORKLOADS.items():
        warmup, timed = counts[name]
        for i in range(warmup + timed):
            turn = order if i % 2 == 0 else order[::-1]
            for path in turn:
                kernel, backend = kernels[path]
                t0 = time.perf_counter()
                result = await kernel.execute(code)
                elapsed = time.perf_counter() - t0
                assert result.ok, result.to_model_text()
                if name == "matplotlib PNG":
                    assert any("image/png" in o.get("data", {}) for o in result.outputs)
                if i >= warmup:
                    busy = backend.busy_s()
                    samples[path][name]["round_trip"].append(elapsed)
                    if busy is not None:
                        samples[path][name]["outside"].append(elapsed - busy)
    shutdowns = {}
    for path, (kernel, _) in kernels.items():
        t0 = time.perf_counter()
        await kernel.shutdown()
        shutdowns[path] = time.perf_counter() - t0
    return {"block": block, "quiet": quiet, "load": watch.read(), "shutdown_s": shutdowns}


async def cold_round(gateway: tuple[str, str]) -> dict[str, dict[str, float]]:
    """ManagedKernel creation -> first ``x = 1`` result, then shutdown, one at a time."""
    out: dict[str, dict[str, float]] = {}
    for path in PATHS:
        await wait_for_quiet()
        t0 = time.perf_counter()
        kernel, _ = make_kernel(path, gateway)
        result = await kernel.execute("x = 1")
        first = time.perf_counter() - t0
        assert result.ok
        t0 = time.perf_counter()
        await kernel.shutdown()
        out[path] = {"cold_start": first, "shutdown": time.perf_counter() - t0}
    return out


async def data_round(gateway: tuple[str, str], rows: int, reps: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "region": np.array(["north", "south", "east", "west"])[np.arange(rows) % 4],
            "when": pd.date_range("2024-01-01", periods=rows, freq="min"),
            "units": np.arange(rows, dtype="int64"),
            "price": np.linspace(1.0, 2.0, rows),
        }
    )
    times: dict[str, dict[str, list[float]]] = {p: {"push": [], "pull": []} for p in PATHS}
    for path in PATHS:
        kernel, _ = make_kernel(path, gateway)
        await kernel.start()
        for rep in range(reps + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            await kernel.push("frame", frame)
            pushed = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = await kernel.pull("frame")
            pulled = time.perf_counter() - t0
            assert len(back) == rows
            if rep:
                times[path]["push"].append(pushed)
                times[path]["pull"].append(pulled)
        await kernel.shutdown()
    return {
        "rows": rows,
        "in_memory_mib": round(frame.memory_usage(deep=True).sum() / 2**20, 1),
        "summary": {p: {op: summarize(xs) for op, xs in ops.items()} for p, ops in times.items()},
    }


# --- main -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = {
        "x = 1": (10, args.timed),
        "matplotlib PNG": (2, max(args.timed // 4, 2)),
        "groupby 1M rows": (2, max(args.timed // 4, 2)),
    }
    samples: dict[str, Any] = {
        p: {w: {"round_trip": [], "outside": []} for w in WORKLOADS} for p in PATHS
    }
    started = time.perf_counter()
    with kernel_gateway() as gateway:
        blocks = [await warm_block(b, counts, gateway, samples) for b in range(args.blocks)]
        colds = [await cold_round(gateway) for _ in range(args.cold_rounds + 1)][1:]
        data = await data_round(gateway, args.rows, args.reps)
    warm = {
        path: {
            name: {kind: summarize(xs) for kind, xs in per.items()}
            for name, per in samples[path].items()
        }
        for path in PATHS
    }
    ratios = {
        name: warm["gateway"][name]["round_trip"]["median_ms"]
        / warm["local"][name]["round_trip"]["median_ms"]
        for name in WORKLOADS
    }
    cold = {
        path: {kind: summarize(c[path][kind] for c in colds) for kind in ("cold_start", "shutdown")}
        for path in PATHS
    }
    return {
        "benchmark": "gateway_roundtrip",
        "quick": args.quick,
        "machine": machine_info(PACKAGES),
        "method": {
            "blocks": args.blocks,
            "counts_per_block_and_path": {
                n: {"warmup": w, "timed": t} for n, (w, t) in counts.items()
            },
            "cold_rounds": args.cold_rounds,
            "cold_warmup_rounds": 1,
            "data_reps": args.reps,
            "setup": SETUP,
            "workloads": WORKLOADS,
            "gateway": "jupyter kernelgateway on 127.0.0.1, token auth, default python3 kernelspec",
        },
        "warm": warm,
        "gateway_over_local_median_ratio": ratios,
        "cold": cold,
        "data": data,
        "blocks": blocks,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def report(result: dict[str, Any]) -> None:
    warm = result["warm"]
    rows = []
    for name in WORKLOADS:
        local, remote = warm["local"][name], warm["gateway"][name]
        rows.append(
            [
                name,
                ms(local["round_trip"]["median_ms"]),
                ms(remote["round_trip"]["median_ms"]),
                f"{result['gateway_over_local_median_ratio'][name]:.2f}",
                ms(remote["round_trip"]["median_ms"] - local["round_trip"]["median_ms"]),
                ms(local["outside"]["median_ms"]),
                ms(remote["outside"]["median_ms"]),
                ms(remote["round_trip"]["p95_ms"]),
            ]
        )
    print_table(
        "warm round trips (ms, medians unless said)",
        ["workload", "local", "gateway", "ratio", "+ms", "local out", "gw out", "gw p95"],
        rows,
    )
    cold = result["cold"]
    print_table(
        "cold start -> first result, and shutdown (ms, medians)",
        ["path", "cold start", "shutdown"],
        [
            [p, ms(cold[p]["cold_start"]["median_ms"]), ms(cold[p]["shutdown"]["median_ms"])]
            for p in PATHS
        ],
    )
    data = result["data"]
    size = f"{data['rows']:,}-row DataFrame ({data['in_memory_mib']} MiB)"
    print_table(
        f"push / pull of a {size}; ms, medians",
        ["path", "push", "pull"],
        [
            [
                p,
                ms(data["summary"][p]["push"]["median_ms"]),
                ms(data["summary"][p]["pull"]["median_ms"]),
            ]
            for p in PATHS
        ],
    )
    loads = [b["load"]["foreign_cores"] for b in result["blocks"]]
    known = [x for x in loads if x is not None]
    if known:
        print(
            f"\nforeign load per block: median {statistics.median(known):.2f}, max {max(known):.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run")
    ap.add_argument("--blocks", type=int, help="warm blocks (fresh kernels each; default 6)")
    ap.add_argument("--timed", type=int, help="timed `x = 1` per block and path (default 60)")
    ap.add_argument("--cold-rounds", type=int, help="measured cold rounds (default 8)")
    ap.add_argument("--rows", type=int, help="rows of the pushed frame (default 1,000,000)")
    ap.add_argument("--reps", type=int, help="measured push/pull repetitions (default 5)")
    args = ap.parse_args()
    quick = {"blocks": 1, "timed": 8, "cold_rounds": 1, "rows": 100_000, "reps": 1}
    full = {"blocks": 6, "timed": 60, "cold_rounds": 8, "rows": 1_000_000, "reps": 5}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    result = asyncio.run(run(args))
    report(result)
    write_json("gateway_roundtrip-quick.json" if args.quick else "gateway_roundtrip.json", result)


if __name__ == "__main__":
    main()
