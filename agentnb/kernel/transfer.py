"""Values across the kernel boundary: the caller's half of push and pull.

Push (caller → kernel) uses pickle protocol 5 with out-of-band buffers: the caller
trusts its own values, and for a 1,000,000-row DataFrame it is the fastest format
measured (``bench/data_handoff.py``). Pull (kernel → caller) never unpickles:
the kernel runs model-written code, and unpickling its output would let that code
run in the user's own kernel. DataFrames and Series come back as Arrow IPC
(validated before use), arrays as raw bytes of a plain dtype, the rest as JSON.
The kernel's half lives in :mod:`agentnb.kernel.inside`.
"""

from __future__ import annotations

import importlib
import json
import keyword
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataTransferError
from .inside import PULLABLE_ARRAY_KINDS

__all__ = ["check_name", "decode_pull", "encode_push", "push_failure"]


def check_name(name: str) -> None:
    """Raise unless ``name`` can be a variable in the kernel."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise DataTransferError(
            f"{name!r} is not a valid Python variable name; use letters, digits and "
            "underscores, not starting with a digit"
        )


def encode_push(name: str, value: Any) -> list[Any]:
    """``value`` as pickle frames: the pickle stream, then its out-of-band buffers."""
    check_name(name)
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as err:
        raise DataTransferError(
            f"cannot send {name!r} to the agents' kernel: a {type(value).__qualname__} "
            f"cannot be pickled ({type(err).__name__}: {err}). Pass data (a DataFrame, "
            "an array, a dict or list of plain values), not functions, connections, "
            "generators or open files."
        ) from err
    return [stream, *(b.raw() for b in buffers)]


def push_failure(name: str, error: str) -> DataTransferError:
    """The error for a value the kernel could not rebuild."""
    hint = ""
    if "Can't get attribute" in error or "No module named" in error:
        hint = (
            " Its class is not importable there (classes defined in a notebook cell "
            "are not); convert it to a DataFrame, dict or list first."
        )
    return DataTransferError(f"the agents' kernel could not load {name!r}: {error}.{hint}")


def decode_pull(meta: Mapping[str, Any], buffers: Sequence[Any]) -> Any:
    """Rebuild a pulled value from the kernel's description and buffers."""
    kind = meta.get("kind")
    payload = buffers[0] if buffers else b""
    if kind in ("dataframe", "series"):
        import pyarrow as pa

        # registers pandas' Arrow extension types (periods, intervals); they are plain
        # data, and without them a PeriodIndex comes back as integers
        importlib.import_module("pandas.core.arrays.arrow.extension_types")

        try:
            table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
            table.validate(full=True)
        except (pa.ArrowException, ValueError) as err:
            raise DataTransferError(f"the kernel sent a malformed table: {err}") from err
        frame = table.to_pandas()
        if kind == "dataframe":
            return frame
        series = frame.iloc[:, 0]
        series.name = meta.get("name")
        return series
    if kind == "ndarray":
        import numpy as np

        dtype = np.dtype(str(meta.get("dtype")))
        if dtype.kind not in PULLABLE_ARRAY_KINDS or dtype.hasobject or dtype.names:
            raise DataTransferError(f"the kernel sent an array of unsupported dtype {dtype}")
        shape = tuple(int(n) for n in meta.get("shape", ()))
        return np.frombuffer(payload, dtype=dtype).reshape(shape).copy()
    if kind == "json":
        return json.loads(bytes(payload))
    raise DataTransferError(f"the kernel sent a value of unknown kind {kind!r}")
