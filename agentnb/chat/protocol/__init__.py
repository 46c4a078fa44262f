"""The reply protocol: what authors and reviewers must write, read tolerantly.

Where the endpoint takes tools, replies are calls (:mod:`.tools`); the text
protocol below is for the others, and for models that answer in text anyway.

An author's reply with one or more ```python blocks proposes one step (the blocks
joined); a reply without one is the final report. A reviewer's verdict, APPROVE or
REVISE, comes first, then comments.

Real models stray from that, so the parser reads what they actually write, and never
turns what it cannot read into an approval:

- Reasoning (``<think>``, ``<thinking>``, ``<reasoning>``: closed, empty, or left open
  by a token limit; gpt-oss's analysis channel) is set aside as ``reasoning``. No code,
  verdict or report is taken from it, and ``text`` / ``comments``, which are stored and
  resent to the models, leave it out.
- Authors: untagged, ``py``, ``ipython`` and ``pycon`` fences, an unclosed last fence,
  fences under list items or in blockquotes, one-line fences, a ```markdown wrapper. An
  untagged block of output after the code is not code; ``>>>`` prompts and list
  indentation are taken out of the code. A tool call printed as text (JSON, in a fence
  or not, ``<tool_call>``, Llama's ``<|python_tag|>``) is the step, or the report for a
  report-like call, never a report made of JSON.
- Reviewers: the first verdict counts: a first word, a ``Verdict:`` line, ``I approve``,
  a JSON or fenced verdict, a last word in capitals; German and Chinese verdict words.
  A negated, conditional or contradicted approval is REVISE; a hedged one, or none at
  all, is a :class:`ProtocolViolation`, which gets the corrective re-prompt.
"""

from __future__ import annotations

from .author import parse_author
from .reasoning import split_reasoning
from .replies import AuthorReply, ProtocolViolation, ReviewReply
from .review import parse_review
from .tools import as_text, author_from_calls, review_from_calls, tools_for

__all__ = [
    "AuthorReply",
    "ProtocolViolation",
    "ReviewReply",
    "as_text",
    "author_from_calls",
    "parse_author",
    "parse_review",
    "review_from_calls",
    "split_reasoning",
    "tools_for",
]
