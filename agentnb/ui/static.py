"""The chat of a finished run as static HTML, for the ``%%agents`` cell's output.

The live widget needs its kernel: once the kernel is restarted or shut down, or
the notebook is opened elsewhere (nbviewer, GitHub, VS Code, another Jupyter),
its model is gone and JupyterLab shows "Error displaying widget: model not
found". So when a run ends, the cell gets a second output, this one: the widget
as it looked at the end, as plain HTML that shows with no kernel and no
JavaScript.

It is a copy of the widget's tree: boxes become ``<div>``\\ s with the widget's
classes (flex rows and columns, as ipywidgets lays them out), HTML parts keep
their HTML, buttons and editors are left out, and a folded step is a
``<details>`` that opens on a click. Every HTML value in the tree came from
:mod:`agentnb.ui.render`, which escapes or sanitises all model and kernel
content (no script, no event handler, images only from ``data:`` URLs), and
nothing is added here but ``<div>``, ``<details>``, ``<summary>``, agentnb's
class names and its stylesheet (whose last section lays the copy out, and holds
its own against the styles of the HTML output it sits in). The stylesheet rides
along in a ``<style>`` for frontends that render the HTML as it is (JupyterLab and Notebook 7 in a
trusted cell, nbviewer, VS Code); an untrusted cell's sanitiser drops it, and
the agentnb-cells extension carries the same stylesheet for that case.

While the live widget shows, this copy is hidden: the widget's own stylesheet
hides the copy of its run (:func:`twin_rule`), and the extension hides it in
JupyterLab and Notebook 7. Where the copy shows, the one line of text that stands
in for the widget in the cell's other output (``agentnb-fallback``) is hidden.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import ipywidgets as widgets

from .render import stylesheet

__all__ = ["live_class", "static_html", "twin_rule"]

_RUN_ID = re.compile(r"[^A-Za-z0-9_-]+")
_SKIPPED = (widgets.Button, widgets.Textarea, widgets.Text, widgets.ToggleButton)


def _css_id(run_id: str) -> str:
    return _RUN_ID.sub("", run_id)[:40] or "run"


def live_class(run_id: str) -> str:
    """The class of ``run_id``'s live widget."""
    return f"agentnb-live-{_css_id(run_id)}"


def twin_rule(run_id: str) -> str:
    """CSS that hides the static copy of ``run_id``'s chat wherever its live widget
    shows on the page (the rule lives in the widget: no widget, no rule)."""
    run = _css_id(run_id)
    return f"body:has(.{live_class(run_id)}) .agentnb-static-{run} {{ display: none; }}"


def _classes(widget: Any, *extra: str) -> str:
    names = [*extra, *getattr(widget, "_dom_classes", ())]
    return " ".join(
        escape(name) for name in names if not name.startswith(("agentnb-live", "agentnb-style"))
    )


def _shown(widget: Any) -> bool:
    layout = getattr(widget, "layout", None)
    return getattr(layout, "display", None) != "none"


def _node(widget: Any) -> str:
    if not _shown(widget) or isinstance(widget, _SKIPPED):
        return ""
    classes = getattr(widget, "_dom_classes", ())
    if "agentnb-style" in classes:
        return ""
    if isinstance(widget, widgets.HTML):
        if not widget.value:
            return ""
        return f'<div class="{_classes(widget, "agentnb-html")}">{widget.value}</div>'
    if isinstance(widget, widgets.Box):
        kind = "agentnb-hbox" if isinstance(widget, widgets.HBox) else "agentnb-vbox"
        if "agentnb-folded" in classes:
            return _folded(widget, kind)
        inner = "".join(_node(child) for child in widget.children)
        if not inner:
            return ""
        return f'<div class="{_classes(widget, kind)}">{inner}</div>'
    return ""


def _folded(card: Any, kind: str) -> str:
    """A folded card: its line, and the rest behind a click."""
    fold, *rest = card.children
    line = fold.children[0].value
    inner = "".join(_node(child) for child in rest)
    classes = " ".join(
        c for c in _classes(card, kind).split() if c not in ("agentnb-folded", "agentnb-expanded")
    )
    return (
        f'<details class="{classes} agentnb-fold-static">'
        f'<summary class="agentnb-fold">{line}</summary>'
        f'<div class="agentnb-vbox">{inner}</div></details>'
    )


def static_html(root: Any, run_id: str) -> str:
    """The widget ``root`` (a :class:`~agentnb.ui.widget.ChatView`'s) as static HTML."""
    run = _css_id(run_id)
    body = "".join(_node(child) for child in root.children)
    style = f"<style>{_minified(stylesheet())}</style>"
    return f'<div class="agentnb agentnb-static agentnb-static-{run}">{style}{body}</div>'


def _minified(css: str) -> str:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return re.sub(r"\s*\n\s*", "\n", css).strip()
