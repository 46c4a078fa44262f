"""HTML for the chat widget: pure functions from agentnb's records to HTML strings.

Nothing here imports ipywidgets, so every piece of the widget's look can be
checked as a string. Three kinds of text are treated as untrusted:

- the agents' markdown (model output) goes through markdown-it with raw HTML
  off; links open in a new tab, and images are shown only from ``data:`` URLs
  (any other image URL would be fetched by the browser the moment it renders,
  which a prompt-injected model could use to carry data out);
- kernel outputs are produced by model-written code: ``text/html`` goes through
  :func:`sanitize_html`, an allowlist of tags and attributes;
- everything else (the task, names, errors, tracebacks) is escaped.

Colours are never written here: elements get ``agentnb-*`` classes that the
stylesheet (:func:`stylesheet`, package data) maps to the JupyterLab theme.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from html.parser import HTMLParser
from importlib import resources
from typing import Any, Literal

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters.html import HtmlFormatter
from pygments.lexers.python import PythonLexer

from ..chat.approval import ApprovalRequest, Decision
from ..chat.messages import Execution, FinalReport, Proposal, Review
from ..chat.termination import StopReason
from ..kernel.outputs import strip_ansi
from ..models.base import Usage
from ..record import subject

__all__ = [
    "State",
    "agent_classes",
    "code_html",
    "decision_html",
    "end_html",
    "execution_html",
    "first_sentence",
    "fold_html",
    "format_cost",
    "format_duration",
    "format_tokens",
    "head_html",
    "inserted_html",
    "jump_html",
    "markdown_html",
    "model_meta",
    "notice_html",
    "output_html",
    "outputs_html",
    "proposal_html",
    "reasoning_html",
    "report_html",
    "review_html",
    "sanitize_html",
    "status_html",
    "streaming_html",
    "stylesheet",
    "summary_html",
    "thinking_html",
    "title_html",
    "usage_html",
]

State = Literal["live", "waiting", "done", "stopped", "failed"]
"""How the run stands, for the header's colour: working, waiting for the user, or ended."""

# --- the stylesheet -------------------------------------------------------------------


@functools.cache
def stylesheet() -> str:
    """The widget's CSS (``agentnb/ui/style.css``), read once."""
    return resources.files("agentnb.ui").joinpath("style.css").read_text("utf-8")


# --- numbers --------------------------------------------------------------------------


def format_tokens(count: int, estimated: bool = False) -> str:
    """``12,345 tokens``; ``~`` in front when the count is an estimate."""
    return f"{'~' if estimated else ''}{count:,} tokens"


def format_cost(cost: float | None, estimated: bool = False) -> str:
    """Dollars, ``—`` when the price is unknown; ``~`` when the tokens are estimated."""
    if cost is None:
        return "—"
    if cost == 0:
        return "$0"
    amount = f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"
    return f"~{amount}" if estimated else amount


def format_duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# --- markdown and code ----------------------------------------------------------------

_PYTHON_NAMES = {"python", "py", "python3", "ipython", "ipython3", "pycon"}
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]+")


@functools.cache
def _formatter() -> tuple[Any, Any]:
    # built once: a lexer and a formatter cost more to make than to use
    return PythonLexer(), HtmlFormatter(nowrap=True)


def _highlighted(code: str) -> str:
    lexer, formatter = _formatter()
    return str(highlight(code, lexer, formatter))


def _fence(code: str, lang: str, _attrs: str) -> str:
    # markdown-it wraps what this returns in <pre><code>; "" means escape it plainly
    return _highlighted(code) if lang.lower() in _PYTHON_NAMES else ""


def _image(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if _DATA_IMAGE.fullmatch(src):
        return renderer.image(tokens, idx, options, env)
    # a remote image would load by itself; as a link it loads only if the user asks
    alt = renderer.renderInlineAsText(token.children or [], options, env) or src
    return (
        f'<a href="{escape(src)}" target="_blank" rel="noopener noreferrer">'
        f"{escape(alt, quote=False)}</a>"
    )


def _link_open(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


@functools.cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _fence})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _image)
    md.add_render_rule("link_open", _link_open)
    return md


def markdown_html(text: str, *, extra_class: str = "") -> str:
    """Model-written markdown as HTML; raw HTML in it is shown as text."""
    classes = f"agentnb-md {extra_class}".strip()
    return f'<div class="{classes}">{_markdown().render(text)}</div>'


def code_html(code: str) -> str:
    """Python code, highlighted with Pygments' token classes (coloured by the stylesheet)."""
    body = _highlighted(code.rstrip("\n") or "# (no code)")
    return f'<pre class="agentnb-code"><code>{body}</code></pre>'


_STREAM_MARKDOWN_LIMIT = 20_000


def streaming_html(text: str) -> str:
    """A reply still arriving: markdown while it is short enough to re-render cheaply."""
    if len(text) > _STREAM_MARKDOWN_LIMIT:
        tail = escape(text[-_STREAM_MARKDOWN_LIMIT:], quote=False)
        return f'<div class="agentnb-md agentnb-streaming"><pre>…{tail}</pre></div>'
    return markdown_html(text, extra_class="agentnb-streaming")


def reasoning_html(reasoning: str, *, live: bool = False) -> str:
    """A model's reasoning, folded: the answer is what the card shows."""
    if not reasoning.strip():
        return ""
    words = len(reasoning.split())
    what = "thinking" if live else "reasoning"
    return (
        f'<details class="agentnb-reasoning"><summary>{what} · {words:,} words</summary>'
        f"{markdown_html(reasoning)}</details>"
    )


def thinking_html(words: str = "thinking") -> str:
    return f'<div class="agentnb-thinking">{escape(words)}…</div>'


# --- HTML from the kernel ---------------------------------------------------------------

_ALLOWED_TAGS = frozenset(
    {
        *("a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl"),
        *("dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li"),
        *("mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub"),
        *("summary", "sup", "u", "ul"),
        *("table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"),
    }
)
_VOID_TAGS = frozenset({"br", "col", "hr", "img"})
# dropped together with everything inside them
_DROPPED_WITH_CONTENT = frozenset(
    {
        *("script", "style", "template", "noscript", "head", "title"),
        *("iframe", "frameset", "object", "embed", "applet", "audio", "video", "canvas"),
        *("svg", "math", "form", "textarea", "select", "button"),
    }
)
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"title", "align", "class"}),
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "td": frozenset({"colspan", "rowspan", "valign"}),
    "th": frozenset({"colspan", "rowspan", "valign"}),
    "col": frozenset({"span"}),
    "colgroup": frozenset({"span"}),
    "details": frozenset({"open"}),
    "ol": frozenset({"start"}),
}
_KEPT_CLASSES = frozenset({"dataframe"})
_NUMBER = re.compile(r"\d{1,5}%?")
_SAFE_HREF = re.compile(r"(?:https?:|mailto:|#)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


def _clean_attribute(tag: str, name: str, value: str | None) -> str | None:
    """The attribute's value if it may stay, else None."""
    if name not in _ATTRIBUTES["*"] and name not in _ATTRIBUTES.get(tag, frozenset()):
        return None
    value = value or ""
    if name == "href":
        return value if _SAFE_HREF.match(_CONTROL.sub("", value)) else None
    if name == "src":
        return value if _DATA_IMAGE.fullmatch(value) else None
    if name in {"width", "height", "colspan", "rowspan", "span", "start"}:
        return value if _NUMBER.fullmatch(value.strip()) else None
    if name == "class":
        # the page's own classes (ours, JupyterLab's) must not be borrowed to spoof it
        kept = [c for c in value.split() if c in _KEPT_CLASSES]
        return " ".join(kept) or None
    return value


class _Sanitizer(HTMLParser):
    """Re-emits an allowlisted subset of HTML; everything else is dropped or escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.open: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self.skipping += 1
            return
        if self.skipping or tag not in _ALLOWED_TAGS:
            return
        kept = []
        for name, value in attrs:
            clean = _clean_attribute(tag, name, value)
            if clean is not None:
                kept.append(f' {name}="{escape(clean)}"')
        if tag == "img" and not any(k.startswith(" src=") for k in kept):
            return
        if tag == "a" and any(k.startswith(" href=") for k in kept):
            kept.append(' target="_blank" rel="noopener noreferrer"')
        self.parts.append(f"<{tag}{''.join(kept)}>")
        if tag not in _VOID_TAGS:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            return  # self-closed: nothing inside to skip
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS and self.open and self.open[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self.skipping = max(self.skipping - 1, 0)
            return
        if self.skipping or tag not in self.open:
            return
        while self.open:
            closing = self.open.pop()
            self.parts.append(f"</{closing}>")
            if closing == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.parts) + "".join(f"</{t}>" for t in reversed(self.open))


def sanitize_html(html: str) -> str:
    """HTML written by a kernel, reduced to an allowlist of tags and attributes.

    Kept: text, tables (DataFrames), lists, headings, emphasis, ``<a href>`` to
    http(s)/mailto (opened in a new tab), ``<img>`` from ``data:`` URLs. Dropped:
    scripts and styles with their content, every event handler, ``style`` and
    ``id`` attributes, classes other than ``dataframe``, and any other URL.
    """
    sanitizer = _Sanitizer()
    sanitizer.feed(html)
    return sanitizer.result()


# --- kernel outputs ---------------------------------------------------------------------

_HEAD_LINES = 12
_LONG_LINES = 40
_LONG_CHARS = 5_000
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_TAGS = re.compile(r"<[^>]*>")


def _text_of(value: Any) -> str:
    """nbformat keeps multi-line strings as lists on disk, as strings in memory."""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value)


def _long_text_html(text: str, css: str, what: str) -> str:
    """Text in a <pre>; a long one shows its first lines and folds the rest away."""
    text = text.rstrip("\n")
    lines = text.split("\n")
    if len(lines) <= _LONG_LINES and len(text) <= _LONG_CHARS:
        return f'<pre class="{css}">{escape(text, quote=False)}</pre>'
    head = "\n".join(lines[:_HEAD_LINES])[:_LONG_CHARS]
    rest = text[len(head) :].lstrip("\n")
    more = len(lines) - _HEAD_LINES
    summary = f"{more:,} more lines of {what}" if more > 0 else f"the rest of {what}"
    return (
        f'<pre class="{css}">{escape(head, quote=False)}</pre>'
        f"<details><summary>{summary} ({len(text):,} characters in all)</summary>"
        f'<pre class="{css}">{escape(rest, quote=False)}</pre></details>'
    )


def _image_html(mime: str, value: Any, metadata: Any) -> str | None:
    data = re.sub(r"\s+", "", _text_of(value))
    if not re.fullmatch(r"[A-Za-z0-9+/=]+", data):
        return None
    size = ""
    if isinstance(metadata, Mapping):
        for attr in ("width", "height"):
            number = metadata.get(attr)
            if isinstance(number, int) and number > 0:
                size += f' {attr}="{number}"'
    return (
        f'<div class="agentnb-out-img"><img src="data:{mime};base64,{data}"{size} alt="plot"></div>'
    )


def _svg_html(value: Any) -> str:
    # as an <img>, an SVG cannot run scripts or reach the page
    data = base64.b64encode(_text_of(value).encode("utf-8")).decode("ascii")
    return _image_html("image/svg+xml", data, None) or ""


def _bundle_html(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """The richest safe rendering of a mime bundle."""
    for mime in _IMAGE_TYPES:
        if mime in data:
            image = _image_html(mime, data[mime], metadata.get(mime))
            if image:
                return image
    if "image/svg+xml" in data:
        return _svg_html(data["image/svg+xml"])
    if "text/html" in data:
        clean = sanitize_html(_text_of(data["text/html"]))
        if _TAGS.sub("", clean).strip() or "text/plain" not in data:
            return f'<div class="agentnb-out-html">{clean}</div>'
        # a page that was all script (an interactive chart): its plain text says more
    if "text/markdown" in data:
        return markdown_html(_text_of(data["text/markdown"]))
    if "text/plain" in data:
        return _long_text_html(strip_ansi(_text_of(data["text/plain"])), "agentnb-out-text", "text")
    if "application/json" in data:
        dumped = json.dumps(data["application/json"], indent=1)
        return _long_text_html(dumped, "agentnb-out-text", "JSON")
    kinds = ", ".join(sorted(data)) or "nothing"
    return f'<div class="agentnb-out-text">[an output of type {escape(kinds)}]</div>'


def _error_html(output: Mapping[str, Any]) -> str:
    name = str(output.get("ename", "Error"))
    value = str(output.get("evalue", ""))
    frames = [strip_ansi(str(f)).rstrip("\n") for f in output.get("traceback", [])]
    traceback = "\n".join(f for f in frames if f.strip())
    head = f"{name}: {value}" if value else name
    body = ""
    if traceback:
        lines = traceback.count("\n") + 1
        # an interrupt's traceback only says where it landed: the note says why
        state = " open" if lines <= 30 and name != "KeyboardInterrupt" else ""
        body = (
            f"<details{state}><summary>traceback ({lines:,} lines)</summary>"
            f"<pre>{escape(traceback, quote=False)}</pre></details>"
        )
    return (
        f'<div class="agentnb-out-error"><div class="agentnb-out-error-head">'
        f"{escape(head, quote=False)}</div>{body}</div>"
    )


def output_html(output: Mapping[str, Any]) -> str:
    """One nbformat output: a stream, an error, or a value (image, table, text)."""
    kind = output.get("output_type")
    if kind == "stream":
        name = str(output.get("name", "stdout"))
        css = "agentnb-out-stderr" if name == "stderr" else "agentnb-out-stream"
        return _long_text_html(strip_ansi(_text_of(output.get("text", ""))), css, name)
    if kind == "error":
        return _error_html(output)
    if kind in ("execute_result", "display_data"):
        data = output.get("data") or {}
        metadata = output.get("metadata") or {}
        return _bundle_html(data, metadata if isinstance(metadata, Mapping) else {})
    return ""


def outputs_html(outputs: Iterable[Mapping[str, Any]]) -> str:
    parts = [output_html(o) for o in outputs]
    body = "".join(p for p in parts if p)
    return f'<div class="agentnb-outputs">{body}</div>' if body else ""


def execution_html(step: int, execution: Execution | None, *, edited: str | None = None) -> str:
    """A step's run: the code as the user edited it (if they did), a status badge,
    the duration, agentnb's note and the outputs. ``execution=None``: still running."""
    parts = []
    if edited is not None:
        parts.append('<div class="agentnb-label">your edit, as it ran</div>')
        parts.append(code_html(edited))
    what = "data" if step == 0 else subject(step)
    if execution is None:
        parts.append(
            f'<div class="agentnb-run"><span class="agentnb-badge agentnb-badge-running">'
            f'running</span><span class="agentnb-run-what">{what}</span></div>'
        )
        return "".join(parts)
    restarted = " · the kernel was restarted" if execution.restarted else ""
    parts.append(
        f'<div class="agentnb-run"><span class="agentnb-badge agentnb-badge-{execution.status}">'
        f'{execution.status}</span><span class="agentnb-run-what">{what}</span>'
        f"<span>{format_duration(execution.duration)}{restarted}</span></div>"
    )
    if execution.note:
        parts.append(f'<div class="agentnb-run-note">{escape(execution.note)}</div>')
    parts.append(outputs_html(execution.outputs))
    return "".join(parts)


# --- turns ------------------------------------------------------------------------------

_KNOWN_AGENTS = frozenset({"analyst", "critic", "user", "executor", "data", "agentnb", "selector"})


def agent_classes(agent: str) -> tuple[str, ...]:
    """CSS classes that give an agent its colour: its own for known agents, one of
    a small palette (stable per name) for the others."""
    if agent in _KNOWN_AGENTS:
        return (f"agentnb-agent-{agent}",)
    return (f"agentnb-palette-{sum(map(ord, agent)) % 6}",)


def head_html(agent: str, action: str = "", meta: str = "", *, badge: str = "") -> str:
    """A turn's first line: who, doing what, an optional verdict badge, and facts."""
    parts = [f'<span class="agentnb-agent">{escape(agent)}</span>']
    if action:
        parts.append(f'<span class="agentnb-action">{escape(action)}</span>')
    if badge:
        parts.append(f'<span class="agentnb-badge agentnb-badge-{badge}">{escape(badge)}</span>')
    if meta:
        parts.append(f'<span class="agentnb-meta">{escape(meta)}</span>')
    return f'<div class="agentnb-head">{"".join(parts)}</div>'


def model_meta(model: str, usage: Usage, duration: float, *, cached: bool = False) -> str:
    """``model · 1,200 → 85 tokens · 2.1 s`` for a turn's head."""
    tilde = "~" if usage.estimated else ""
    facts = [
        model,
        f"{tilde}{usage.prompt_tokens:,} → {tilde}{usage.completion_tokens:,} tokens",
        format_duration(duration),
    ]
    if cached:
        facts.append("cached")
    return " · ".join(facts)


def proposal_html(proposal: Proposal) -> str:
    rationale = proposal.rationale.strip()
    words = markdown_html(rationale) if rationale else ""
    return words + code_html(proposal.code)


def report_html(report: FinalReport) -> str:
    return markdown_html(report.text.strip())


def review_html(review: Review) -> str:
    return markdown_html(review.text.strip()) if review.text.strip() else ""


def summary_html(summary: str, label: str = "what the agents were told about the data") -> str:
    if not summary.strip():
        return ""
    return (
        f'<details class="agentnb-data-summary"><summary>{escape(label)}</summary>'
        f"<pre>{escape(summary.strip(), quote=False)}</pre></details>"
    )


def inserted_html(cell_id: str) -> str:
    """The mark on a step whose code became a cell of the notebook."""
    return (
        f'<div class="agentnb-line agentnb-inserted" title="cell {escape(cell_id)}">'
        '<span class="agentnb-line-mark">↳</span><span>inserted as a cell below</span></div>'
    )


_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def jump_html(cell_id: str, words: str) -> str:
    """``words`` that, clicked in JupyterLab or Notebook 7, select the notebook's cell
    ``cell_id`` and scroll to it (the agentnb-cells extension listens for
    ``agentnb-jump``; the cell id rides in a class, which sanitisers keep)."""
    if not _CELL_ID.fullmatch(cell_id):
        return escape(words)
    return (
        f'<span class="agentnb-jump agentnb-to-{cell_id}" role="link" '
        f'title="go to the cell">{escape(words)}</span>'
    )


def fold_html(
    number: int,
    author: str | None,
    execution: Execution | None,
    *,
    edited: bool,
    cell_id: str,
    why: str = "",
) -> str:
    """The one line a step's card folds to once its code is a cell of the notebook:
    the step, its author, how it ran, whether the user edited it, the first words of
    why, and a link to the cell."""
    status = execution.status if execution is not None else "ok"
    parts = [
        f'<span class="agentnb-badge agentnb-badge-{escape(status)}">{escape(status)}</span>',
        f'<span class="agentnb-run-what">{escape(subject(number))}</span>',
    ]
    if author:
        parts.append(f'<span class="agentnb-agent">{escape(author)}</span>')
    if execution is not None:
        parts.append(f'<span class="agentnb-meta">{format_duration(execution.duration)}</span>')
    if edited:
        parts.append('<span class="agentnb-fold-edited">edited by you</span>')
    summary = " ".join(why.split())
    if summary:
        short = summary if len(summary) <= 90 else summary[:89].rstrip() + "…"
        parts.append(
            f'<span class="agentnb-fold-why" title="{escape(summary)}">{escape(short)}</span>'
        )
    parts.append(f'<span class="agentnb-fold-cell">{jump_html(cell_id, "↓ its cell")}</span>')
    return f'<div class="agentnb-fold-text">{"".join(parts)}</div>'


def _line(css: str, mark: str, html: str) -> str:
    return (
        f'<div class="agentnb-line {css}"><span class="agentnb-line-mark">{mark}</span>'
        f"<span>{html}</span></div>"
    )


_DECISION_MARKS = {"approve": "✓", "edit": "✎", "reject": "✗", "stop": "■"}


def decision_html(request: ApprovalRequest, decision: Decision) -> str:
    """What the user decided, as a line on the card it was about."""
    what = subject(request.step if request.kind == "step" else None, short=True)
    words = {
        ("step", "approve"): f"you approved {what}",
        ("step", "edit"): f"you edited {what}; your version runs",
        ("step", "reject"): f"you rejected {what}",
        ("final", "approve"): f"you accepted {what}",
        ("final", "edit"): f"you edited {what}",
        ("final", "reject"): f"you sent {what} back",
    }.get((request.kind, decision.action), f"you stopped the run at {what}")
    html = escape(words)
    feedback = decision.feedback.strip()
    if decision.action == "reject" and feedback:
        html += f': <span class="agentnb-quote">{escape(feedback)}</span>'
    mark = _DECISION_MARKS[decision.action]
    return _line(f"agentnb-decision agentnb-decision-{decision.action}", mark, html)


_NOTICE_MARKS = {"info": "ℹ", "warning": "⚠", "error": "✘"}


def notice_html(level: Literal["info", "warning", "error"], text: str) -> str:
    return _line(f"agentnb-notice agentnb-notice-{level}", _NOTICE_MARKS[level], escape(text))


def end_html(reason: StopReason, state: State, steps: int, elapsed: float) -> str:
    """The last line of the conversation: why the run ended, in a few facts."""
    mark = {"done": "✔", "stopped": "■"}.get(state, "✘")
    facts = [f"{steps} step{'s' if steps != 1 else ''} ran", format_duration(elapsed)]
    html = f'{escape(reason.message)} <span class="agentnb-elapsed">· {" · ".join(facts)}</span>'
    return _line(f"agentnb-end agentnb-end-{state}", mark, html)


# --- the header --------------------------------------------------------------------------


def title_html(task: str, facts: Sequence[str] = ()) -> str:
    """The task, and facts about the run below it (models, approval mode, data)."""
    line = " · ".join(escape(f) for f in facts)
    return (
        f'<div class="agentnb-title"><span class="agentnb-mark">agentnb</span>'
        f'<span class="agentnb-task" title="{escape(task.strip())}">'
        f"{escape(task.strip(), quote=False)}</span></div>"
        + (f'<div class="agentnb-facts">{line}</div>' if line else "")
    )


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of ``text`` (what failed, without the advice after it),
    at most ``limit`` characters."""
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(?:\s|$)", text)
    first = match.group(1) if match else text
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def status_html(words: str, state: State, elapsed: float, reason: str = "") -> str:
    """The phase in words, a coloured dot, the elapsed time and, once ended, why (its
    first sentence: the end of the conversation has the rest)."""
    extra = ""
    if reason:
        short = first_sentence(reason)
        extra = f'<span class="agentnb-reason" title="{escape(reason)}">{escape(short)}</span>'

    return (
        f'<div class="agentnb-status agentnb-state-{state}"><span class="agentnb-dot"></span>'
        f'<span class="agentnb-phase-words">{escape(words)}</span>'
        f'<span class="agentnb-elapsed">{format_duration(elapsed)}</span>{extra}</div>'
    )


def usage_html(
    usage: Mapping[str, Usage],
    costs: Mapping[str, float | None],
    replying: Sequence[str] = (),
) -> str:
    """Tokens (prompt + completion) and cost per agent, and their total; ``replying``:
    the agents whose reply is coming in now (counted once it has come)."""
    waiting = [
        f'<span class="{" ".join(("agentnb-usage-item agentnb-usage-live", *agent_classes(a)))}">'
        f'<span class="agentnb-usage-agent">{escape(a)}</span> replying…</span>'
        for a in replying
        if a not in usage
    ]
    if not usage:
        if waiting:
            return f'<div class="agentnb-usage-line">{"".join(waiting)}</div>'
        return '<div class="agentnb-usage-line">no model calls yet</div>'
    items = []
    for agent, used in usage.items():
        cost = format_cost(costs.get(agent), used.estimated)
        title = (
            f"{used.prompt_tokens:,} prompt + {used.completion_tokens:,} completion tokens, "
            f"{used.calls} call{'s' if used.calls != 1 else ''}"
        )
        css = " ".join(("agentnb-usage-item", "agentnb-turn", *agent_classes(agent)))
        items.append(
            f'<span class="{css}" title="{escape(title)}">'
            f'<span class="agentnb-usage-agent">{escape(agent)}</span> '
            f"{format_tokens(used.total_tokens, used.estimated)} · {cost}</span>"
        )
    if len(usage) > 1:
        total = sum(usage.values(), Usage())
        known = [costs.get(a) for a in usage]
        cost_total = None if any(c is None for c in known) else sum(c or 0.0 for c in known)
        items.append(
            f'<span class="agentnb-usage-item">total '
            f"{format_tokens(total.total_tokens, total.estimated)} · "
            f"{format_cost(cost_total, total.estimated)}</span>"
        )
    return f'<div class="agentnb-usage-line">{"".join(waiting + items)}</div>'
