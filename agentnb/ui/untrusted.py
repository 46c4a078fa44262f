"""A step's outputs made fit for a notebook: what model-written code printed or
displayed, with nothing left that a frontend would run.

Every output of a step is attacker-controlled: a prompt-injected analyst can write
code that displays ``Javascript(...)``, HTML with event handlers, an SVG with a
script, or an image that phones home. A trusted notebook cell would run all of it
in the user's page, and so would a signed notebook opened again. So the cells
agentnb inserts and the notebooks it saves are never trusted, and their outputs go
through :func:`safe_outputs` first, which keeps an allowlist of mime types:

- ``text/plain``, ``text/latex`` and ``application/json``, as they are;
- ``text/html`` through :func:`~agentnb.ui.render.sanitize_html`, the widget's own
  allowlist sanitiser (no script, no event handlers, no styles, images only from
  ``data:`` URLs);
- ``text/markdown`` as the widget renders it (raw HTML shown as text, remote
  images as links), which becomes the output's ``text/html``: markdown renderers
  differ on raw HTML and link schemes, one vetted rendering does not;
- ``image/png``, ``image/jpeg`` and ``image/gif`` holding base64 data;
- ``image/svg+xml`` only without a raster image of the same figure beside it, and
  only if it passes a strict check (:func:`_plain_svg`).

Anything else (``application/javascript``, widget views of the managed kernel,
which mean nothing in the user's notebook, the exec and load bundles of plotting
libraries, ...) is removed, and a line on stderr right after the output says what
was removed, so the user knows why a chart is missing.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from typing import Any

from markdown_it import MarkdownIt

from ..kernel.outputs import strip_ansi
from .render import markdown_html, sanitize_html

__all__ = ["safe_markdown", "safe_outputs"]

_RASTERS = ("image/png", "image/jpeg", "image/gif")
_AS_IS = ("text/plain", "text/latex")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_TAG = re.compile(r"<[^>]*>")
# Only to say so in the note; the sanitiser's allowlist is what keeps script out.
_ACTIVE_HTML = re.compile(
    r"<\s*script\b|<[^>]*\son[a-z]+\s*=|(?:href|src)\s*=\s*[\"']?\s*javascript:", re.IGNORECASE
)
_WHY = "script and remote content from model-written code are never run or loaded"


def safe_outputs(outputs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """nbformat v4 outputs of model-written code, reduced to what may be shown.

    Streams and errors keep their text (errors without terminal escapes); rich
    outputs keep the mime types of the allowlist (see the module notes), cleaned.
    An output that loses something is followed by a ``stderr`` stream that names
    what was removed; an output left with nothing is dropped. The result is plain
    JSON, in the order of ``outputs``.
    """
    kept: list[dict[str, Any]] = []
    for output in outputs:
        safe, removed = _safe_output(output)
        if safe is not None:
            kept.append(safe)
        if removed:
            kept.append(_note(removed))
    return kept


def _note(removed: list[str]) -> dict[str, Any]:
    what = removed[0] if len(removed) == 1 else f"{', '.join(removed[:-1])} and {removed[-1]}"
    return {
        "output_type": "stream",
        "name": "stderr",
        "text": f"agentnb removed {what} from this output: {_WHY}.\n",
    }


def _text(value: Any) -> str:
    """nbformat keeps multi-line strings as lists on disk, as strings in memory."""
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return str(value)


def _safe_output(output: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name")
        return {
            "output_type": "stream",
            "name": name if name in ("stdout", "stderr") else "stdout",
            "text": _text(output.get("text", "")),
        }, []
    if kind == "error":
        traceback = output.get("traceback")
        return {
            "output_type": "error",
            "ename": strip_ansi(_text(output.get("ename", "Error"))),
            "evalue": strip_ansi(_text(output.get("evalue", ""))),
            "traceback": [
                strip_ansi(_text(line))
                for line in (traceback if isinstance(traceback, list) else [])
            ],
        }, []
    if kind in ("display_data", "execute_result"):
        bundle = output.get("data")
        data, removed = _safe_bundle(bundle if isinstance(bundle, Mapping) else {})
        if not data:
            return None, removed
        metadata = output.get("metadata")
        safe: dict[str, Any] = {
            "output_type": kind,
            "data": data,
            "metadata": _safe_metadata(metadata if isinstance(metadata, Mapping) else {}, data),
        }
        if kind == "execute_result":
            count = output.get("execution_count")
            safe["execution_count"] = count if type(count) is int else None
        return safe, removed
    return None, [f"an output of type {str(kind)[:40]!r}"]


def _safe_bundle(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    kept: dict[str, Any] = {}
    removed: list[str] = []
    raster = False
    for mime in _RASTERS:
        if mime in data:
            image = _text(data[mime])
            if _BASE64.fullmatch(image):
                kept[mime] = image
                raster = True
            else:
                removed.append(mime)
    for mime, value in data.items():
        if mime in _RASTERS or mime == "text/markdown":
            continue
        if mime in _AS_IS:
            kept[mime] = _text(value)
        elif mime == "application/json":
            kept[mime] = json.loads(json.dumps(value, default=str))
        elif mime == "text/html":
            html = _text(value)
            clean = sanitize_html(html)
            if _TAG.sub("", clean).strip() or "<img" in clean:
                kept[mime] = clean
                if _ACTIVE_HTML.search(html):
                    removed.append("the script in text/html")
            elif html.strip():
                removed.append(mime)  # nothing left to see: it was all script or remote
        elif mime == "image/svg+xml":
            # beside a raster image it is the same figure again: dropped without a word
            if not raster:
                svg = _text(value)
                if _plain_svg(svg):
                    kept[mime] = svg
                else:
                    removed.append(mime)
        else:
            removed.append(mime)
    if "text/markdown" in data and "text/html" not in kept:
        kept["text/html"] = markdown_html(_text(data["text/markdown"]))
    return kept, removed


def _safe_metadata(metadata: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Image sizes and the background hint; nothing that changes how a frontend renders."""
    safe: dict[str, Any] = {}
    for mime in data:
        entry = metadata.get(mime)
        if isinstance(entry, Mapping):
            sizes = {k: entry[k] for k in ("width", "height") if type(entry.get(k)) is int}
            if sizes:
                safe[mime] = sizes
    if metadata.get("needs_background") in ("light", "dark"):
        safe["needs_background"] = metadata["needs_background"]
    return safe


# --- SVG ---------------------------------------------------------------------------------

_SVG = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
# the shapes, text and paint servers plotting libraries draw with; no <a>, <script>,
# <foreignObject>, <iframe>, nor <set>/<animate>, which can point an href elsewhere
_SVG_ELEMENTS = frozenset(
    {
        *("svg", "g", "defs", "symbol", "use", "title", "desc", "metadata", "style", "image"),
        *("path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "marker"),
        *("text", "tspan", "textPath", "clipPath", "mask", "pattern", "filter", "switch"),
        *("linearGradient", "radialGradient", "stop"),
        *("feGaussianBlur", "feOffset", "feBlend", "feFlood", "feComposite", "feMerge"),
        *("feMergeNode", "feColorMatrix"),
    }
)
# what matplotlib writes into <metadata>: Dublin Core and Creative Commons in RDF
_METADATA_NAMESPACES = frozenset(
    {
        "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}",
        "{http://purl.org/dc/elements/1.1/}",
        "{http://creativecommons.org/ns#}",
        "{http://purl.org/dc/terms/}",
    }
)
_LOCAL_HREF = re.compile(r"#[\w.:-]*|data:image/(?:png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*")
_URL = re.compile(r"url\(\s*(?!['\"]?\s*#)", re.IGNORECASE)
_SCHEME = re.compile(r"javascript:|vbscript:|@import|expression\(", re.IGNORECASE)
# any processing instruction but the XML declaration (an xml-stylesheet loads CSS or XSLT)
_INSTRUCTION = re.compile(r"<\?(?!xml\s)", re.IGNORECASE)


def _plain_svg(svg: str) -> bool:
    """True for an SVG that only draws: nothing it could run, load or link to.

    An allowlist check, not a cleaner: an SVG that fails it is not shown at all.
    """
    if "<!ENTITY" in svg.upper() or _INSTRUCTION.search(svg):
        return False
    try:
        root = ElementTree.fromstring(svg)
    except (ElementTree.ParseError, ValueError):
        return False
    if root.tag != f"{_SVG}svg":
        return False
    return _plain_element(root, in_metadata=False)


def _plain_element(element: ElementTree.Element, *, in_metadata: bool) -> bool:
    tag = element.tag  # comments and processing instructions are not in the tree
    if tag.startswith(_SVG):
        if tag[len(_SVG) :] not in _SVG_ELEMENTS:
            return False
    elif not (in_metadata and tag[: tag.find("}") + 1] in _METADATA_NAMESPACES):
        return False
    for name, value in element.attrib.items():
        local = name.rpartition("}")[2]
        if local.lower().startswith("on") or _SCHEME.search(value) or _URL.search(value):
            return False
        if (local == "href" or name == _XLINK_HREF) and not _LOCAL_HREF.fullmatch(value.strip()):
            return False
    for text in (element.text, element.tail):
        if text and (_SCHEME.search(text) or _URL.search(text)):
            return False
    inside = in_metadata or tag == f"{_SVG}metadata"
    return all(_plain_element(child, in_metadata=inside) for child in element)


# a "<" that could open a tag, a comment or a processing instruction
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
# an inline code span, as CommonMark pairs backtick runs of the same length
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def safe_markdown(text: str) -> str:
    """Model-written markdown for a notebook's markdown cell, which a trusted (signed)
    notebook renders with its raw HTML: every tag becomes text, and every image a
    link (an image would make the browser fetch its URL the moment it renders).

    Code is left as written: fenced and indented blocks, as markdown-it finds them,
    and code spans on lines without escaped backticks (where CommonMark could pair
    the backticks differently).
    """
    lines = text.split("\n")
    code: set[int] = set()
    for token in MarkdownIt("commonmark").parse(text):
        if token.type in ("fence", "code_block") and token.map is not None:
            code.update(range(token.map[0], token.map[1]))
    for number, line in enumerate(lines):
        if number in code:
            continue
        if "\\`" in line:
            lines[number] = _defang(line)
            continue
        kept, last = [], 0
        for span in _CODE_SPAN.finditer(line):
            kept.append(_defang(line[last : span.start()]) + span.group())
            last = span.end()
        lines[number] = "".join(kept) + _defang(line[last:])
    return "\n".join(lines)


def _defang(text: str) -> str:
    return _TAG_OPEN.sub("&lt;", text).replace("![", "\\![")
