"""The reply protocol: what authors and reviewers must write, read tolerantly.

An author's reply with one or more ```python blocks proposes one step (the blocks
joined); a reply without one is the final report. A reviewer's first word is
APPROVE or REVISE (any case, markdown emphasis allowed), then comments. Small
models are sloppy, so the parser accepts fences without a language tag, ``py``
and ``ipython`` tags, an unclosed last fence, ``APPROVED`` / ``Verdict: REVISE``,
and says precisely what was wrong when a reply fits neither shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .messages import Verdict

__all__ = [
    "AuthorReply",
    "ProtocolViolation",
    "ReviewReply",
    "parse_author",
    "parse_review",
]

_PYTHON_TAGS = {"", "python", "python3", "py", "ipython", "ipython3", "pycon"}
_FENCE = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_APPROVE = {"approve", "approved", "approval", "lgtm"}
_REVISE = {"revise", "revised", "revision", "reject", "rejected"}
_LEAD = re.compile(r"^[\s>#*_`\-\[\(]*")
_TRAILING = re.compile(r"(?<![\w-])[*_`]*(APPROVED?|REVISE)[*_`]*[.!]?\s*$")
_LABEL = re.compile(r"^(verdict|decision|review)\s*[:\-]\s*", re.IGNORECASE)


class ProtocolViolation(ValueError):
    """A reply fits no shape of the protocol. The message is what to tell the model."""


@dataclass(frozen=True, slots=True)
class AuthorReply:
    """A parsed author reply: ``code`` is empty for a final report."""

    text: str
    rationale: str
    code: str

    @property
    def is_final(self) -> bool:
        return not self.code


@dataclass(frozen=True, slots=True)
class ReviewReply:
    verdict: Verdict
    comments: str


def parse_author(text: str) -> AuthorReply:
    """Split an author's reply into rationale and code (empty code: final report)."""
    if not text.strip():
        raise ProtocolViolation(
            "Your reply was empty. Reply with one ```python block for the next step, "
            "or with the final report (no code) if the task is done."
        )
    blocks, prose, other_code = _split_fences(text)
    code = "\n\n".join(b.strip("\n") for b in blocks if b.strip()).strip("\n")
    rationale = "\n".join(prose).strip()
    if not code and other_code and not rationale:
        raise ProtocolViolation(
            "Your reply held only code in another language. Write the step as one "
            "```python block, or write the final report as plain markdown."
        )
    return AuthorReply(text=text.strip(), rationale=rationale, code=code)


def _split_fences(text: str) -> tuple[list[str], list[str], bool]:
    """Python blocks, the lines outside any block, and whether other fences occurred."""
    blocks: list[str] = []
    prose: list[str] = []
    other = False
    current: list[str] | None = None
    fence = ""
    is_python = False
    for line in text.splitlines():
        if current is None:
            match = _FENCE.match(line)
            if match:
                fence = match["fence"]
                tag = match["info"].strip().split()[0].lower() if match["info"].strip() else ""
                is_python = tag in _PYTHON_TAGS
                other = other or not is_python
                current = []
            else:
                prose.append(line)
        elif line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            if is_python:
                blocks.append("\n".join(current))
            current = None
        else:
            current.append(line)
    if current is not None and is_python:  # the reply ended inside a block
        blocks.append("\n".join(current))
    return blocks, prose, other


def parse_review(text: str) -> ReviewReply:
    """Find the verdict: the first word, or a ``Verdict:`` line, or a lone last word."""
    stripped = text.strip()
    if not stripped:
        raise ProtocolViolation(
            "Your reply was empty. Start it with APPROVE or REVISE, then your comments."
        )
    lines = stripped.splitlines()
    verdict = _verdict_of(lines[0])
    if verdict:
        comments = _after_first_word(stripped)
        return ReviewReply(verdict, comments)
    for i, line in enumerate(lines):
        if _LABEL.match(_LEAD.sub("", line)) and (verdict := _verdict_of(line)):
            rest = "\n".join(lines[:i] + lines[i + 1 :]).strip()
            return ReviewReply(verdict, rest)
    if verdict := _verdict_of(lines[-1], whole=True):
        return ReviewReply(verdict, "\n".join(lines[:-1]).strip())
    # AutoGen-style prompts end with the word: "... looks right. APPROVED"
    if match := _TRAILING.search(stripped):
        verdict = "approve" if match[1].startswith("APPROV") else "revise"
        return ReviewReply(verdict, stripped[: match.start()].strip())
    raise ProtocolViolation(
        "Your reply must start with the word APPROVE or REVISE. Reply again: the first "
        "word APPROVE or REVISE, then your comments."
    )


def _verdict_of(line: str, *, whole: bool = False) -> Verdict | None:
    body = _LABEL.sub("", _LEAD.sub("", line))
    words = re.findall(r"[A-Za-z]+", body)
    if not words or (whole and len(words) > 1):
        return None
    word = words[0].lower()
    if word in _APPROVE:
        return "approve"
    if word in _REVISE:
        return "revise"
    return None


def _after_first_word(text: str) -> str:
    body = _LABEL.sub("", _LEAD.sub("", text))
    rest = re.sub(r"^[A-Za-z]+[*_`]*[\s.:!,\-–—]*", "", body, count=1)
    return rest.strip()
