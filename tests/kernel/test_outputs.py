"""The output collector and the model rendering, fed with protocol messages."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from agentnb.kernel.outputs import (
    Displays,
    OutputCollector,
    OutputLimits,
    render_for_model,
    strip_ansi,
    truncate_middle,
)


def msg(msg_type: str, parent: str = "step", **content: Any) -> dict[str, Any]:
    return {
        "msg_type": msg_type,
        "content": content,
        "header": {"msg_type": msg_type},
        "parent_header": {"msg_id": parent},
    }


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return msg("stream", name=name, text=text)


def png(width: int, height: int, padding: int = 0) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height)
    return base64.b64encode(header + b"\0" * (5 + padding)).decode()


def display(data: dict[str, Any], display_id: str | None = None) -> dict[str, Any]:
    transient = {"display_id": display_id} if display_id else {}
    return msg("display_data", data=data, metadata={}, transient=transient)


def update(text: str, display_id: str) -> dict[str, Any]:
    return msg(
        "update_display_data",
        data={"text/plain": text},
        metadata={},
        transient={"display_id": display_id},
    )


def texts(collector: OutputCollector) -> list[str]:
    return [o.get("text") or o["data"]["text/plain"] for o in collector.outputs()]


def test_consecutive_writes_merge_and_a_change_of_stream_starts_a_new_output() -> None:
    collector = OutputCollector()
    for m in (stream("a"), stream("b"), stream("!", "stderr"), stream("c")):
        collector.add(m)
    assert [(o["name"], o["text"]) for o in collector.outputs()] == [
        ("stdout", "ab"),
        ("stderr", "!"),
        ("stdout", "c"),
    ]


def test_a_stream_keeps_head_and_tail_and_counts_the_rest() -> None:
    collector = OutputCollector(OutputLimits(stream_head=5, stream_tail=4))
    for chunk in ("01234", "5678", "9abc", "defg"):
        collector.add(stream(chunk))
    (out,) = collector.outputs()
    assert out["text"] == "01234\n… [agentnb: 8 characters of stdout dropped] …\ndefg"
    assert collector.truncation_notes() == ["8 characters of stream output were dropped"]


def test_the_kernels_own_count_joins_the_marker() -> None:
    collector = OutputCollector(OutputLimits(stream_head=3, stream_tail=3))
    collector.add(stream("abc"))
    collector.add(stream("\x00agentnb-dropped:1000\x00xyz"))
    (out,) = collector.outputs()
    assert out["text"] == "abc\n… [agentnb: 1,000 characters of stdout dropped] …\nxyz"


def test_clear_output_now_and_on_next_output() -> None:
    collector = OutputCollector()
    collector.add(stream("gone"))
    collector.add(msg("clear_output", wait=False))
    collector.add(stream("kept"))
    collector.add(msg("clear_output", wait=True))
    assert [o["text"] for o in collector.outputs()] == ["kept"]  # wait: not yet
    collector.add(stream("last"))
    assert [o["text"] for o in collector.outputs()] == ["last"]


def test_update_display_data_replaces_the_displayed_value() -> None:
    collector = OutputCollector()
    collector.add(display({"text/plain": "10%"}, display_id="bar"))
    collector.add(stream("between"))
    collector.add(
        msg(
            "update_display_data",
            data={"text/plain": "100%"},
            metadata={},
            transient={"display_id": "bar"},
        )
    )
    assert collector.outputs()[0]["data"] == {"text/plain": "100%"}
    assert len(collector.outputs()) == 2


def test_an_oversized_image_becomes_a_note() -> None:
    collector = OutputCollector(OutputLimits(max_image_bytes=100))
    collector.add(display({"image/png": png(10, 10, padding=500), "text/plain": "<Figure>"}))
    collector.add(display({"image/png": png(10, 10)}))
    big, small = collector.outputs()
    assert "image/png" not in big["data"]
    assert big["data"]["text/plain"].startswith("<Figure>\n[agentnb: image/png of")
    assert "image/png" in small["data"]
    assert len(collector.truncation_notes()) == 1


def test_outputs_beyond_the_limit_are_counted_but_errors_are_kept() -> None:
    collector = OutputCollector(OutputLimits(max_outputs=3))
    for i in range(10):
        collector.add(display({"text/plain": str(i)}))
    collector.add(msg("error", ename="ValueError", evalue="bad", traceback=["\x1b[31mboom\x1b[0m"]))
    outputs = collector.outputs()
    assert [o["data"]["text/plain"] for o in outputs[:3]] == ["0", "1", "2"]
    assert outputs[3]["output_type"] == "error"
    assert outputs[3]["traceback"] == ["boom"]
    assert "7 more outputs dropped" in outputs[4]["text"]


def test_messages_without_output_are_ignored() -> None:
    collector = OutputCollector()
    collector.add(msg("status", execution_state="busy"))
    collector.add(msg("execute_input", code="1", execution_count=1))
    assert collector.outputs() == []


@pytest.mark.parametrize("size", [0, 10, 99, 100, 101, 1_000, 100_000])
@pytest.mark.parametrize("limit", [60, 100, 5_000])
def test_truncate_middle_never_exceeds_its_limit(size: int, limit: int) -> None:
    text = "".join(chr(65 + i % 26) for i in range(size))
    cut = truncate_middle(text, limit)
    assert len(cut) <= max(limit, 0) or cut == text
    if size <= limit:
        assert cut == text
    else:
        assert cut.startswith(text[:5])
        assert "omitted" in cut


def test_strip_ansi_removes_colours_and_links() -> None:
    assert strip_ansi("\x1b[0;31mKeyError\x1b[0m \x1b]8;;file:///x\x1b\\x.py\x1b]8;;\x1b\\") == (
        "KeyError x.py"
    )


def test_model_text_describes_images_and_prefers_markdown() -> None:
    text = render_for_model(
        [
            {
                "output_type": "display_data",
                "data": {"image/png": png(640, 480), "text/plain": "<Figure>"},
            },
            {
                "output_type": "display_data",
                "data": {"text/markdown": "**hi**", "text/plain": "<Markdown>"},
            },
            {
                "output_type": "execute_result",
                "execution_count": 3,
                "data": {"text/html": "<b>bold</b>"},
            },
            {"output_type": "stream", "name": "stderr", "text": "warn\n"},
        ],
        limit=1_000,
    )
    assert text.splitlines() == [
        "[image/png 640×480 px, 30 B; shown to the user]",
        "**hi**",
        "Out[3]: bold",
        "[stderr]",
        "warn",
    ]


def test_model_text_keeps_the_raising_line_of_the_steps_frames_and_the_innermost_one() -> None:
    traceback = [
        "-----------------------------------------------------------------",
        "KeyError                                  Traceback (most recent call last)",
        "Cell In[4], line 2\n      1 df = load()\n----> 2 df['price']",
        "File /site-packages/pandas/core/frame.py:4102, in DataFrame.__getitem__(self, key)",
        "File /site-packages/pandas/core/indexes/base.py:3812, in Index.get_loc(self, key)",
        "File /site-packages/pandas/core/indexes/base.py:3819, in Index.get_loc(self, key)\n"
        "-> 3819     raise KeyError(key) from err",
        "KeyError: 'price'",
    ]
    text = render_for_model(
        [
            {
                "output_type": "error",
                "ename": "KeyError",
                "evalue": "'price'",
                "traceback": traceback,
            }
        ],
        limit=5_000,
    )
    assert "Cell In[4], line 2\n----> 2 df['price']" in text
    assert "df = load()" not in text  # the step's code is shown beside it: no context lines
    assert "[… 2 library frame(s) omitted …]" in text
    assert "raise KeyError(key) from err" in text
    assert text.endswith("KeyError: 'price'")
    assert "frame.py" not in text


def test_a_display_id_shown_again_updates_every_output_with_it() -> None:
    collector = OutputCollector()
    collector.add(display({"text/plain": "first"}, "same"))
    collector.add(display({"text/plain": "other"}, "other"))
    collector.add(display({"text/plain": "second"}, "same"))
    assert texts(collector) == ["second", "other", "second"]


def test_an_update_in_a_later_step_changes_the_earlier_one_and_is_reported() -> None:
    displays = Displays()
    first = OutputCollector(displays=displays)
    first.add(display({"text/plain": "0 %"}, "bar"))
    before = first.outputs()
    first.execution_count = 1
    assert displays.finish(first) == []
    second = OutputCollector(displays=displays)
    second.add(update("100 %", "bar"))
    second.execution_count = 2
    assert second.outputs() == []
    ((count, outputs),) = displays.finish(second)
    assert count == 1
    assert [o["data"]["text/plain"] for o in outputs] == ["100 %"]
    assert before[0]["data"]["text/plain"] == "0 %"  # outputs handed out stay as they were
    assert displays.finish(OutputCollector(displays=displays)) == []  # reported once


def test_a_clear_forgets_the_display_ids_of_what_it_cleared() -> None:
    displays = Displays()
    collector = OutputCollector(displays=displays)
    collector.add(display({"text/plain": "gone"}, "k"))
    collector.add(msg("clear_output", wait=False))
    collector.add(update("after", "k"))
    assert collector.outputs() == []


def test_caps_count_only_what_is_finally_shown() -> None:
    collector = OutputCollector(OutputLimits(stream_head=5, stream_tail=5, max_outputs=2))
    for i in range(5):
        collector.add(display({"text/plain": str(i)}))
    collector.add(stream("x" * 100))
    collector.add(msg("clear_output", wait=True))
    collector.add(stream("kept"))
    assert texts(collector) == ["kept"]
    assert collector.truncation_notes() == []


def test_the_kernels_count_of_outputs_joins_ours() -> None:
    collector = OutputCollector(OutputLimits(max_outputs=1))
    collector.add(display({"text/plain": "0"}))
    collector.add(stream("\x00agentnb-outputs-dropped:41\x00", "stderr"))
    (shown, marker) = collector.outputs()
    assert shown["data"]["text/plain"] == "0"
    assert "41 more outputs dropped" in marker["text"]


def widget_open(comm_id: str, parent: str = "step") -> dict[str, Any]:
    state = {"_model_name": "OutputModel", "msg_id": "", "outputs": []}
    return msg(
        "comm_open",
        parent,
        comm_id=comm_id,
        target_name="jupyter.widget",
        data={"state": state, "buffer_paths": []},
    )


def widget_state(comm_id: str, parent: str = "step", **state: Any) -> dict[str, Any]:
    return msg("comm_msg", parent, comm_id=comm_id, data={"method": "update", "state": state})


def view(model_id: str) -> dict[str, Any]:
    return display(
        {
            "application/vnd.jupyter.widget-view+json": {"model_id": model_id},
            "text/plain": "Output()",
        }
    )


def test_an_output_widget_shows_what_it_captures_where_it_is_shown() -> None:
    displays = Displays()
    collector = OutputCollector(displays=displays)
    collector.add(widget_open("w"))
    collector.add(view("w"))
    collector.add(widget_state("w", msg_id="step"))
    collector.add(stream("inside"))
    collector.add(msg("error", ename="ValueError", evalue="boom", traceback=[]))
    collector.add(widget_state("w", msg_id=""))
    collector.add(stream("outside"))
    outputs = collector.outputs()
    assert [o["output_type"] for o in outputs] == ["stream", "error", "stream"]
    assert [outputs[0]["text"], outputs[2]["text"]] == ["inside", "outside"]
    # a later step captures into it, and clears it: the earlier step shows that
    collector.execution_count = 1
    displays.finish(collector)
    later = OutputCollector(displays=displays)
    later.add(widget_state("w", "later", msg_id="later"))
    later.add(msg("clear_output", "later", wait=False))
    later.add(msg("stream", "later", name="stdout", text="new"))
    later.add(widget_state("w", "later", msg_id=""))
    assert later.outputs() == []
    ((count, outputs),) = displays.finish(later)
    assert count == 1
    assert [o.get("text") for o in outputs] == ["new", "outside"]
    ((comm_id, captured),) = displays.captured_state()
    assert comm_id == "w"
    assert [o["text"] for o in captured] == ["new"]


def test_outputs_set_on_a_widget_by_the_kernel_are_shown() -> None:
    collector = OutputCollector()
    collector.add(widget_open("w"))
    collector.add(view("w"))
    collector.add(
        widget_state(
            "w", outputs=[{"output_type": "stream", "name": "stdout", "text": "appended\n"}]
        )
    )
    assert texts(collector) == ["appended\n"]


def test_the_kernels_count_alone_applies_no_waiting_clear() -> None:
    collector = OutputCollector()
    collector.add(stream("still shown"))
    collector.add(msg("clear_output", wait=True))
    collector.add(stream("\x00agentnb-outputs-dropped:3\x00", "stderr"))
    assert texts(collector)[0] == "still shown"
    assert "3 more outputs dropped" in texts(collector)[1]
