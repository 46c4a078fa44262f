"""The stock ipywidgets every part of the chat widget is made of: an HTML widget,
a button and the boxes around them, each with its ``agentnb-*`` classes (the
stylesheet styles them by class; nothing here sets a colour).

Every widget model and every change of one is a comm message the page handles, one
after another, before it can show the chat, so the classes go into the
constructors rather than an ``add_class`` update each. Each widget keeps its own
``Layout`` and style models: one shared by all of them saves messages, but in
JupyterLab re-running the cell then took longer with every run (bench/README.md).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

__all__ = ["button", "hbox", "html_part", "vbox"]


def html_part(value: str, *classes: str) -> Any:
    """An HTML widget showing ``value`` (already safe HTML, from :mod:`agentnb.ui.render`)."""
    return widgets.HTML(value=value, _dom_classes=classes)


def button(description: str, css: str, style: str = "", tooltip: str = "", **keys: Any) -> Any:
    return widgets.Button(
        description=description,
        button_style=style,
        tooltip=tooltip,
        _dom_classes=(css,),
        **keys,
    )


def vbox(children: Any = (), *classes: str) -> Any:
    return widgets.VBox(list(children), _dom_classes=classes)


def hbox(children: Any = (), *classes: str) -> Any:
    return widgets.HBox(list(children), _dom_classes=classes)
