"""What each agent sees. Not the whole history: a brief, rebuilt for every call.

A model remembers nothing between calls, so every prompt carries all its role
needs for the call in front of it; what it does not need is sent once, where it
is needed. Every prompt has the task and the session's history; the files note
goes where code is written or judged. Then, per kind of call:

- **An author** (proposing a step, revising one, or writing the final report)
  sees the data summary whole (head, numeric stats) until a step has run without
  error, and after that a compact schema (shape, dtypes, numeric ranges, missing
  values): its steps' outputs show the rest. Its latest step comes whole: code,
  output, the reviewers' notes. An earlier step comes as its definitions (the
  statements that bind or change names, which later code builds on; prints and
  plots left out) and a short excerpt of its output (the results a report
  cites); a failed step that a later one superseded is one line. Then its
  pending proposal and the feedback on it.
- **A reviewer of a proposed step** judges that step: it sees the schema, the
  earlier steps as their definitions (a failed one as one line), the latest
  step's definitions and a cut of its output (a failed one: its code and the
  error, which the proposal should fix), and the proposal. It judged each
  earlier step's code before it ran, so a step's whole code comes only where it
  failed or the user edited it.
- **A reviewer of the final report** sees what the report rests on: the whole
  data summary, every step's output, the report; a step's code as its
  definitions, as in a step review. No files note: there is no code to judge.

The prompt therefore grows with the number of steps, not with the square of the
turns, and an old traceback is never sent again.

Data and step outputs are untrusted: they reach the models inside ``<data>``
blocks, which the prompts say hold content, never instructions. Nothing inside a
block can close it: a ``<data>`` or ``</data>`` tag in the content is escaped.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..kernel.outputs import truncate_middle
from ..models.base import ChatMessage, ContentPart
from .messages import Step
from .roles import Role

__all__ = [
    "Brief",
    "ContextLimits",
    "author_prompt",
    "data_block",
    "data_schema",
    "definitions",
    "review_prompt",
    "selector_prompt",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextLimits:
    """Character budgets of the parts of a prompt."""

    latest_output: int = 4_000
    earlier_output: int = 300
    """What an author sees of an earlier step's output: the results a report cites."""
    review_latest_output: int = 1_200
    """What a reviewer judging a proposed step sees of the latest result: enough to
    check the proposal follows from it (the final report is judged on full results)."""
    report_earlier_output: int = 1_200
    """What a reviewer judging the final report sees of each earlier step's output."""
    notes: int = 300
    """The reviewers' comments on the latest step, shown to its authors."""
    earlier_code: int = 1_500
    data_summary: int = 4_000
    data_schema: int = 1_500
    """The compact schema that stands for the data summary once a step has run."""
    history: int = 3_000
    images: int = 1
    """Plot images attached for models that accept images (the most recent ones)."""
    image_bytes: int = 1_500_000
    full_steps: int | None = None
    """Steps shown with their code; older ones are one line each (None: all)."""

    def compacted(self) -> ContextLimits:
        """Limits for a model whose context window the prompt overflowed: the oldest
        steps as one line each, shorter outputs, summary and history."""
        return replace(
            self,
            latest_output=min(self.latest_output, 1_500),
            earlier_output=0,
            review_latest_output=min(self.review_latest_output, 600),
            report_earlier_output=min(self.report_earlier_output, 300),
            earlier_code=min(self.earlier_code, 400),
            data_summary=min(self.data_summary, 1_500),
            data_schema=min(self.data_schema, 600),
            history=min(self.history, 800),
            images=0,
            full_steps=2,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Brief:
    """The facts every prompt starts from."""

    task: str
    data_summary: str = ""
    files: str = ""
    """Where the kernel's code may write files, when it may not write everywhere."""
    history: str = ""
    """What earlier runs of the same session found (a later ``%%agents`` cell)."""
    steps: Sequence[Step] = ()


View = Literal["author", "step_review", "report_review"]
"""Who a brief is rendered for: an author, a reviewer of a proposed step, a reviewer
of the final report."""


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    ticks = "`" * (longest + 1)
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


# A tag a model could read as opening or closing a data block: any case, spaces
# or invisible characters inside, look-alike brackets.
_DATA_TAG = re.compile(
    r"[<\uff1c\u2039\u2329\u27e8\u3008]([\s\u00ad\u200b-\u200f\u2060-\u2064\ufeff]*/?"
    r"[\s\u00ad\u200b-\u200f\u2060-\u2064\ufeff]*data\b)",
    re.IGNORECASE,
)


def data_block(text: str, *, inline: bool = False) -> str:
    """``text`` fenced as data, between ``<data>`` tags that no text inside can close."""
    body = _DATA_TAG.sub(r"&lt;\1", text.strip())
    return f"<data>{body}</data>" if inline else f"<data>\n{body}\n</data>"


# --- the data: the whole summary, or its schema ------------------------------------

_STATS = re.compile(r"^(?P<label>.+?)\s+\S+\s+\S+\s+(?P<min>\S+)\s+(?P<max>\S+)$")


def data_schema(summary: str) -> str:
    """The compact form of a data summary (``agentnb.kernel.data.summary_code``): each
    DataFrame's shape, dtypes, numeric ranges (min–max) and missing values, without its
    head and statistics; other values as they are (the summary bounds their repr). A
    summary of another shape (an error, say) is returned as it is."""
    if not summary.lstrip().startswith("### "):
        return summary
    kept: list[str] = []
    section = ""  # "" (a header or a value's repr), "head", "stats"
    ranges: list[str] = []
    frame = False
    for line in summary.strip().splitlines():
        if line.startswith("### "):
            section, frame = "", ": DataFrame," in line
            kept.append(line)
        elif not frame:
            if line.strip():
                kept.append(line)
        elif line == "head:":
            section = "head"
        elif line == "numeric summary:":
            section = "stats"
        elif line.startswith(("dtypes: ", "missing values: ", "(labels over ")):
            if section == "stats" and ranges:
                kept.append("ranges: " + ", ".join(ranges))
            section, ranges = "", []
            kept.append(line)
        elif section == "stats" and (match := _STATS.match(line.strip())):
            if match["min"] != "min":  # not the table's header line
                ranges.append(f"{match['label']} {match['min']}–{match['max']}")
        elif section == "" and line.strip():
            kept.append(line)
    return "\n".join(kept)


def _data_part(brief: Brief, limits: ContextLimits, view: View) -> str:
    whole = view == "report_review" or (
        view == "author" and not any(s.execution.ok for s in brief.steps)
    )
    if whole:
        summary = truncate_middle(brief.data_summary.strip(), limits.data_summary)
        return f"## Data\n{data_block(summary)}"
    schema = truncate_middle(data_schema(brief.data_summary.strip()), limits.data_schema)
    return f"## Data (schema)\n{data_block(schema)}"


# --- the steps ---------------------------------------------------------------------

_BINDS = (
    ast.Import,
    ast.ImportFrom,
    ast.Assign,
    ast.AnnAssign,
    ast.AugAssign,
    ast.Delete,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)


# methods that change their object where it stands (pandas, lists, dicts, sets)
_MUTATORS = frozenset(
    {
        "insert",
        "update",
        "append",
        "extend",
        "pop",
        "remove",
        "sort",
        "clear",
        "setdefault",
        "add",
        "discard",
    }
)


def _changes(node: ast.AST) -> bool:
    """A call that changes its object (``inplace=``, ``.insert``, ``.append`` …) or
    an assignment expression."""
    if isinstance(node, ast.NamedExpr):
        return True
    if not isinstance(node, ast.Call):
        return False
    if any(k.arg == "inplace" for k in node.keywords):
        return True
    return isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS


def _binds(node: ast.stmt) -> bool:
    """A statement that binds or changes a name later code may use: an import, an
    assignment, a definition, or a call or block that changes something."""
    if isinstance(node, _BINDS):
        return True
    return any(isinstance(inner, _BINDS) or _changes(inner) for inner in ast.walk(node))


def definitions(code: str) -> str | None:
    """The statements of ``code`` that bind or change names (imports, assignments,
    functions, classes, blocks that assign, calls that change their object), in
    order: what later code builds on. Prints, plots and bare expressions are left
    out. ``None`` when the code is not plain Python (a magic, say)."""
    try:
        # a step may await at the top level, as in a notebook cell
        flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        tree = compile(code, "<step>", "exec", flags=flags, dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = code.splitlines()
    spans: list[list[int]] = []
    for node in tree.body:
        if not _binds(node):
            continue
        decorators = getattr(node, "decorator_list", ())
        start = min([node.lineno, *(d.lineno for d in decorators)])
        end = node.end_lineno or node.lineno
        if spans and start <= spans[-1][1]:  # two statements on one line
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return "\n".join("\n".join(lines[a - 1 : b]) for a, b in spans)


def _failure(step: Step) -> str:
    """How a failed step ended, in one line: ``failed with <data>KeyError: …</data>``."""
    ex = step.execution
    err = ex.error
    what = f"{err.get('ename', 'Error')}: {err.get('evalue', '')}" if err else ex.status
    return "failed with " + data_block(truncate_middle(str(what), 200), inline=True)


def _one_line(step: Step, *, superseded: bool) -> str:
    ex = step.execution
    line = f"### Step {step.number} ({ex.status}): {_failure(step)}"
    if ex.restarted:
        line += "; the kernel was restarted, so the names of earlier steps are gone"
    return line + ("; superseded." if superseded else ".")


def _code_part(step: Step, *, whole: bool, latest: bool, limits: ContextLimits) -> str:
    """The step's heading and its code: all of it (an earlier step's cut), or its
    definitions."""
    head = f"### Step {step.number} ({step.execution.status})"
    defined = None if whole else definitions(step.code)
    if defined is None:  # asked for, or not plain Python (a magic, say)
        code = step.code if latest else truncate_middle(step.code, limits.earlier_code)
        return f"{head}\n{_fence(code, 'python')}"
    if not defined.strip():
        return f"{head}, no definitions"
    if defined.strip() != step.code.strip():
        head += ", definitions only"
    return f"{head}\n{_fence(truncate_middle(defined, limits.earlier_code), 'python')}"


def _step_block(
    step: Step, *, view: View, latest: bool, superseded: bool, limits: ContextLimits
) -> str:
    ex = step.execution
    if superseded or (view == "step_review" and not latest and not ex.ok):
        return _one_line(step, superseded=superseded)
    if view == "author":
        # its own latest step whole; an earlier one as what later code builds on
        whole = latest or not ex.ok
        output = limits.latest_output if latest else limits.earlier_output
    else:
        # The reviewer judged each step's code before it ran: it sees the whole code
        # again only where the step failed or the user changed it.
        whole = not ex.ok or step.edited
        if view == "report_review":  # what the report rests on: every result
            output = limits.latest_output if latest else limits.report_earlier_output
        elif not ex.ok and latest:
            # the proposal in front of it fixes this: what failed, not the whole output
            block = _code_part(step, whole=True, latest=True, limits=limits)
            return f"{block}\n{_failure(step)}"
        else:
            output = limits.review_latest_output if latest else 0
    block = _code_part(step, whole=whole, latest=latest, limits=limits)
    if output:
        block += f"\nOutput:\n{data_block(ex.to_model_text(output))}"
    notes = [r for r in step.reviews if not r.endswith(": -")]
    if view == "author" and latest and notes and limits.notes:
        block += "\nReviewers: " + truncate_middle(" ".join(notes), limits.notes)
    return block


def _brief_text(brief: Brief, limits: ContextLimits, view: View) -> str:
    parts = [f"## Task\n{brief.task.strip()}"]
    if brief.data_summary:
        parts.append(_data_part(brief, limits, view))
    if brief.files and view != "report_review":  # where code may write: no code here
        parts.append(f"## Files\n{brief.files}")
    if brief.history:
        parts.append(
            f"## Earlier in this session\n{truncate_middle(brief.history.strip(), limits.history)}"
        )
    if brief.steps:
        last = len(brief.steps) - 1
        blocks = []
        for i, step in enumerate(brief.steps):
            if limits.full_steps is not None and i <= last - limits.full_steps:
                first = next((line for line in step.code.splitlines() if line.strip()), "")
                blocks.append(
                    f"### Step {step.number} ({step.execution.status}): "
                    f"`{truncate_middle(first.strip(), 80)}` …"
                )
                continue
            later_ok = any(s.execution.ok for s in brief.steps[i + 1 :])
            superseded = not step.execution.ok and i < last and later_ok
            blocks.append(
                _step_block(step, view=view, latest=i == last, superseded=superseded, limits=limits)
            )
        parts.append("## Steps so far\n" + "\n\n".join(blocks))
    return "\n\n".join(parts)


def _images(steps: Sequence[Step], limits: ContextLimits) -> list[ContentPart]:
    """The most recent plots, as image parts."""
    found: list[ContentPart] = []
    for step in reversed(steps):
        for out in reversed(step.outputs):
            data = out.get("data") or {}
            png = data.get("image/png")
            if isinstance(png, str) and len(png) * 3 // 4 <= limits.image_bytes:
                found.append({"type": "image_url", "image_url": {"url": _data_uri(png)}})
            if len(found) >= limits.images:
                return found[::-1]
    return found[::-1]


def _data_uri(b64: str) -> str:
    return "data:image/png;base64," + "".join(b64.split())


def _user(text: str, images: list[ContentPart]) -> ChatMessage:
    if not images:
        return ChatMessage("user", text)
    return ChatMessage("user", ({"type": "text", "text": text}, *images))


def author_prompt(
    role: Role,
    brief: Brief,
    *,
    proposal: str = "",
    feedback: Sequence[str] = (),
    vision: bool = False,
    limits: ContextLimits | None = None,
    tools: bool = False,
) -> list[ChatMessage]:
    """The prompt of an author: the brief, then its pending proposal and the feedback on it."""
    limits = limits or ContextLimits()
    text = _brief_text(brief, limits, "author")
    if proposal:
        text += f"\n\n## Your proposal\n{proposal.strip()}"
    if feedback:
        text += "\n\n## Feedback\n" + "\n\n".join(f.strip() for f in feedback)
    if feedback and proposal:
        ask = "Revise your proposal to address the feedback."
    elif brief.steps:
        ask = "Propose the next step, or write the final report if the task is answered."
    else:
        ask = "Propose the first step."
    text += f"\n\n---\n{ask}"
    images = _images(brief.steps, limits) if vision else []
    return [ChatMessage("system", role.instructions(tools)), _user(text, images)]


def review_prompt(
    role: Role,
    brief: Brief,
    *,
    author: str,
    step: int | None,
    text: str,
    code: str = "",
    vision: bool = False,
    limits: ContextLimits | None = None,
    tools: bool = False,
) -> list[ChatMessage]:
    """The prompt of a reviewer judging a proposed step (``step``) or the final report."""
    limits = limits or ContextLimits()
    body = _brief_text(brief, limits, "report_review" if step is None else "step_review")
    if step is None:
        body += f"\n\n## Final report by {author}\n{text.strip()}"
        body += "\n\n---\nReview the final report against the results above."
    else:
        rationale = text.strip()
        body += f"\n\n## Proposed step {step} by {author}\n"
        body += (rationale + "\n" if rationale else "") + _fence(code, "python")
        body += "\n\n---\nReview this step before it runs."
    images = _images(brief.steps, limits) if vision else []
    return [ChatMessage("system", role.instructions(tools)), _user(body, images)]


def selector_prompt(
    system: str, brief_task: str, candidates: Sequence[Role], last: str
) -> list[ChatMessage]:
    """The prompt of the model that picks the next speaker among ``candidates``."""
    names = "\n".join(f"- {r.name}: {r.description}" for r in candidates)
    text = (
        f"## Task\n{brief_task.strip()}\n\n## Last message\n{truncate_middle(last, 1_500)}\n\n"
        f"## Who speaks next?\n{names}\n\nReply with one name."
    )
    return [ChatMessage("system", system), ChatMessage("user", text)]
