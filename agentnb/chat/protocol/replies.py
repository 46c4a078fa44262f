"""What the parsers return, and what they raise."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..messages import Verdict


class ProtocolViolation(ValueError):
    """A reply fits no shape of the protocol. The message is what to tell the model."""


@dataclass(frozen=True, slots=True)
class AuthorReply:
    """A parsed author reply: ``code`` is empty for a final report.

    ``text`` is the reply without its reasoning: what is stored and resent.
    """

    text: str
    rationale: str
    code: str
    reasoning: str = ""

    @property
    def is_final(self) -> bool:
        return not self.code


@dataclass(frozen=True, slots=True)
class ReviewReply:
    verdict: Verdict
    comments: str
    reasoning: str = ""


def read_json(text: str) -> Any:
    """The JSON value a reply is (in a fence or not), or None."""
    text = text.strip()
    if fenced := re.fullmatch(r"(`{3,}|~{3,})[ \t]*\w*[ \t]*\n(.*?)\n?[ \t]*\1", text, re.DOTALL):
        text = fenced[2].strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
