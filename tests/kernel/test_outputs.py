"""The output collector and the model rendering, fed with protocol messages."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from agentnb.kernel.outputs import (
    OutputCollector,
    OutputLimits,
    render_for_model,
    strip_ansi,
    truncate_middle,
)


def msg(msg_type: str, **content: Any) -> dict[str, Any]:
    return {
        "msg_type": msg_type,
        "content": content,
        "header": {"msg_type": msg_type},
        "parent_header": {},
    }


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return msg("stream", name=name, text=text)


def png(width: int, height: int, padding: int = 0) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height)
    return base64.b64encode(header + b"\0" * (5 + padding)).decode()


def display(data: dict[str, Any], display_id: str | None = None) -> dict[str, Any]:
    transient = {"display_id": display_id} if display_id else {}
    return msg("display_data", data=data, metadata={}, transient=transient)


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


def test_model_text_keeps_the_steps_frames_and_the_raising_one() -> None:
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
    assert "Cell In[4], line 2" in text
    assert "[… 2 library frame(s) omitted …]" in text
    assert "raise KeyError(key) from err" in text
    assert text.endswith("KeyError: 'price'")
    assert "frame.py" not in text
