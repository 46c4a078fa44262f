"""What each agent sees. Not the whole history: a brief, rebuilt for every call.

An author sees the task, the data summary, the steps so far (earlier ones as
code with a short excerpt of their output, failed ones superseded by later steps
as one line, the latest in full) and the feedback on its current proposal. A
reviewer sees the same brief and the proposal or final report to judge. The
prompt therefore grows with the number of steps, not with the square of the
turns, and an old traceback is never sent again.

Data and step outputs are untrusted: they reach the models inside ``<data>``
blocks, which the prompts say hold content, never instructions. Nothing inside a
block can close it: a ``<data>`` or ``</data>`` tag in the content is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..kernel.outputs import truncate_middle
from ..models.base import ChatMessage, ContentPart
from .messages import Step
from .roles import Role

__all__ = [
    "Brief",
    "ContextLimits",
    "author_prompt",
    "data_block",
    "review_prompt",
    "selector_prompt",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextLimits:
    """Character budgets of the parts of a prompt."""

    latest_output: int = 4_000
    earlier_output: int = 300
    review_latest_output: int = 1_200
    """What a reviewer judging a proposed step sees of the latest result: enough to
    check the proposal follows from it (the final report is judged on full results)."""
    review_earlier_output: int = 0
    """0: a reviewer of a step sees earlier steps as code and status only."""
    notes: int = 300
    """The reviewers' comments on the latest step, shown to its authors."""
    earlier_code: int = 1_500
    data_summary: int = 4_000
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
            review_earlier_output=0,
            earlier_code=min(self.earlier_code, 400),
            data_summary=min(self.data_summary, 1_500),
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


def _step_block(
    step: Step, *, latest: bool, superseded: bool, limits: ContextLimits, output: int
) -> str:
    ex = step.execution
    head = f"### Step {step.number} ({ex.status})"
    if superseded:
        err = ex.error
        what = f"{err.get('ename', 'Error')}: {err.get('evalue', '')}" if err else ex.status
        what = data_block(truncate_middle(str(what), 200), inline=True)
        return f"{head}: failed with {what}; superseded."
    code = step.code if latest else truncate_middle(step.code, limits.earlier_code)
    block = f"{head}\n{_fence(code, 'python')}"
    if output:
        block += f"\nOutput:\n{data_block(ex.to_model_text(output))}"
    notes = [r for r in step.reviews if not r.endswith(": -")]
    if latest and notes and limits.notes:
        block += "\nReviewers: " + truncate_middle(" ".join(notes), limits.notes)
    return block


def _brief_text(brief: Brief, limits: ContextLimits, *, reviewing_step: bool = False) -> str:
    parts = [f"## Task\n{brief.task.strip()}"]
    if brief.data_summary:
        summary = truncate_middle(brief.data_summary.strip(), limits.data_summary)
        parts.append(f"## Data\n{data_block(summary)}")
    if brief.files:
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
            if reviewing_step:
                output = limits.review_latest_output if i == last else limits.review_earlier_output
            else:
                output = limits.latest_output if i == last else limits.earlier_output
            blocks.append(
                _step_block(
                    step, latest=i == last, superseded=superseded, limits=limits, output=output
                )
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
    text = _brief_text(brief, limits)
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
    body = _brief_text(brief, limits, reviewing_step=step is not None)
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
