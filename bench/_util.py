"""Small helpers shared by the benchmark scripts: statistics, tables, machine facts.

Nothing written by these helpers contains a path of the machine that ran them, so
the JSON results can be committed as they are.

Importing this module makes the repository's ``tests`` package importable: the benchmarks
start their Jupyter servers and Kernel Gateway with the tests' own code
(``tests.browser.harness``, ``tests.kernel.gateway``), not with copies of it.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent
if str(REPO) not in sys.path[:2]:
    # first after the script's folder, as ``python -m`` from the root would have it: this
    # checkout's ``tests`` (and ``agentnb``), whatever an editable install points at
    sys.path.insert(1, str(REPO))


def ensure_interpreter(modules: Sequence[str], needs: str) -> None:
    """Re-run this script under ``$AGENTNB_BENCH_PYTHON`` when ``modules`` cannot be
    imported here (the peers' packages live in their own venv)."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as err:
        python = os.environ.get("AGENTNB_BENCH_PYTHON")
        if python and os.environ.get("_AGENTNB_BENCH_REEXEC") != "1":
            os.environ["_AGENTNB_BENCH_REEXEC"] = "1"
            os.execv(python, [python, *sys.argv])
        raise SystemExit(
            f"{err}: run this with a Python that has {needs} installed, or set "
            "AGENTNB_BENCH_PYTHON to one (see bench/README.md)"
        ) from None


def default_sandbox() -> Any:
    """The sandbox a default ``ManagedKernel`` gets (``$AGENTNB_SANDBOX``, else on), for
    benchmarks that build their own ``LocalBackend``; None where it is off."""
    from agentnb.kernel.sandbox import SandboxSettings, default_memory_limit, sandbox_from_env

    return SandboxSettings(memory_limit=default_memory_limit()) if sandbox_from_env() else None


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_xs:
        return float("nan")
    k = (len(sorted_xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


def summarize(seconds: Iterable[float]) -> dict[str, float]:
    """n, median, p95, min, max, mean and stdev, in milliseconds."""
    xs = sorted(s * 1000.0 for s in seconds)
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median_ms": statistics.median(xs),
        "p95_ms": percentile(xs, 0.95),
        "min_ms": xs[0],
        "max_ms": xs[-1],
        "mean_ms": statistics.fmean(xs),
        "stdev_ms": statistics.stdev(xs) if len(xs) > 1 else 0.0,
    }


def ms(value: float | None) -> str:
    """A duration in milliseconds, with sensible precision."""
    if value is None or value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table; the first column left-aligned, the others right-aligned."""
    cells = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1) -> str:
    """A markdown table, as bench/README.md quotes them: the first ``left`` columns
    left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info(packages: Sequence[str]) -> dict[str, Any]:
    """Versions and machine facts, without any path of this machine."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "mem_total": _proc_field("/proc/meminfo", "MemTotal"),
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")
    return path


class CpuWatch:
    """CPU used by processes outside this benchmark's own process tree ("foreign load").

    Reads /proc/stat for the whole machine and psutil for this process and its
    descendants (kernels included). Without psutil the foreign load is unknown.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.machine0 = _machine_busy()
        self.own0 = _own_cpu()

    def read(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.t0
        machine = (_machine_busy() - self.machine0) / wall
        own_now = _own_cpu()
        if own_now is None or self.own0 is None:
            return {
                "wall_s": round(wall, 2),
                "machine_cores": round(machine, 3),
                "foreign_cores": None,
            }
        own = (own_now - self.own0) / wall
        return {
            "wall_s": round(wall, 2),
            "machine_cores": round(machine, 3),
            "own_cores": round(own, 3),
            "foreign_cores": round(max(machine - own, 0.0), 3),
        }


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float | None:
    """CPU seconds of this process, its reaped children and its live descendants."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    me = psutil.Process()
    t = me.cpu_times()
    total: float = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
        except psutil.Error:
            continue
        total += ct.user + ct.system
    return total


async def wait_for_quiet(
    threshold: float = 0.15, window: float = 1.5, max_wait: float = 120.0
) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until foreign load is at most ``threshold`` cores."""
    import asyncio

    t0 = time.perf_counter()
    while True:
        watch = CpuWatch()
        await asyncio.sleep(window)
        load = watch.read()["foreign_cores"]
        waited = time.perf_counter() - t0
        if load is None or load <= threshold or waited >= max_wait:
            return {
                "waited_s": round(waited, 1),
                "foreign_cores_then": load,
                "gave_up": load is not None and load > threshold,
            }
