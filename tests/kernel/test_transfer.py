"""Pushing values into the managed kernel and pulling them back out."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from agentnb import DataTransferError, KernelStartError, ManagedKernel


@pytest.fixture
def sales() -> pd.DataFrame:
    rows = 1_000
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "segment": pd.Categorical(rng.choice(["retail", "online"], rows)),
            "day": pd.date_range("2024-01-01", periods=rows, freq="h", tz="UTC"),
            "units": pd.array(rng.integers(0, 50, rows), dtype="Int64"),
            "revenue": rng.random(rows) * 100,
            "returned": rng.random(rows) < 0.1,
        },
        index=pd.RangeIndex(1000, 1000 + rows, name="order_id"),
    )
    frame.loc[1003, "units"] = pd.NA
    return frame


async def test_a_dataframe_round_trips(shared_kernel: ManagedKernel, sales: pd.DataFrame) -> None:
    summary = await shared_kernel.push("sales", sales)
    assert summary == "DataFrame 1000×6"
    result = await shared_kernel.execute(
        "by_region = sales.groupby('region')['revenue'].sum()\nsales.shape"
    )
    assert result.outputs[0]["data"]["text/plain"] == "(1000, 6)"
    assert_frame_equal(await shared_kernel.pull("sales"), sales)
    assert_series_equal(
        await shared_kernel.pull("by_region"), sales.groupby("region")["revenue"].sum()
    )


async def test_pushed_frames_can_be_edited_in_place(
    shared_kernel: ManagedKernel, sales: pd.DataFrame
) -> None:
    await shared_kernel.push("edited", sales)
    result = await shared_kernel.execute(
        "edited.loc[1000, 'revenue'] = -1.0\nfloat(edited['revenue'].min())"
    )
    assert result.status == "ok"
    assert result.outputs[0]["data"]["text/plain"] == "-1.0"
    assert sales.loc[1000, "revenue"] != -1.0  # the caller's frame is untouched


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype="float32").reshape(3, 4),
        np.array(["a", "bc"]),
        np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]"),
        {"threshold": 0.5, "regions": ["north", "south"], "nested": {"n": None}},
        42,
        "text",
    ],
    ids=["float-matrix", "strings", "dates", "json", "int", "str"],
)
async def test_plain_values_round_trip(shared_kernel: ManagedKernel, value: object) -> None:
    await shared_kernel.push("value", value)
    back = await shared_kernel.pull("value")
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
        assert back.dtype == value.dtype
    else:
        assert back == value


@pytest.mark.parametrize(
    ("value", "kind"),
    [(lambda x: x, "function"), (threading.Lock(), "lock"), ((i for i in range(3)), "generator")],
    ids=["lambda", "lock", "generator"],
)
async def test_unpicklable_values_are_refused_with_advice(
    shared_kernel: ManagedKernel, value: object, kind: str
) -> None:
    with pytest.raises(DataTransferError, match="cannot be pickled") as caught:
        await shared_kernel.push("thing", value)
    assert "Pass data" in str(caught.value)
    assert (await shared_kernel.execute("1")).status == "ok"


async def test_a_bad_name_is_refused(shared_kernel: ManagedKernel) -> None:
    with pytest.raises(DataTransferError, match="not a valid Python variable name"):
        await shared_kernel.push("2024 sales", 1)


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


async def test_a_class_from_the_notebook_cannot_cross(
    shared_kernel: ManagedKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as if defined in a notebook cell: pickled by reference to __main__
    monkeypatch.setattr(Point, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "Point", Point, raising=False)
    with pytest.raises(DataTransferError, match="classes defined in a notebook cell"):
        await shared_kernel.push("point", Point(1))


async def test_pulling_what_is_not_there_or_not_data(shared_kernel: ManagedKernel) -> None:
    with pytest.raises(DataTransferError, match="there is no variable named 'nothing'"):
        await shared_kernel.pull("nothing")
    await shared_kernel.execute(
        "def helper():\n    pass\nmixed = __import__('numpy').array([1, 'a'], dtype=object)"
    )
    with pytest.raises(DataTransferError, match=r"cannot be pulled.*pd.DataFrame\(value\)"):
        await shared_kernel.pull("helper")
    with pytest.raises(DataTransferError, match="dtype object cannot be pulled"):
        await shared_kernel.pull("mixed")


async def test_pull_never_unpickles(shared_kernel: ManagedKernel, tmp_path: Path) -> None:
    marker = tmp_path / "ran-in-the-caller"
    await shared_kernel.execute(
        "import os\n"
        "class Trap:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        "trap = Trap()\n"
        "frames = {'a': Trap()}"
    )
    for name in ("trap", "frames"):
        with pytest.raises(DataTransferError, match="cannot be pulled"):
            await shared_kernel.pull(name)
    assert not marker.exists()


class _ExitsOnLoad:
    """Unpickles as a call to os._exit: loading it kills the kernel."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        import os

        return (os._exit, (7,))


class _ExitsOnLoadIfFlagged:
    """Loads as None, unless the file BOOM is in the kernel's directory."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("import os\nif os.path.exists('BOOM'): os._exit(7)",))


async def test_a_value_that_kills_the_kernel_is_not_kept(kernel: ManagedKernel) -> None:
    old = kernel.pid
    with pytest.raises(DataTransferError, match="exited with code 7 while handling 'bomb'"):
        await kernel.push("bomb", _ExitsOnLoad())
    assert kernel.pid != old
    result = await kernel.execute("'bomb' in dir()")
    assert result.outputs[0]["data"]["text/plain"] == "False"


async def test_a_value_that_kills_the_kernel_on_restore_is_dropped(
    make_kernel,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    kernel = make_kernel(cwd=str(tmp_path))
    await kernel.push("sales", [1, 2])
    await kernel.push("trap", _ExitsOnLoadIfFlagged())
    (tmp_path / "BOOM").touch()
    with pytest.raises(KernelStartError, match="while loading 'trap' again"):
        await kernel.restart()
    result = await kernel.execute("('trap' in dir(), sales)")
    assert result.outputs[0]["data"]["text/plain"] == "(False, [1, 2])"


def test_periods_come_back_as_periods_in_a_fresh_process() -> None:
    # a fresh interpreter: pandas registers its Arrow period type only when asked to,
    # and the test process may have done that already
    code = (
        "import asyncio\n"
        "from agentnb import KernelConfig, ManagedKernel\n"
        "async def main():\n"
        "    async with ManagedKernel(KernelConfig(preload=())) as k:\n"
        '        await k.execute("import pandas as pd\\n'
        "m = pd.Series([1, 2], index=pd.period_range('2024-01', periods=2, freq='M'))\")\n"
        "        m = await k.pull('m')\n"
        "        print(m.index.dtype, list(m.index.astype(str)))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "period[M] ['2024-01', '2024-02']"
