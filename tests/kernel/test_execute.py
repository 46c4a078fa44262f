"""Running code in a real managed kernel: outputs, errors, caps."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from agentnb import KernelConfig, ManagedKernel, OutputLimits
from agentnb.kernel import LocalBackend
from agentnb.kernel.backend import Message


async def test_streams_are_merged_in_order(shared_kernel: ManagedKernel) -> None:
    # flushes make the kernel send separate messages, which the collector merges
    code = (
        "import sys\n"
        "print('a', flush=True)\nprint('b', flush=True)\n"
        "print('oops', file=sys.stderr, flush=True)\nprint('c')"
    )
    result = await shared_kernel.execute(code)
    assert result.status == "ok"
    assert [(o["output_type"], o["name"], o["text"]) for o in result.outputs] == [
        ("stream", "stdout", "a\nb\n"),
        ("stream", "stderr", "oops\n"),
        ("stream", "stdout", "c\n"),
    ]
    assert result.stdout == "a\nb\nc\n"


async def test_value_comes_back_as_text_and_html(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute(
        "import pandas as pd\npd.DataFrame({'region': ['north', 'south'], 'sales': [3, 4]})"
    )
    (out,) = result.outputs
    assert out["output_type"] == "execute_result"
    assert out["execution_count"] == result.execution_count
    assert "north" in out["data"]["text/plain"]
    assert "<table" in out["data"]["text/html"]
    assert "north" in result.to_model_text()


async def test_execution_counts_increase(shared_kernel: ManagedKernel) -> None:
    first = await shared_kernel.execute("1")
    second = await shared_kernel.execute("2")
    assert first.execution_count is not None
    assert second.execution_count == first.execution_count + 1


async def test_plot_comes_back_as_png_and_figures_are_closed(
    shared_kernel: ManagedKernel,
) -> None:
    for _ in range(5):
        result = await shared_kernel.execute(
            "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2]);"
        )
        (out,) = result.outputs
        assert out["output_type"] == "display_data"
        assert base64.b64decode(out["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
        open_figures = await shared_kernel.execute("len(plt.get_fignums())")
        assert open_figures.outputs[0]["data"]["text/plain"] == "0"
    # the inline backend crops to the drawn area, so only the shape of the summary is fixed
    assert re.search(r"\[image/png \d+×\d+ px, \d+ KB; shown to the user\]", result.to_model_text())


async def test_rich_displays_updates_and_clear_output(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute(
        "from IPython.display import HTML, JSON, Markdown, clear_output, display\n"
        "handle = display(Markdown('draft'), display_id=True)\n"
        "display(HTML('<b>bold</b>'))\n"
        "display(JSON({'a': 1}))\n"
        "handle.update(Markdown('final'))\n"
    )
    kinds = [sorted(o["data"]) for o in result.outputs]
    assert kinds == [
        ["text/markdown", "text/plain"],
        ["text/html", "text/plain"],
        ["application/json", "text/plain"],
    ]
    assert result.outputs[0]["data"]["text/markdown"] == "final"

    progress = await shared_kernel.execute(
        "for i in range(5):\n    clear_output(wait=True)\n    print(f'step {i}')"
    )
    assert [o.get("text") for o in progress.outputs] == ["step 4\n"]


async def test_error_is_data_with_a_clean_traceback(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute("def f():\n    return {}['price']\nf()")
    assert result.status == "error"
    error = result.error
    assert error is not None
    assert error["ename"] == "KeyError"
    assert not any("\x1b" in line for line in error["traceback"])
    text = result.to_model_text()
    assert "KeyError: 'price'" in text
    # the step's own frames, named without the kernel's counter (stable for the cache)
    assert "In this step, line 3" in text
    assert "Cell In[" not in text


async def test_input_fails_fast_instead_of_waiting(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute("input('your name? ')", timeout=10)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["ename"] == "StdinNotImplementedError"


async def test_50_mb_print_keeps_head_and_tail(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute("print('h' + 'x' * 49_999_998 + 't')")
    assert result.status == "ok"
    (out,) = result.outputs
    text = out["text"]
    assert len(text) < 21_000
    assert text.startswith("hxxx")
    assert text.endswith("xxt\n")
    # 50,000,000 characters and a newline, of which 10,000 + 10,000 are kept
    assert "[agentnb: 49,980,001 characters of stdout dropped]" in text
    assert "49,980,001 characters" in result.note
    alive = await shared_kernel.execute("'still here'")
    assert alive.outputs[0]["data"]["text/plain"] == "'still here'"


async def test_flood_below_python_is_capped_too(shared_kernel: ManagedKernel) -> None:
    # os.write bypasses sys.stdout; ipykernel forwards fd 1 from a watcher thread
    # (hence the pause, which real code spends working) and the caps still hold
    result = await shared_kernel.execute(
        "import os, time\nn = os.write(1, b'y' * 3_000_000)\ntime.sleep(0.5)"
    )
    stdout = result.stdout
    assert 0 < len(stdout) < 21_000
    assert "characters of stdout dropped" in stdout


async def test_oversized_images_are_replaced_by_a_note(make_kernel) -> None:  # type: ignore[no-untyped-def]
    kernel = make_kernel(output_limits=OutputLimits(max_image_bytes=1_000))
    result = await kernel.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")
    (out,) = result.outputs
    assert "image/png" not in out["data"]
    assert "image/png of" in out["data"]["text/plain"]
    assert "not kept (limit 1 KB)" in out["data"]["text/plain"]
    assert "image/png" in result.note


@pytest.mark.parametrize("limit", [200, 1_000])
async def test_model_text_respects_its_limit(shared_kernel: ManagedKernel, limit: int) -> None:
    result = await shared_kernel.execute("for i in range(5000):\n    print(i)")
    text = result.to_model_text(limit)
    assert len(text) <= limit
    assert text.startswith("[step ok")


class _WireLog(LocalBackend):
    """A local backend that notes the size of every stream message it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_sizes: list[int] = []

    async def iopub(self) -> Message:
        msg = await super().iopub()
        if msg["msg_type"] == "stream":
            self.stream_sizes.append(len(msg["content"]["text"]))
        return msg


async def test_a_flood_is_cut_inside_the_kernel_before_the_wire() -> None:
    wire = _WireLog()
    async with ManagedKernel(KernelConfig(preload=()), backend=wire) as kernel:
        result = await kernel.execute("print('x' * 50_000_000)")
    assert "49,980,001 characters of stdout dropped" in result.stdout
    # head and tail (10,000 + 10,000) and the kernel's count, never the 50 MB
    assert 0 < sum(wire.stream_sizes) < 21_000


async def test_figures_are_closed_even_off_the_inline_backend(kernel: ManagedKernel) -> None:
    # agent code that switches to Agg to save files: the inline backend no longer
    # closes its figures, agentnb's own post-step hook must
    result = await kernel.execute(
        "import io, matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "for _ in range(3):\n    plt.figure().savefig(io.BytesIO())"
    )
    assert result.status == "ok"
    open_figures = await kernel.execute("len(plt.get_fignums())")
    assert open_figures.outputs[0]["data"]["text/plain"] == "0"


async def test_earlier_steps_output_is_not_kept_in_the_kernel(kernel: ManagedKernel) -> None:
    # IPython 9 would keep every step's stream text for `%history -o`
    await kernel.execute("print('x' * 1000)")
    result = await kernel.execute("sorted(get_ipython().history_manager.outputs)")
    assert result.outputs[0]["data"]["text/plain"] == "[]"


async def test_tracebacks_show_the_steps_frames_not_agentnbs(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute("import sys\nsys.stdout.write(b'x')")
    assert result.error is not None
    assert result.error["ename"] == "TypeError"
    frames = result.error["traceback"]
    assert not [f for f in frames if "agentnb" in f]
    # the step's line, then the stream's own frame that raised, as in any notebook
    assert frames[2].startswith("Cell In[")
    assert frames[3].startswith("File ")
    assert "iostream.py" in frames[3]
    assert len(frames) == 5


async def test_a_running_step_reports_its_outputs_as_they_come(kernel: ManagedKernel) -> None:
    seen: list[str] = []

    def on_output(outputs: list[dict[str, Any]]) -> None:
        seen.append("".join(o.get("text", "") for o in outputs))

    code = "import time\nfor i in range(6):\n    print(i, flush=True)\n    time.sleep(0.4)"
    execution = await kernel.execute(code, on_output=on_output)
    assert execution.stdout == "0\n1\n2\n3\n4\n5\n"
    assert len(seen) >= 3  # while it ran, not only at the end
    assert seen[0] != execution.stdout  # the first report came before the step ended
    assert all(execution.stdout.startswith(text) for text in seen)  # each one a prefix
