"""Kernel outputs: iopub messages gathered into capped nbformat outputs, and
rendered as compact text for a language model.

Caps exist so that agent-written code cannot exhaust memory or freeze a notebook:
a stream keeps its head and its tail with a marker saying how much was dropped,
an oversized image or rich value is replaced by a note, and a step keeps at most
``max_outputs`` outputs (errors are always kept).

One module past the usual length on purpose: the collector, its caps and the model's
rendering of outputs read the same nbformat shapes.
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

__all__ = [
    "Displays",
    "Output",
    "OutputCollector",
    "OutputLimits",
    "png_size",
    "render_for_model",
    "strip_ansi",
    "truncate_middle",
]

Output = dict[str, Any]
"""An nbformat v4 output, as a dict (see :func:`new_output`)."""


def _copy(value: Any) -> Any:
    """``value`` with its dicts and lists copied, as ``nbformat.from_dict`` copies them."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


def new_output(output_type: str, **fields: Any) -> Output:
    """An nbformat v4 output, shaped as ``nbformat.v4.new_output`` shapes it, as a plain
    dict. Not nbformat's own: importing nbformat imports jsonschema and its format
    checkers (a second or more; the first data summary of a run would wait for it), and
    it validates every output against the schema, which outputs built from a kernel's
    messages need not be."""
    defaults: dict[str, dict[str, Any]] = {
        "stream": {"name": "stdout", "text": ""},
        "display_data": {"metadata": {}, "data": {}},
        "execute_result": {"metadata": {}, "data": {}, "execution_count": None},
        "error": {"ename": "NotImplementedError", "evalue": "", "traceback": []},
    }
    return {"output_type": output_type, **defaults[output_type], **fields}


def output_from_msg(msg: Mapping[str, Any]) -> Output:
    """The output of an iopub message (``nbformat.v4.output_from_msg``, without nbformat)."""
    msg_type = msg["header"]["msg_type"]
    content = msg["content"]
    if msg_type == "execute_result":
        return new_output(
            msg_type,
            metadata=_copy(content["metadata"]),
            data=_copy(content["data"]),
            execution_count=content["execution_count"],
        )
    if msg_type == "stream":
        return new_output(msg_type, name=content["name"], text=content["text"])
    if msg_type == "display_data":
        return new_output(
            msg_type, metadata=_copy(content["metadata"]), data=_copy(content["data"])
        )
    if msg_type == "error":
        return new_output(
            msg_type,
            ename=content["ename"],
            evalue=content["evalue"],
            traceback=list(content["traceback"]),
        )
    raise ValueError(f"not an output message: {msg_type!r}")


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

    def output(self) -> Output:
        text = "".join(self.head)
        if self.dropped:
            text += f"\n… [agentnb: {self.dropped:,} characters of {self.name} dropped] …\n"
        text += "".join(self.tail)
        return new_output("stream", name=self.name, text=text)


class _Rich:
    """A display, a value or an error. An update replaces ``output`` (never edits
    it), so outputs handed out earlier stay as they were."""

    __slots__ = ("display_id", "model", "notes", "output")

    def __init__(self, output: Output, display_id: str | None = None) -> None:
        self.output = output
        self.display_id = display_id
        self.notes: list[str] = []  # what the caps removed from it
        self.model: _OutputModel | None = None  # the Output widget it shows, if any


_Item = _Stream | _Rich


class OutputCollector:
    """Turns the iopub messages of one execution into nbformat outputs, in order.

    What it keeps is what a notebook would show at the end: consecutive writes to a
    stream merge into one output, ``clear_output`` (now, or with ``wait`` at the
    next output) removes what came before, a display id shown again or updated
    changes every output shown with it (in this step and, through ``displays``, in
    earlier ones), and an ipywidgets ``Output`` shows what was captured into it.
    The limits apply to that final state: a stream keeps its head and its tail,
    an oversized value becomes a note, a step keeps ``max_outputs`` outputs (errors
    are always kept).

    Args:
        limits: the caps.
        displays: what the kernel's display ids and Output widgets point at, across
            steps; one per kernel (a collector of its own when not given).
    """

    def __init__(
        self, limits: OutputLimits | None = None, displays: Displays | None = None
    ) -> None:
        self.limits = limits or OutputLimits()
        self.displays = displays if displays is not None else Displays()
        self.execution_count: int | None = None
        """The kernel's number of the step, once its reply says it."""
        self._items: list[_Item] = []
        self._clear_pending = False
        self._dropped_outputs = 0

    def add(self, msg: Mapping[str, Any]) -> None:
        """Take one iopub message; messages that carry no output are ignored."""
        msg_type = msg["msg_type"]
        if msg_type.startswith("comm_"):
            self.displays.comm(msg, self)
            return
        if msg_type not in _OUTPUT_TYPES:
            return
        content = msg["content"]
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id and msg_type != "stream":
            # a display id shown again or updated changes all its outputs, here and
            # in earlier steps, before anything else happens
            self.displays.update(display_id, content, self)
            if msg_type == "update_display_data":
                return
        # an Output widget whose capture is on takes the step's outputs
        model = self.displays.capturing(msg["parent_header"].get("msg_id"))
        if model is not None:
            model.take(msg)
            self.displays.captured(model, self)
            return
        self._take(msg, display_id)

    def _take(self, msg: Mapping[str, Any], display_id: str | None = None) -> None:
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if msg_type == "update_display_data":
            return
        text = content.get("text", "") if msg_type == "stream" else ""
        if "\x00" in text:
            # outputs the kernel counted and did not send join our own count; a
            # stream of that count alone is no output (it applies no pending clear)
            text = _KERNEL_OUTPUTS.sub(self._count_outputs, text)
            if not text:
                return
        if self._clear_pending:
            self._clear()
        if msg_type == "stream":
            self._add_stream(content["name"], text)
            return
        output = output_from_msg(msg)
        if msg_type == "error":
            output["traceback"] = [strip_ansi(line) for line in output["traceback"]]
            self._items.append(_Rich(output))
            return
        if len(self._items) >= self.limits.max_outputs:
            self._dropped_outputs += 1
            return
        item = _Rich(output, display_id)
        output["data"] = _capped_bundle(output["data"], self.limits, item.notes)
        self._items.append(item)
        if display_id:
            self.displays.register(display_id, self, item)
        view = output["data"].get(_WIDGET_VIEW)
        if isinstance(view, dict):
            self.displays.view(str(view.get("model_id", "")), self, item)

    def outputs(self) -> list[Output]:
        """The outputs so far; streams carry their dropped-characters marker."""
        result: list[Output] = []
        for item in self._items:
            if isinstance(item, _Stream):
                result.append(item.output())
            elif item.model is not None:
                result.extend(item.model.outputs())  # an Output widget shows its outputs
            else:
                result.append(item.output)
        if self._dropped_outputs:
            result.append(
                new_output(
                    "stream",
                    name="stderr",
                    text=f"[agentnb: {self._dropped_outputs:,} more outputs dropped "
                    f"(limit {self.limits.max_outputs} per step)]\n",
                )
            )
        return result

    def truncation_notes(self) -> list[str]:
        """One sentence per kind of output that did not fit within the limits."""
        notes = [note for item in self._items if isinstance(item, _Rich) for note in item.notes]
        dropped = sum(item.dropped for item in self._items if isinstance(item, _Stream))
        if dropped:
            notes.append(f"{dropped:,} characters of stream output were dropped")
        if self._dropped_outputs:
            notes.append(
                f"{self._dropped_outputs:,} outputs beyond the first "
                f"{self.limits.max_outputs} were dropped"
            )
        return notes

    @property
    def owns_displays(self) -> bool:
        """Whether a later step can change these outputs (display ids, widgets)."""
        return any(
            isinstance(item, _Rich) and (item.display_id or item.model) for item in self._items
        )

    def _clear(self) -> None:
        self._items.clear()
        self._clear_pending = False
        self._dropped_outputs = 0
        self.displays.forget(self)

    def _add_stream(self, name: str, text: str) -> None:
        last = self._items[-1] if self._items else None
        if not (isinstance(last, _Stream) and last.name == name):
            if len(self._items) >= self.limits.max_outputs:
                self._dropped_outputs += 1
                return
            last = _Stream(name, self.limits)
            self._items.append(last)
        if "\x00" not in text:
            last.write(text)
            return
        # text, count, text, …: characters the kernel left out of the run's middle
        for i, piece in enumerate(_KERNEL_DROPPED.split(text)):
            if i % 2:
                last.dropped += int(piece)
            elif piece:
                last.write(piece)

    def _count_outputs(self, match: re.Match[str]) -> str:
        self._dropped_outputs += int(match.group(1))
        return ""


class _OutputModel:
    """An ipywidgets ``Output`` widget of the kernel, kept as a frontend keeps it: the
    outputs captured into it (or set on it), and the outputs that show it."""

    __slots__ = ("collector", "comm_id", "msg_id", "views")

    def __init__(self, comm_id: str, limits: OutputLimits) -> None:
        self.comm_id = comm_id
        # display ids shown inside the widget are not followed (nor are they by
        # nbclient): its own Displays, which nothing updates
        self.collector = OutputCollector(limits, Displays())
        self.msg_id = ""
        self.views: list[tuple[OutputCollector, _Rich]] = []

    def take(self, msg: Mapping[str, Any]) -> None:
        self.collector._take(msg)

    def outputs(self) -> list[Output]:
        return self.collector.outputs()

    def set_outputs(self, outputs: Any) -> None:
        """The widget's ``outputs`` set by the kernel (``append_stdout`` and the like)."""
        collector = self.collector = OutputCollector(self.collector.limits, Displays())
        for out in outputs if isinstance(outputs, list | tuple) else ():
            if not isinstance(out, Mapping):
                continue
            if out.get("output_type") == "stream":
                collector._add_stream(str(out.get("name", "stdout")), str(out.get("text", "")))
                continue
            item = _Rich(_copy(out))
            if isinstance(item.output.get("data"), dict):
                item.output["data"] = _capped_bundle(
                    item.output["data"], collector.limits, item.notes
                )
            collector._items.append(item)


class Displays:
    """What a kernel's display ids and ``Output`` widgets point at, across its steps.

    One per kernel (a restart starts a new one). A display id shown again or
    updated changes every output shown with it, in any step, as nbclient and
    JupyterLab do; an ``Output`` widget captures the outputs of the request its
    ``msg_id`` names, and every output that shows the widget shows them. The steps
    a later step changed are told by :meth:`finish`. The outputs of the last
    ``keep`` steps that own a display id or show a widget are kept for that;
    older ones are no longer updated.
    """

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self._ids: dict[str, dict[OutputCollector, list[_Rich]]] = {}
        self._models: dict[str, _OutputModel] = {}
        self._capturing: dict[str, list[_OutputModel]] = {}
        self._changed: dict[OutputCollector, None] = {}
        self._captured: dict[_OutputModel, None] = {}
        self._kept: collections.deque[OutputCollector] = collections.deque()

    def register(self, display_id: str, collector: OutputCollector, item: _Rich) -> None:
        self._ids.setdefault(display_id, {}).setdefault(collector, []).append(item)

    def update(self, display_id: str, content: Mapping[str, Any], current: Any) -> None:
        """Show ``content`` in every output with ``display_id``."""
        for collector, items in self._ids.get(display_id, {}).items():
            for item in items:
                notes: list[str] = []
                data = _capped_bundle(_copy(content.get("data") or {}), collector.limits, notes)
                output = dict(item.output)
                output["data"] = data
                output["metadata"] = _copy(content.get("metadata") or {})
                item.output, item.notes = output, notes
            if collector is not current:
                self._changed[collector] = None

    def view(self, model_id: str, collector: OutputCollector, item: _Rich) -> None:
        """``item`` shows the widget ``model_id``: an Output widget shows its outputs."""
        model = self._models.get(model_id)
        if model is not None:
            item.model = model
            model.views.append((collector, item))

    def captured(self, model: _OutputModel, current: Any) -> None:
        """``model`` took an output of the step."""
        self._captured[model] = None
        self.changed_model(model, current)

    def changed_model(self, model: _OutputModel, current: Any) -> None:
        for collector, _ in model.views:
            if collector is not current:
                self._changed[collector] = None

    def capturing(self, msg_id: str | None) -> _OutputModel | None:
        """The Output widget that captures the outputs of request ``msg_id``, if any."""
        stack = self._capturing.get(msg_id or "")
        return stack[-1] if stack else None

    def forget(self, collector: OutputCollector) -> None:
        """``collector``'s outputs were cleared (or are no longer kept)."""
        for owners in self._ids.values():
            owners.pop(collector, None)
        for model in self._models.values():
            model.views = [(c, item) for c, item in model.views if c is not collector]

    def comm(self, msg: Mapping[str, Any], current: OutputCollector) -> None:
        """Follow the Output widgets: opened, their capture started and ended, their
        outputs set by the kernel. Other comms carry no output."""
        content = msg["content"]
        data = content.get("data") or {}
        comm_id = str(content.get("comm_id", ""))
        if msg["msg_type"] == "comm_open":
            state = data.get("state") or {}
            if content.get("target_name") != "jupyter.widget" or (
                state.get("_model_name") != "OutputModel"
            ):
                return
            model = self._models[comm_id] = _OutputModel(comm_id, current.limits)
        elif msg["msg_type"] == "comm_msg" and data.get("method") == "update":
            found = self._models.get(comm_id)
            if found is None:
                return
            model, state = found, data.get("state") or {}
        else:
            return
        if "outputs" in state:
            model.set_outputs(state["outputs"])
            self.changed_model(model, current)
        if "msg_id" in state:
            if model.msg_id:
                stack = self._capturing.get(model.msg_id, [])
                if model in stack:
                    stack.reverse()
                    stack.remove(model)
                    stack.reverse()
                if not stack:
                    self._capturing.pop(model.msg_id, None)
            model.msg_id = str(state["msg_id"] or "")
            if model.msg_id:
                self._capturing.setdefault(model.msg_id, []).append(model)

    def finish(self, collector: OutputCollector) -> list[tuple[int, list[Output]]]:
        """The execution counts and outputs, now, of the earlier steps that
        ``collector``'s step changed; ``collector`` is kept if later steps can."""
        changed = [
            (c.execution_count, c.outputs())
            for c in self._changed
            if c is not collector and c.execution_count is not None
        ]
        self._changed.clear()
        if collector.owns_displays:
            self._kept.append(collector)
            while len(self._kept) > self.keep:
                self.forget(self._kept.popleft())
        return changed

    def captured_state(self) -> list[tuple[str, list[Output]]]:
        """The Output widgets that captured outputs since the last call, with their
        outputs: a frontend writes them back to the kernel's widget (so that
        ``out.outputs`` holds them there too), and so does the managed kernel."""
        models, self._captured = list(self._captured), {}
        return [(model.comm_id, model.outputs()) for model in models]


_OUTPUT_TYPES = frozenset(
    ("stream", "display_data", "execute_result", "error", "clear_output", "update_display_data")
)
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_KERNEL_OUTPUTS = re.compile("\x00agentnb-outputs-dropped:(\\d+)\x00")


def _capped_bundle(data: dict[str, Any], limits: OutputLimits, notes: list[str]) -> dict[str, Any]:
    """``data`` within the limits; what did not fit is named in ``notes`` and in
    the bundle's text."""
    removed = []
    for mime in list(data):
        value = data[mime]
        if mime.startswith(_IMAGE_PREFIX) and mime != _TEXT_IMAGE:
            size = len(value) * 3 // 4
            limit = limits.max_image_bytes
        else:
            size = len(value) if isinstance(value, str) else len(json.dumps(value))
            limit = limits.max_text_chars
            if mime == "text/plain":
                continue  # capped below, by truncation rather than dropping
        if size > limit:
            del data[mime]
            removed.append(f"{mime} of {_human_bytes(size)} not kept (limit {_human_bytes(limit)})")
    plain = data.get("text/plain")
    if isinstance(plain, str) and len(plain) > limits.max_text_chars:
        data["text/plain"] = truncate_middle(plain, limits.max_text_chars)
    if removed:
        notes.extend(removed)
        note = "\n".join(f"[agentnb: {n}]" for n in removed)
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
    """Keep the step's own frames and the innermost one, each as its location and
    the line that raised; count the rest."""
    keep = [i for i, f in enumerate(frames) if _CELL_FRAME.search(f)]
    if frames:
        keep.append(len(frames) - 1)
    kept: list[str] = []
    previous = -1
    for i in sorted(set(keep)):
        if i - previous > 1 and previous >= 0:
            kept.append(f"[… {i - previous - 1} library frame(s) omitted …]")
        kept.append(truncate_middle(_where(frames[i]), _FRAME_LIMIT))
        previous = i
    return kept


def _where(frame: str) -> str:
    """A frame as its location and the line that raised, without the surrounding
    source: the model needs where it failed, not pandas' code, and every prompt that
    shows a failed step's traceback shows its code too."""
    lines = frame.splitlines()
    arrows = [line for line in lines[1:] if _ARROW.match(line)]
    return "\n".join([_SITE.sub("File ", lines[0]) if lines else "", *arrows])
