"""The stock ipywidgets every part of the chat widget is made of: an HTML widget,
a button and the boxes around them, each with its ``agentnb-*`` classes (the
stylesheet styles them by class; nothing here sets a colour).

Every widget model is a comm message the page must handle before it can show the
chat, so the classes go into the constructors (not an ``add_class`` update each),
and the HTML widgets and boxes, which never change their layout or style, share one
``Layout`` and one ``HTMLStyle`` instead of opening a model each. Buttons keep their
own: the header hides and shows some through their layout.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_string import HTMLStyle

__all__ = ["button", "hbox", "html_part", "vbox"]

_shared: dict[str, Any] = {}


def _one(kind: str) -> Any:
    """The shared model of ``kind`` ("layout" or "style"), made again once closed
    (``Widget.close_all``): a closed model cannot be shown."""
    model = _shared.get(kind)
    if model is None or model.comm is None:
        model = widgets.Layout() if kind == "layout" else HTMLStyle()
        _shared[kind] = model
    return model


def html_part(value: str, *classes: str) -> Any:
    """An HTML widget showing ``value`` (already safe HTML, from :mod:`agentnb.ui.render`)."""
    return widgets.HTML(
        value=value, _dom_classes=classes, layout=_one("layout"), style=_one("style")
    )


def button(description: str, css: str, style: str = "", tooltip: str = "", **keys: Any) -> Any:
    return widgets.Button(
        description=description,
        button_style=style,
        tooltip=tooltip,
        _dom_classes=(css,),
        **keys,
    )


def vbox(children: Any = (), *classes: str) -> Any:
    return widgets.VBox(list(children), _dom_classes=classes, layout=_one("layout"))


def hbox(children: Any = (), *classes: str) -> Any:
    return widgets.HBox(list(children), _dom_classes=classes, layout=_one("layout"))
