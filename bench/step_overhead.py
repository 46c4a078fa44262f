"""What agentnb's kernel does around every step, and what a flood of output costs.

1. **Per-step hooks.** agentnb's kernel runs code before and after every step: the
   output guard (installed and removed), the tidy-up (processes left running, the
   working directory), closing figures, forgetting stream history. Each callback
   is timed inside the kernel (``perf_counter_ns`` around it) over warm ``x = 1``
   steps, in a sandboxed and an unsandboxed kernel.
2. **A flood.** The clear_output loop of issue 19 (``for i in range(3000):
   clear_output(wait=True); print(f'step {i}')``): wall time, iopub messages the
   client read, and what it ended with, for raw jupyter_client (reading every
   message until idle) and for agentnb (whose kernel coalesces the flood).

    python bench/step_overhead.py            # about 1 minute
    python bench/step_overhead.py --quick    # fewer steps
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import time
from typing import Any

from _util import machine_info, print_table, write_json

TIMED = """\
import time as _t
from IPython import get_ipython as _g
_ip = _g()
_times = {}
def _timed(event):
    for i, cb in enumerate(list(_ip.events.callbacks[event])):
        name = event + ": " + getattr(cb, "__qualname__", repr(cb))
        def w(*a, _cb=cb, _n=name):
            t = _t.perf_counter_ns()
            _cb(*a)
            _times.setdefault(_n, []).append(_t.perf_counter_ns() - t)
        _ip.events.callbacks[event][i] = w
_timed("pre_run_cell")
_timed("post_run_cell")
"""
FLOOD = (
    "from IPython.display import clear_output\n"
    "for i in range(3000):\n"
    "    clear_output(wait=True)\n"
    "    print(f'step {i}')"
)
PACKAGES = ["agentnb", "ipykernel", "ipython", "jupyter_client", "pyzmq"]


async def hook_costs(sandbox: bool, steps: int) -> dict[str, float]:
    from agentnb import KernelConfig, ManagedKernel

    async with ManagedKernel(KernelConfig(preload=(), sandbox=sandbox)) as kernel:
        await kernel.execute(TIMED)
        for _ in range(steps):
            await kernel.execute("x = 1")
        got = await kernel.execute(
            "{k: sorted(v)[len(v) // 2] / 1000 for k, v in _times.items() if len(v) > 5}"
        )
    import ast

    medians: dict[str, float] = ast.literal_eval(got.outputs[0]["data"]["text/plain"])
    return medians


async def raw_flood() -> dict[str, Any]:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3", transport="ipc")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    try:
        t0 = time.perf_counter()
        msg_id = kc.execute(FLOOD)
        messages, text, idle = 0, "", True
        while True:
            try:
                msg = await kc.get_iopub_msg(timeout=10)
            except queue.Empty:  # the socket dropped the idle: 10 s of silence
                idle = False
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages += 1
            if msg["msg_type"] == "stream":
                text = msg["content"]["text"]  # the last one is what a notebook shows
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        wall = time.perf_counter() - t0 - (0 if idle else 10)
        return {"wall_s": wall, "messages": messages, "last": text.strip(), "idle": idle}
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def agentnb_flood() -> dict[str, Any]:
    from agentnb import KernelConfig, ManagedKernel
    from agentnb.kernel.local import LocalBackend
    from agentnb.kernel.sandbox import SandboxSettings, default_memory_limit

    class Counted(LocalBackend):
        messages = 0

        async def iopub(self) -> dict[str, Any]:
            msg = await super().iopub()
            self.messages += 1
            return msg

    backend = Counted(sandbox=SandboxSettings(memory_limit=default_memory_limit()))
    async with ManagedKernel(KernelConfig(preload=()), backend=backend) as kernel:
        backend.messages = 0
        t0 = time.perf_counter()
        e = await kernel.execute(FLOOD)
        wall = time.perf_counter() - t0
    shown = "".join(o.get("text", "") for o in e.outputs).strip()
    idle = "incomplete" not in e.note
    return {"wall_s": wall, "messages": backend.messages, "last": shown, "idle": idle}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    steps = 50 if args.quick else 300
    hooks = {
        "sandboxed": await hook_costs(True, steps),
        "unsandboxed": await hook_costs(False, steps),
    }
    names = sorted(set(hooks["sandboxed"]) | set(hooks["unsandboxed"]))
    print_table(
        f"per-step hooks in the kernel, median µs over {steps} warm `x = 1` steps",
        ["callback", "sandboxed", "unsandboxed"],
        [
            [n, f"{hooks['sandboxed'].get(n, 0):.1f}", f"{hooks['unsandboxed'].get(n, 0):.1f}"]
            for n in names
        ]
        + [
            [
                "all",
                f"{sum(hooks['sandboxed'].values()):.1f}",
                f"{sum(hooks['unsandboxed'].values()):.1f}",
            ]
        ],
    )
    rounds = 1 if args.quick else 3
    floods: dict[str, list[dict[str, Any]]] = {"raw": [], "agentnb": []}
    for _ in range(rounds):
        floods["raw"].append(await raw_flood())
        floods["agentnb"].append(await agentnb_flood())
    print_table(
        f"the clear_output loop of 3,000 steps ({rounds} rounds, medians)",
        ["path", "wall (s)", "iopub messages", "idle lost", "shown at the end"],
        [
            [
                key,
                f"{statistics.median(r['wall_s'] for r in runs):.2f}",
                f"{statistics.median(r['messages'] for r in runs):,.0f}",
                f"{sum(not r['idle'] for r in runs)}/{len(runs)}",
                runs[-1]["last"][-40:],
            ]
            for key, runs in floods.items()
        ],
    )
    return {
        "benchmark": "step_overhead",
        "quick": args.quick,
        "machine": machine_info(PACKAGES),
        "steps": steps,
        "hook_median_us": hooks,
        "flood": floods,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    write_json("step_overhead-quick.json" if args.quick else "step_overhead.json", result)


if __name__ == "__main__":
    main()
