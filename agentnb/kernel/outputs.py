"""Kernel outputs: iopub messages gathered into capped nbformat outputs, and
rendered as compact text for a language model.

Caps exist so that agent-written code cannot exhaust memory or freeze a notebook:
a stream keeps its head and its tail with a marker saying how much was dropped,
an oversized image or rich value is replaced by a note, and a step keeps at most
``max_outputs`` outputs (errors are always kept).
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nbformat

__all__ = [
    "Output",
    "OutputCollector",
    "OutputLimits",
    "png_size",
    "render_for_model",
    "strip_ansi",
    "truncate_middle",
]

Output = dict[str, Any]
"""An nbformat v4 output (a ``NotebookNode``, which is a dict)."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# what agentnb.kernel.inside writes in place of a flood it kept in the kernel
_KERNEL_DROPPED = re.compile("\x00agentnb-dropped:(\\d+)\x00")
_IMAGE_PREFIX = "image/"
_TEXT_IMAGE = "image/svg+xml"  # text, not base64: capped as text


def strip_ansi(text: str) -> str:
    """Remove terminal colour and hyperlink escapes."""
    return _ANSI.sub("", text)


def truncate_middle(text: str, limit: int, *, what: str = "characters") -> str:
    """Keep the head and the tail of ``text`` within ``limit`` characters."""
    if len(text) <= limit:
        return text
    marker = f"\n… [agentnb: {{n:,}} {what} omitted] …\n"
    budget = max(limit - len(marker) - 8, 0)
    head = budget * 3 // 5
    tail = budget - head
    dropped = len(text) - head - tail
    return text[:head] + marker.format(n=dropped) + (text[-tail:] if tail else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputLimits:
    """How much of a step's output is kept.

    Attributes:
        stream_head: characters kept from the start of each stream.
        stream_tail: characters kept from the end of each stream.
        max_image_bytes: largest image kept, in decoded bytes.
        max_text_chars: largest rich text value kept (HTML, JSON, SVG …).
        max_outputs: outputs kept per step; later ones are counted, not kept.
    """

    stream_head: int = 10_000
    stream_tail: int = 10_000
    max_image_bytes: int = 2_000_000
    max_text_chars: int = 1_000_000
    max_outputs: int = 100


class _Stream:
    """One run of consecutive writes to the same stream: head, tail, and a count."""

    __slots__ = ("dropped", "head", "head_len", "limits", "name", "tail", "tail_len")

    def __init__(self, name: str, limits: OutputLimits) -> None:
        self.name = name
        self.limits = limits
        self.head: list[str] = []
        self.head_len = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        if "\x00" in text:
            text = self._take_kernel_count(text)
        room = self.limits.stream_head - self.head_len
        if room > 0:
            self.head.append(text[:room])
            self.head_len += min(room, len(text))
            text = text[room:]
        if not text:
            return
        self.tail.append(text)
        self.tail_len += len(text)
        excess = self.tail_len - self.limits.stream_tail
        while excess > 0:
            first = self.tail[0]
            if len(first) <= excess:
                self.tail.popleft()
                cut = len(first)
            else:
                self.tail[0] = first[excess:]
                cut = excess
            self.tail_len -= cut
            self.dropped += cut
            excess -= cut

    def _take_kernel_count(self, text: str) -> str:
        """Fold the kernel's own count of dropped characters into ours."""

        def take(match: re.Match[str]) -> str:
            self.dropped += int(match.group(1))
            return ""

        return _KERNEL_DROPPED.sub(take, text)

    def output(self) -> Output:
        text = "".join(self.head)
        if self.dropped:
            text += f"\n… [agentnb: {self.dropped:,} characters of {self.name} dropped] …\n"
        text += "".join(self.tail)
        return nbformat.v4.new_output("stream", name=self.name, text=text)  # type: ignore[no-any-return]


class OutputCollector:
    """Turns the iopub messages of one execution into nbformat outputs, in order.

    Consecutive stream writes are merged as notebook front ends merge them;
    ``clear_output`` and ``update_display_data`` are honoured.
    """

    def __init__(self, limits: OutputLimits | None = None) -> None:
        self.limits = limits or OutputLimits()
        self._items: list[_Stream | Output] = []
        self._display_ids: dict[str, list[int]] = {}
        self._clear_pending = False
        self._dropped_outputs = 0
        self._dropped_values: list[str] = []

    def add(self, msg: Mapping[str, Any]) -> None:
        """Take one iopub message; messages that carry no output are ignored."""
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if msg_type == "update_display_data":
            self._update_display(content)
            return
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            return
        if self._clear_pending:
            self._clear()
        if msg_type == "stream":
            self._add_stream(content["name"], content["text"])
            return
        output = nbformat.v4.output_from_msg(msg)
        if msg_type == "error":
            output["traceback"] = [strip_ansi(line) for line in output["traceback"]]
            self._items.append(output)
            return
        if len(self._items) >= self.limits.max_outputs:
            self._dropped_outputs += 1
            return
        output["data"] = self._capped_bundle(output["data"])
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            self._display_ids.setdefault(display_id, []).append(len(self._items))
        self._items.append(output)

    def outputs(self) -> list[Output]:
        """The outputs so far; streams carry their dropped-characters marker."""
        result = [item.output() if isinstance(item, _Stream) else item for item in self._items]
        if self._dropped_outputs:
            result.append(
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"[agentnb: {self._dropped_outputs:,} more outputs dropped "
                    f"(limit {self.limits.max_outputs} per step)]\n",
                )
            )
        return result

    def truncation_notes(self) -> list[str]:
        """One sentence per kind of output that did not fit within the limits."""
        notes = list(self._dropped_values)
        dropped = sum(item.dropped for item in self._items if isinstance(item, _Stream))
        if dropped:
            notes.append(f"{dropped:,} characters of stream output were dropped")
        if self._dropped_outputs:
            notes.append(
                f"{self._dropped_outputs:,} outputs beyond the first "
                f"{self.limits.max_outputs} were dropped"
            )
        return notes

    def _clear(self) -> None:
        self._items.clear()
        self._display_ids.clear()
        self._clear_pending = False

    def _add_stream(self, name: str, text: str) -> None:
        last = self._items[-1] if self._items else None
        if isinstance(last, _Stream) and last.name == name:
            last.write(text)
            return
        if len(self._items) >= self.limits.max_outputs:
            self._dropped_outputs += 1
            return
        stream = _Stream(name, self.limits)
        stream.write(text)
        self._items.append(stream)

    def _update_display(self, content: Mapping[str, Any]) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        for index in self._display_ids.get(display_id or "", []):
            item = self._items[index]
            if isinstance(item, dict):
                item["data"] = self._capped_bundle(nbformat.from_dict(content.get("data", {})))
                item["metadata"] = nbformat.from_dict(content.get("metadata", {}))

    def _capped_bundle(self, data: dict[str, Any]) -> dict[str, Any]:
        notes = []
        for mime in list(data):
            value = data[mime]
            if mime.startswith(_IMAGE_PREFIX) and mime != _TEXT_IMAGE:
                size = len(value) * 3 // 4
                limit = self.limits.max_image_bytes
            else:
                size = len(value) if isinstance(value, str) else len(json.dumps(value))
                limit = self.limits.max_text_chars
                if mime == "text/plain":
                    continue  # capped below, by truncation rather than dropping
            if size > limit:
                del data[mime]
                notes.append(
                    f"{mime} of {_human_bytes(size)} not kept (limit {_human_bytes(limit)})"
                )
        plain = data.get("text/plain")
        if isinstance(plain, str) and len(plain) > self.limits.max_text_chars:
            data["text/plain"] = truncate_middle(plain, self.limits.max_text_chars)
        if notes:
            self._dropped_values.extend(notes)
            note = "\n".join(f"[agentnb: {n}]" for n in notes)
            data["text/plain"] = f"{plain}\n{note}" if plain else note
        return data


def _human_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1_000:
        return f"{n / 1_000:.0f} KB"
    return f"{n} B"


# --- rendering for a language model -------------------------------------------------

_TAG = re.compile(r"<[^>]+>")
_CELL_FRAME = re.compile(r"^(Cell In\[\d*\]|File <[^>]+>|Input In \[)", re.MULTILINE)
_FRAME_LIMIT = 1_500


def render_for_model(outputs: Iterable[Mapping[str, Any]], limit: int) -> str:
    """Outputs as plain text for a model: streams, values, image summaries, errors.

    Images are described, not embedded; tracebacks keep the frames of the step's
    own code and the frame that raised, not the library frames in between.
    """
    parts = [_output_text(out) for out in outputs]
    return truncate_middle("\n".join(p for p in parts if p), limit)


def _output_text(out: Mapping[str, Any]) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        text = str(out.get("text", ""))
        return text if out.get("name") == "stdout" else f"[stderr]\n{text}"
    if kind == "error":
        return _error_text(out)
    if kind in ("execute_result", "display_data"):
        text = _bundle_text(out.get("data", {}))
        if kind == "execute_result" and out.get("execution_count"):
            return f"Out[{out['execution_count']}]: {text}"
        return text
    return ""


def _bundle_text(data: Mapping[str, Any]) -> str:
    images = [
        _describe_image(mime, data[mime])
        for mime in data
        if mime.startswith(_IMAGE_PREFIX) and mime != _TEXT_IMAGE
    ]
    if images:
        return "\n".join(images)
    for mime in ("text/markdown", "text/plain", "text/latex"):
        if mime in data:
            return str(data[mime]).rstrip("\n")
    if "application/json" in data:
        return json.dumps(data["application/json"], indent=1)
    if "text/html" in data:
        return _TAG.sub("", str(data["text/html"])).strip()
    return "[" + ", ".join(sorted(data)) + "]"


def _describe_image(mime: str, b64: Any) -> str:
    size = len(b64) * 3 // 4 if isinstance(b64, str) else 0
    dims = png_size(b64) if mime == "image/png" and isinstance(b64, str) else None
    shape = f" {dims[0]}×{dims[1]} px," if dims else ""
    return f"[{mime}{shape} {_human_bytes(size)}; shown to the user]"


def png_size(b64: str) -> tuple[int, int] | None:
    """Width and height of a base64 PNG, from its header; None if it is not one."""
    try:
        head = base64.b64decode(b64[:44])
    except (binascii.Error, ValueError):
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _error_text(out: Mapping[str, Any]) -> str:
    last = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": ")
    frames = [strip_ansi(f).strip("\n") for f in out.get("traceback", []) if f.strip()]
    body = _compact_frames(frames[:-1] if frames and frames[-1].startswith(last) else frames)
    return "\n".join([*body, last])


_ARROW = re.compile(r"^\s*-+>")
_SITE = re.compile(r"^File .*?/(?:site|dist)-packages/")


def _compact_frames(frames: Sequence[str]) -> list[str]:
    """Keep the step's own frames and the innermost one; count the rest."""
    keep = [i for i, f in enumerate(frames) if _CELL_FRAME.search(f)]
    if frames:
        keep.append(len(frames) - 1)
    kept: list[str] = []
    previous = -1
    for i in sorted(set(keep)):
        if i - previous > 1 and previous >= 0:
            kept.append(f"[… {i - previous - 1} library frame(s) omitted …]")
        frame = frames[i] if _CELL_FRAME.search(frames[i]) else _where(frames[i])
        kept.append(truncate_middle(frame, _FRAME_LIMIT))
        previous = i
    return kept


def _where(frame: str) -> str:
    """A library frame as its location and the line that raised, without the
    surrounding source: the model needs where it failed, not pandas' code."""
    lines = frame.splitlines()
    arrows = [line for line in lines[1:] if _ARROW.match(line)]
    return "\n".join([_SITE.sub("File ", lines[0]) if lines else "", *arrows])
