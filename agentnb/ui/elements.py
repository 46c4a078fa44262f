"""The two stock ipywidgets every part of the chat widget is made of: an HTML
widget and a button, each with its ``agentnb-*`` classes (the stylesheet styles
them by class; nothing here sets a colour)."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

__all__ = ["button", "html_part"]


def html_part(value: str, *classes: str) -> Any:
    """An HTML widget showing ``value`` (already safe HTML, from :mod:`agentnb.ui.render`)."""
    widget = widgets.HTML(value=value)
    for css in classes:
        widget.add_class(css)
    return widget


def button(description: str, css: str, style: str = "", tooltip: str = "") -> Any:
    widget = widgets.Button(description=description, button_style=style, tooltip=tooltip)
    widget.add_class(css)
    return widget
