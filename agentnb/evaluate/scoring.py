"""Scoring answers as the benchmarks score them.

Every scorer compares one extracted answer (text, or None when the report gave
none) with one expected answer and says right or wrong:

- ``exact``: InfiAgent-DABench's rule. The texts are equal, or both read as numbers
  less than 1e-6 apart. Nothing else is normalised: ``No`` is not ``no``.
- ``dabstep``: DABStep's normalised match, by the type of the answers: numbers
  (a thousands separator, a ``$`` or a ``%`` allowed) compared numerically, with a
  relative and absolute tolerance of 1e-4 or as equal when rounded to the shorter
  one's decimals; lists (``,`` or ``;`` separated, brackets allowed) compared item
  by item in sorted order; text compared case-insensitively without spaces and
  punctuation, a one-word answer matching a longer one that contains the word, or
  nearly the same text (95 % similar).
- ``number``: a number within ``tolerance`` (absolute) or ``rel_tolerance``
  (relative) of the expected one; ``1,234.5``, ``$12`` and ``45%`` read as numbers.
- ``text``: the same words, ignoring case, surrounding quotes, spaces and a final
  period.
- ``list``: the same set of items (order and repeats do not matter); numbers within
  the tolerance, text as ``text`` compares it.

Answers are taken from the final report: ``@name[value]`` pairs (InfiAgent-DABench's
format, also the native suites'), where the last pair of a name counts, or a
``FINAL ANSWER: ...`` line (DABStep's tasks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any, Literal

__all__ = [
    "SCORERS",
    "Expected",
    "Score",
    "ScorerName",
    "dabench_equal",
    "dabstep_match",
    "extract_final",
    "extract_named",
    "list_match",
    "number_match",
    "text_match",
]

ScorerName = Literal["exact", "dabstep", "number", "text", "list"]

# InfiAgent-DABench's extraction: a name of word characters, then the value up to
# the first closing bracket, on one line
_NAMED = re.compile(r"@(\w+)\[(.*?)\]")
_FINAL = re.compile(
    r"^[\s>*_#`-]*final\s+answer[\s*_`]*[:：]\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE
)


def extract_named(text: str | None) -> dict[str, str]:
    """The ``@name[value]`` pairs of ``text``; a name given twice keeps its last value."""
    return dict(_NAMED.findall(text or ""))


def extract_final(text: str | None) -> str | None:
    """The answer on the last ``FINAL ANSWER: ...`` line, without the markdown a model
    wraps it in (bold, code, quotes of backticks); None when there is no such line."""
    found = _FINAL.findall(text or "")
    if not found:
        return None
    answer: str = found[-1].strip()
    for _ in range(3):
        stripped = answer.strip("*_` ").strip()
        if stripped == answer:
            break
        answer = stripped
    return answer


# --- InfiAgent-DABench -------------------------------------------------------------


def dabench_equal(answer: str | None, expected: str) -> bool:
    """InfiAgent-DABench's ``is_equal``: the same text, or numbers less than 1e-6 apart."""
    if answer is None:
        return False
    if answer == expected:
        return True
    try:
        return abs(float(answer) - float(expected)) < 1e-6
    except (ValueError, OverflowError):
        return False


# --- DABStep -------------------------------------------------------------------------

_GROUPED = re.compile(r"^\$?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+[.,]\d+)$")
_FIRST_NUMBER = re.compile(r"(\d*\.\d+|\d+\.?\d*)%?")


def _grouped_number(text: str) -> bool:
    """``1,234.5``, ``$12,000``, ``0.99`` or ``0,99``: a number DABStep compares as one
    even though it holds a comma (a plain integer is not one of these)."""
    return bool(_GROUPED.match(text.strip()))


def _first_number(text: str) -> float | None:
    match = _FIRST_NUMBER.search(text.replace(",", "").replace("$", ""))
    if not match:
        return None
    try:
        return float(match.group(1))
    except ValueError:  # pragma: no cover - the pattern only matches numbers
        return None


def _decimals(x: float) -> int:
    text = str(x)
    return len(text.split(".")[-1]) if "." in text else 0


def _numbers_match(a: float, b: float) -> bool:
    if a == b:
        return True
    if a < 1 and b < 1:
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    places = min(_decimals(a), _decimals(b))
    if round(a, places) == round(b, places):
        return True
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)


def _words_match(a: str, b: str) -> bool:
    if re.sub(r"[^\w]", "", a) == re.sub(r"[^\w]", "", b):
        return True
    words_a, words_b = re.findall(r"\b\w+\b", a), re.findall(r"\b\w+\b", b)
    if words_a and words_b and (len(words_a) == 1 or len(words_b) == 1):
        return set(words_a) <= set(words_b) or set(words_b) <= set(words_a)
    return SequenceMatcher(None, a, b).ratio() > 0.95


def _dabstep_items(text: str) -> list[str]:
    text = re.sub(r"^\[|\]$", "", text.strip())
    return sorted(item.strip() for item in re.split(r"[,;]", text) if item.strip())


def dabstep_match(answer: str | None, expected: str) -> bool:
    """DABStep's normalised match of an answer with the expected one, by their type."""
    if answer is None:
        return False
    a, b = answer.strip().lower(), expected.strip().lower()
    if _grouped_number(a) or _grouped_number(b):
        x, y = _first_number(a), _first_number(b)
        return x is not None and y is not None and _numbers_match(x, y)
    if any(sep in a or sep in b for sep in ",;"):
        items_a, items_b = _dabstep_items(a), _dabstep_items(b)
        if items_a == items_b:
            return True
        return len(items_a) == len(items_b) and all(
            dabstep_match(x, y) for x, y in zip(items_a, items_b, strict=True)
        )
    x, y = _first_number(a), _first_number(b)
    if x is not None and y is not None:
        return _numbers_match(x, y)
    return _words_match(a, b)


# --- agentnb's own: numbers with a tolerance, text, sets ------------------------------

_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?$", re.IGNORECASE)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().replace(",", "").replace("$", "").replace(" ", "")
    text = text.removesuffix("%")
    if not _NUMBER.match(text):
        return None
    try:
        return float(text)
    except ValueError:  # pragma: no cover - the pattern only matches numbers
        return None


def number_match(
    answer: str | None, expected: Any, tolerance: float = 1e-6, rel_tolerance: float = 0.0
) -> bool:
    """A number within ``tolerance`` (absolute) or ``rel_tolerance`` (relative)."""
    if answer is None:
        return False
    a, b = _as_number(answer), _as_number(expected)
    if a is None or b is None:
        return False
    return math.isclose(a, b, rel_tol=rel_tolerance, abs_tol=tolerance)


def _normal_text(value: Any) -> str:
    text = " ".join(str(value).split()).casefold()
    while True:
        before = text
        text = text.removesuffix(".").strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
            text = text[1:-1].strip()
        if text == before:
            return text


def text_match(answer: str | None, expected: Any) -> bool:
    """The same text, ignoring case, runs of spaces, surrounding quotes and a final period."""
    if answer is None:
        return False
    if isinstance(expected, bool):
        expected = str(expected)
    return _normal_text(answer) == _normal_text(expected)


def _answer_items(answer: str) -> list[str]:
    text = answer.strip()
    if len(text) >= 2 and text[0] + text[-1] in ("[]", "()", "{}"):
        text = text[1:-1]
    return [item.strip() for item in re.split(r"[,;\n]", text) if item.strip()]


def list_match(
    answer: str | None,
    expected: Sequence[Any],
    tolerance: float = 1e-6,
    rel_tolerance: float = 0.0,
) -> bool:
    """The same set of items: order and repeats do not matter; numbers within the
    tolerance, text as :func:`text_match` compares it."""
    if answer is None:
        return False
    given = _answer_items(answer)

    def same(a: str, b: Any) -> bool:
        if _as_number(b) is not None:
            return number_match(a, b, tolerance, rel_tolerance)
        return text_match(a, b)

    wanted = list(expected)
    # each expected item needs a given one, and each given item must be expected
    return all(any(same(a, b) for a in given) for b in wanted) and all(
        any(same(a, b) for b in wanted) for a in given
    )


# --- one expected answer ---------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """One expected answer of a task: its name (``@name[...]``), value and scorer."""

    name: str
    value: Any
    scorer: ScorerName = "exact"
    tolerance: float = 1e-6
    """Absolute, for ``number`` and ``list``."""
    rel_tolerance: float = 0.0
    """Relative, for ``number`` and ``list``."""

    def matches(self, answer: str | None) -> bool:
        return SCORERS[self.scorer](answer, self)

    def as_text(self) -> str:
        """The value as a report would write it."""
        if isinstance(self.value, list | tuple):
            return ", ".join(str(v) for v in self.value)
        return str(self.value)


def _exact(answer: str | None, e: Expected) -> bool:
    return dabench_equal(answer, e.as_text())


def _dabstep(answer: str | None, e: Expected) -> bool:
    return dabstep_match(answer, e.as_text())


def _number(answer: str | None, e: Expected) -> bool:
    return number_match(answer, e.value, e.tolerance, e.rel_tolerance)


def _text(answer: str | None, e: Expected) -> bool:
    return text_match(answer, e.value)


def _list(answer: str | None, e: Expected) -> bool:
    items = e.value if isinstance(e.value, list | tuple) else _answer_items(str(e.value))
    return list_match(answer, items, e.tolerance, e.rel_tolerance)


SCORERS: Mapping[str, Callable[[str | None, Expected], bool]] = {
    "exact": _exact,
    "dabstep": _dabstep,
    "number": _number,
    "text": _text,
    "list": _list,
}
"""Each scorer by name: ``(answer, expected) -> right``."""


@dataclass(frozen=True)
class Score:
    """A task's answers, each right or wrong."""

    answers: dict[str, str | None] = field(default_factory=dict)
    """Per expected name, what the report said (None: nothing)."""
    right: dict[str, bool] = field(default_factory=dict)
    """Per expected name, whether it matched."""

    @property
    def correct(self) -> bool:
        """Every sub-answer is right (InfiAgent-DABench's accuracy by question)."""
        return bool(self.right) and all(self.right.values())

    @property
    def fraction(self) -> float:
        """The share of sub-answers that are right (its proportional accuracy)."""
        return sum(self.right.values()) / len(self.right) if self.right else 0.0
