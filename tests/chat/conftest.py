"""Helpers for chat tests (the ``chat`` fixture, whole runs with the scripted model and
a real kernel, is shared by every tier: ``tests/conftest.py``)."""

from __future__ import annotations

import re

from ..conftest import ChatRunner as ChatRunner  # the tests' own helpers, shared
from ..conftest import Run as Run
from ..conftest import step as step


def outside_data(text: str) -> str:
    """``text`` without its ``<data>`` blocks (a forged closing tag would end one early)."""
    return re.sub(r"<data>.*?</data>", "", text, flags=re.DOTALL)


def longest_run(text: str, phrase: str) -> int:
    """The longest stretch of ``text`` that copies ``phrase * n`` from its start."""
    best = 0
    for match in re.finditer(re.escape(phrase[:12]), text):
        i, k = match.start(), 0
        while i + k < len(text) and text[i + k] == phrase[k % len(phrase)]:
            k += 1
        best = max(best, k)
    return best
