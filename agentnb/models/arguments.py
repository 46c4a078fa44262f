"""Tool-call arguments shown while they stream.

A model calling ``run_step`` streams ``{"why": "...", "code": "...`` a few
characters at a time; the user should watch the code being written, as with a
text reply. :class:`ArgumentStream` turns the JSON so far into text: each string
value in turn, code in a python fence, a verdict in capitals.
"""

from __future__ import annotations

__all__ = ["ArgumentStream"]


class ArgumentStream:
    """Turns the streamed JSON arguments of a call into text to show as it comes:
    the string values, code in a fence. Tolerant: what it cannot follow it skips."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._raw = ""
        self._shown = ""

    def feed(self, piece: str) -> str:
        """The new text to show after ``piece`` of the arguments arrived."""
        self._raw += piece
        text = self._render()
        if not text.startswith(self._shown):
            return ""  # a value ended differently than it looked: show the rest at the end
        new, self._shown = text[len(self._shown) :], text
        return new

    def _render(self) -> str:
        parts: list[str] = []
        for key, value, closed in _string_values(self._raw):
            if key == "code":
                parts.append("```python\n" + value + ("\n```" if closed else ""))
            elif key == "verdict":
                parts.append(value.upper())
            else:
                parts.append(value)
        return "\n\n".join(parts)


def _string_values(raw: str) -> list[tuple[str, str, bool]]:
    """``(key, value so far, closed)`` for each top-level string value in the
    JSON object text ``raw``, which may end anywhere."""
    out: list[tuple[str, str, bool]] = []
    i, n = raw.find("{") + 1, len(raw)
    if i == 0:
        return out
    while i < n:
        key_start = raw.find('"', i)
        if key_start < 0:
            break
        key, i, closed = _read_string(raw, key_start + 1)
        if not closed:
            break
        colon = raw.find(":", i)
        if colon < 0:
            break
        j = colon + 1
        while j < n and raw[j] in " \t\r\n":
            j += 1
        if j >= n:
            break
        if raw[j] != '"':  # not a string: skip to the next comma
            comma = raw.find(",", j)
            if comma < 0:
                break
            i = comma + 1
            continue
        value, i, closed = _read_string(raw, j + 1)
        out.append((key, value, closed))
        if not closed:
            break
    return out


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _read_string(raw: str, i: int) -> tuple[str, int, bool]:
    """The JSON string starting after its quote at ``i``: its value so far, where
    reading stopped, and whether it was closed."""
    chars: list[str] = []
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == '"':
            return "".join(chars), i + 1, True
        if c != "\\":
            chars.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break  # an escape cut in two: wait for the rest
        e = raw[i + 1]
        if e == "u":
            if i + 6 > n:
                break
            try:
                code = int(raw[i + 2 : i + 6], 16)
            except ValueError:
                code = 0xFFFD
            if not 0xD800 <= code <= 0xDFFF:  # half a pair shows nothing until the end
                chars.append(chr(code))
            i += 6
            continue
        chars.append(_ESCAPES.get(e, e))
        i += 2
    return "".join(chars), i, False
