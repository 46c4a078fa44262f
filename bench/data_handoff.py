"""Moving a 1,000,000-row DataFrame between the user's kernel and the managed kernel.

Part 1, formats, in this process: serialize + deserialize round trips of the same
frame (a string column with 4 values, a datetime, an int64 and a float64 column):

- pickle protocol 5, in-band (one bytes object);
- pickle protocol 5, out-of-band buffers, loaded zero-copy from those buffers;
- the same, with each buffer copied into a writable bytearray first, as
  agentnb's kernel side does with the frames it receives;
- Arrow IPC stream, read back with ``table.validate(full=True)`` (what pull does);
- parquet, uncompressed and snappy.

Arrow and parquet encode with ``preserve_index=None``, as pull does: a
``RangeIndex`` travels as metadata, not as a column.

Part 2, end to end through agentnb: ``ManagedKernel.push`` and ``.pull`` of the
same frame (medians over several repetitions), and a check that the pulled frame
equals the original (``pandas.testing.assert_frame_equal``).

Both parts run for the frame pandas builds by default (pandas 3: the ``str``
dtype, Arrow-backed) and for the same strings as an ``object`` column, the
pandas 2 default, which pickle must write string by string.

Needs agentnb, pandas and pyarrow; the project's own venv is enough.

    python bench/data_handoff.py [--reps 15] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from _util import machine_info, ms, print_table, summarize, write_json

from agentnb import KernelConfig, ManagedKernel

ROWS = 1_000_000
PACKAGES = ["agentnb", "pandas", "numpy", "pyarrow", "ipykernel", "jupyter_client", "pyzmq"]


def make_frame(rows: int, *, object_strings: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.array(["north", "south", "east", "west"], dtype=object)[rng.integers(0, 4, rows)]
    frame: pd.DataFrame = pd.DataFrame(
        {
            "region": pd.Series(labels, dtype=object) if object_strings else list(labels),
            "when": pd.date_range("2024-01-01", periods=rows, freq="s"),
            "units": rng.integers(0, 1_000, rows, dtype=np.int64),
            "price": rng.standard_normal(rows),
        }
    )
    return frame


# --- formats: (serialize, deserialize, size of the serialized form) --------------

Codec = tuple[Callable[[pd.DataFrame], Any], Callable[[Any], pd.DataFrame], Callable[[Any], int]]


def _pickle_oob(df: pd.DataFrame) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buffers: list[pickle.PickleBuffer] = []
    return pickle.dumps(df, protocol=5, buffer_callback=buffers.append), buffers


def _oob_size(data: tuple[bytes, list[pickle.PickleBuffer]]) -> int:
    return len(data[0]) + sum(b.raw().nbytes for b in data[1])


def _arrow_write(df: pd.DataFrame) -> pa.Buffer:
    table = pa.Table.from_pandas(df, preserve_index=None)  # as pull encodes
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _arrow_read(buf: pa.Buffer) -> pd.DataFrame:
    table = pa.ipc.open_stream(buf).read_all()
    table.validate(full=True)
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _parquet_write(compression: str | None) -> Callable[[pd.DataFrame], bytes]:
    def write(df: pd.DataFrame) -> bytes:
        out = io.BytesIO()
        pq.write_table(
            pa.Table.from_pandas(df, preserve_index=None), out, compression=compression or "none"
        )
        return out.getvalue()

    return write


def _parquet_read(data: bytes) -> pd.DataFrame:
    frame: pd.DataFrame = pq.read_table(pa.BufferReader(data)).to_pandas()
    return frame


FORMATS: dict[str, Codec] = {
    "pickle 5 in-band": (
        lambda df: pickle.dumps(df, protocol=5),
        pickle.loads,
        len,
    ),
    "pickle 5 out-of-band (zero-copy load)": (
        _pickle_oob,
        lambda d: pickle.loads(d[0], buffers=d[1]),
        _oob_size,
    ),
    "pickle 5 out-of-band + bytearray copies": (
        _pickle_oob,
        lambda d: pickle.loads(d[0], buffers=[bytearray(b) for b in d[1]]),
        _oob_size,
    ),
    "Arrow IPC stream (+ validate(full=True))": (_arrow_write, _arrow_read, lambda b: b.size),
    "parquet, uncompressed": (_parquet_write(None), _parquet_read, len),
    "parquet, snappy": (_parquet_write("snappy"), _parquet_read, len),
}


def bench_formats(df: pd.DataFrame, reps: int) -> dict[str, Any]:
    """Formats take turns inside each repetition; the first repetition is a warm-up."""
    times: dict[str, dict[str, list[float]]] = {
        name: {"serialize": [], "deserialize": [], "total": []} for name in FORMATS
    }
    sizes: dict[str, int] = {}
    equal: dict[str, bool] = {}
    names = list(FORMATS)
    for rep in range(reps + 1):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            dump, load, size = FORMATS[name]
            t0 = time.perf_counter()
            data = dump(df)
            t1 = time.perf_counter()
            back = load(data)
            t2 = time.perf_counter()
            if rep == 0:
                sizes[name] = size(data)
                equal[name] = _equal(df, back)
                continue
            times[name]["serialize"].append(t1 - t0)
            times[name]["deserialize"].append(t2 - t1)
            times[name]["total"].append(t2 - t0)
            del data, back
    return {
        name: {
            "size_bytes": sizes[name],
            "round_trip_equal": equal[name],
            **{k: summarize(v) for k, v in t.items()},
        }
        for name, t in times.items()
    }


def _equal(a: pd.DataFrame, b: pd.DataFrame, *, check_dtype: bool = True) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=check_dtype)
    except AssertionError:
        return False
    return True


# --- end to end through agentnb -------------------------------------------------


async def bench_agentnb(df: pd.DataFrame, reps: int) -> dict[str, Any]:
    push: list[float] = []
    pull: list[float] = []
    async with ManagedKernel(KernelConfig(preload=("numpy", "pandas"))) as k:
        await k.execute("import pyarrow")  # pull's first use would otherwise pay for it
        for rep in range(reps + 1):  # the first of each is a warm-up
            t0 = time.perf_counter()
            summary = await k.push("df", df)
            t1 = time.perf_counter()
            back = await k.pull("df")
            t2 = time.perf_counter()
            if rep:
                push.append(t1 - t0)
                pull.append(t2 - t1)
        dtypes = (await k.execute("df.dtypes.astype(str).to_dict()")).outputs
    result: dict[str, Any] = {
        "push": summarize(push),
        "pull": summarize(pull),
        "push_summary": summary,
        "kernel_dtypes": dtypes[0]["data"]["text/plain"] if dtypes else None,
        "pulled_dtypes": {c: str(t) for c, t in back.dtypes.items()},
        "pulled_equals_original": _equal(df, back),
    }
    if not result["pulled_equals_original"]:
        result["pulled_equals_original_ignoring_dtype"] = _equal(df, back, check_dtype=False)
        try:
            pd.testing.assert_frame_equal(df, back)
        except AssertionError as err:
            result["difference"] = str(err)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, help="measured repetitions (default 15; --quick 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 2 reps")
    args = ap.parse_args()
    reps = args.reps or (2 if args.quick else 15)
    rows = 100_000 if args.quick else ROWS
    machine = machine_info(PACKAGES)
    started = time.perf_counter()
    variants: dict[str, Any] = {}
    for variant, object_strings in (("default dtypes", False), ("object strings", True)):
        df = make_frame(rows, object_strings=object_strings)
        dtypes = {c: str(t) for c, t in df.dtypes.items()}
        memory = int(df.memory_usage(deep=True).sum())
        print(f"\n{variant}: {rows:,} rows, dtypes {dtypes}, {memory / 2**20:.1f} MiB in memory")
        formats = bench_formats(df, reps)
        print_table(
            f"serialize + deserialize, {variant} (ms, median of {reps}; size in MB)",
            ["format", "serialize", "deserialize", "round trip", "p95", "MB", "equal"],
            [
                [
                    name,
                    ms(f["serialize"]["median_ms"]),
                    ms(f["deserialize"]["median_ms"]),
                    ms(f["total"]["median_ms"]),
                    ms(f["total"]["p95_ms"]),
                    f"{f['size_bytes'] / 1e6:.1f}",
                    "yes" if f["round_trip_equal"] else "NO",
                ]
                for name, f in formats.items()
            ],
        )
        e2e = asyncio.run(bench_agentnb(df, reps))
        print_table(
            f"agentnb end to end, {variant} (ms, {reps} reps after a warm-up)",
            ["operation", "n", "median", "p95", "min", "max"],
            [
                [op, s["n"], ms(s["median_ms"]), ms(s["p95_ms"]), ms(s["min_ms"]), ms(s["max_ms"])]
                for op, s in (
                    ("push (pickle 5, out-of-band)", e2e["push"]),
                    ("pull (Arrow IPC)", e2e["pull"]),
                )
            ],
        )
        print(f"  pulled frame equals the original: {e2e['pulled_equals_original']}")
        if not e2e["pulled_equals_original"]:
            print(
                f"  ignoring dtypes: {e2e['pulled_equals_original_ignoring_dtype']}; "
                f"pulled dtypes {e2e['pulled_dtypes']}"
            )
        variants[variant] = {
            "rows": rows,
            "dtypes": dtypes,
            "memory_bytes": memory,
            "formats": formats,
            "agentnb": e2e,
        }
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f} s")
    write_json(
        "data_handoff-quick.json" if args.quick else "data_handoff.json",
        {
            "benchmark": "data_handoff",
            "quick": args.quick,
            "reps": reps,
            "machine": machine,
            "variants": variants,
            "wall_s": wall,
        },
    )


if __name__ == "__main__":
    main()
