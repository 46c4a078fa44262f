"""A reviewer's reply: its verdict, read so that nothing unreadable approves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..messages import Verdict
from .author import FENCE, Block, as_call
from .reasoning import split_reasoning
from .replies import ProtocolViolation, ReviewReply, read_json

_APPROVE_WORDS = r"approved?|approves|approval|lgtm|accept(?:ed)?|genehmigt|genehmige|freigegeben"
# not "revised" or a bare "revision": reviews of a revised step open with them
_REVISE_WORDS = (
    r"revise|revisions?[ \t]+(?:needed|required|requested|necessary)|needs?[ \t]+revision"
    r"|reject(?:ed)?|requests?[ _]changes|changes[ _]requested|überarbeiten|abgelehnt"
)
_APPROVE_WORD = re.compile(rf"(?:{_APPROVE_WORDS})$", re.IGNORECASE)
_CANDIDATE = re.compile(
    r"(?P<lead>[^\w\n]*(?:\d{1,2}[.)][ \t]+[^\w\n]*)?)"
    r"(?P<label>(?:[\w'’]+[ \t]+){0,3}?(?:verdict|decision|review|recommendation|assessment"
    r"|conclusion|status|result|outcome|urteil|entscheidung|ergebnis)"
    r"[*_`]*[ \t]*[:\-–—]+[ \t*_`]*)?"
    rf"(?P<prefix>(?:[\w'’]+[ \t]+){{0,4}}?)[*_`]*(?P<word>{_APPROVE_WORDS}|{_REVISE_WORDS})(?!\w)",
    re.IGNORECASE,
)
_SEGMENT_START = re.compile(r"^|(?<=\n)|(?<=[.!?])[ \t]+(?=\S)")
_SENTENCE_END = re.compile(r"[.!?;\n]")
_AFTER_WORD = re.compile(r"[*_`\s.:!,\-–—]*")
# the only words that may lead up to a verdict ("I can't approve", "Happy to approve")
_LEAD_IN = {
    *("i", "we", "i'm", "i've", "i'd", "i'll", "we'd", "we'll", "am", "is", "are", "be", "it"),
    *("it's", "this", "the", "step", "report", "code", "hereby", "fully", "gladly", "happy"),
    *("glad", "ready", "to", "can", "will", "shall", "do", "does", "also", "so", "therefore"),
    *("thus", "hence", "then", "definitely", "ok", "okay", "yes", "ich", "wir", "ist", "und"),
    *("not", "never", "no", "cannot", "can't", "cant", "couldn't", "won't", "wouldn't"),
    *("don't", "dont", "doesn't", "didn't", "shouldn't", "isn't", "unable", "yet", "still"),
    *("would", "could", "might", "may", "should", "must", "almost", "nearly", "nicht", "kein"),
    *("keine", "noch", "if", "once", "when", "after", "mostly", "partially", "partly"),
    *("largely", "tentatively", "generally", "maybe", "perhaps", "probably", "provisionally"),
}
_NEGATIONS = {
    *("not", "never", "no", "cannot", "can't", "cant", "couldn't", "won't", "wouldn't"),
    *("don't", "dont", "doesn't", "didn't", "shouldn't", "isn't", "unable", "nicht", "kein"),
    "keine",
}
# words that make an approval conditional, before it or soon after it ("APPROVE if …")
_CONDITIONS = {
    *("if", "once", "unless", "until", "pending", "provided", "providing", "assuming"),
    *("except", "excepting", "but", "however", "subject", "upon", "conditionally"),
    *("conditional", "contingent", "depends", "provisionally", "wenn", "falls", "sobald"),
    *("nachdem", "aber", "jedoch", "außer", "sofern"),
}
# a modal before it ("I would approve"), or a time word right after it ("approve after
# …"); later in the sentence a time word mostly describes the code ("runs after loading")
_MODALS = {"would", "could", "might", "may", "should", "i'd", "we'd", "almost", "nearly"}
_TIMES = {"when", "whenever", "after", "before"}
_DENIALS = {
    *("not", "never", "denied", "rejected", "withheld", "declined", "false", "pending"),
    *("required", "needed", "blocked", "nicht", "nein", "verweigert", "❌", "✗", "✘"),
}
_HEDGES = {
    *("mostly", "partially", "partly", "largely", "tentatively", "generally", "somewhat"),
    *("maybe", "perhaps", "probably", "likely", "kinda", "principle"),
}
_WITH_CHANGES = re.compile(
    r"\bwith\s+(?:\w+\s+)?(?:changes|fixes|corrections|modifications|edits|caveats"
    r"|reservations|conditions)\b",
    re.IGNORECASE,
)
_CAPS_REVISE = re.compile(r"(?<![\w-])(?:REVISE|REJECT(?:ED)?|ÜBERARBEITEN)(?![\w-])")
_NEGATED_APPROVAL = re.compile(
    r"(?:\bnot|\bnever|\bcannot|n't|\bunable to|\bwithout)\s+(?:\w+\s+){0,2}?approv"
    r"|\bapproval\s+(?:is\s+)?(?:not|withheld|denied)",
    re.IGNORECASE,
)
_ZH_LEAD = re.compile(
    r"^[^\w\n]*(?:(?:结论|审查结果|评审结果|审核结果|决定|评审意见|意见)[*_`]*\s*[:：]\s*[*_`]*)?"
)
_ZH_REVISE = re.compile(r"修改|驳回|拒绝|不通过|未通过|不批准|未批准|不能批准|无法批准|暂不")
_ZH_APPROVE = re.compile(r"批准|通过")
_ZH_CONDITION = re.compile(r"但|不过|如果|若|除非|之后|以后|前提|待|需要")
_NO_VERDICT = (
    "Your reply must start with the word APPROVE or REVISE. Reply again: the first "
    "word APPROVE or REVISE, then your comments."
)

_Kind = Literal["approve", "revise", "unsure"]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A verdict found in a reply: where it is, and whether its word says it plainly."""

    kind: _Kind
    start: int
    end: int
    plain: bool = True
    """False when the word is not the whole verdict (``I can't approve``, ``LGTM except``):
    the comments are then the whole reply."""


def parse_review(text: str) -> ReviewReply:
    """Find the first verdict; an approval the parser cannot read cleanly is not one."""
    reasoning, body = split_reasoning(text)
    if not body:
        if reasoning:
            raise ProtocolViolation(
                "Your reply held only reasoning and no verdict; it may have been "
                "cut off. Reply briefly: APPROVE or REVISE first, then your comments."
            )
        raise ProtocolViolation(
            "Your reply was empty. Start it with APPROVE or REVISE, then your comments."
        )
    verdict, comments = _json_verdict(body) or _text_verdict(_unwrap_fence(body))
    return ReviewReply(verdict, comments, reasoning)


def _text_verdict(body: str) -> tuple[Verdict, str]:
    candidates = _candidates(body) or _trailing(body)
    if not candidates:
        return _chinese_verdict(body)
    first = candidates[0]
    if first.kind == "unsure":
        raise ProtocolViolation(
            "Your verdict was hedged or conditional. Reply again: the first word APPROVE "
            "or REVISE, then your comments."
        )
    # Both verdicts, or an approval taken back later: REVISE, the reading that is safe
    # and keeps what the reviewer wanted changed (a re-prompt would cost a call to
    # reach the same place).
    if first.kind == "approve" and (
        any(c.kind == "revise" for c in candidates)
        or _CAPS_REVISE.search(body, first.end)
        or _NEGATED_APPROVAL.search(body)
    ):
        return "revise", body
    if not first.plain:
        return first.kind, body
    tail = _AFTER_WORD.match(body, first.end)
    before, after = body[: first.start].strip(), body[tail.end() if tail else first.end :]
    between = "\n" if first.start == 0 or body[first.start - 1] == "\n" else " "
    return first.kind, between.join(part for part in (before, after.strip()) if part)


def _candidates(body: str) -> list[_Candidate]:
    found: list[_Candidate] = []
    for segment in _SEGMENT_START.finditer(body):
        start = segment.end()
        match = _CANDIDATE.match(body, start)
        if match is None or not _counts(body, match, first=not body[:start].strip()):
            continue
        kind = _judge(body, match)
        if kind is not None:
            # "I'm happy to approve this step." reads badly without its verb; keep it whole
            plain = not match["prefix"] and (
                kind != "revise" or not _APPROVE_WORD.match(match["word"])
            )
            found.append(_Candidate(kind, start, match.end(), plain))
    return found


def _counts(body: str, match: re.Match[str], *, first: bool) -> bool:
    """Whether a verdict word starting a sentence is the reviewer's verdict."""
    prefix = _words(match["prefix"])
    if any(word not in _LEAD_IN for word in prefix):
        return False
    if first or match["label"]:
        return True
    word = match["word"]
    line_end = body.find("\n", match.end())
    alone = not re.search(r"\w", body[match.end() : None if line_end < 0 else line_end])
    emphasised = body[match.end() : match.end() + 1] in {"*", "_"}
    return word.isupper() or emphasised or alone or (bool(prefix) and prefix[0] in {"i", "we"})


def _judge(body: str, match: re.Match[str]) -> _Kind | None:
    """approve, revise, unsure, or None for a verdict word that is not a verdict."""
    prefix = _words(match["prefix"])
    negated = any(word in _NEGATIONS for word in prefix)
    if not _APPROVE_WORD.match(match["word"]):
        return None if negated else "revise"  # "no revisions needed" says nothing
    if negated or any(w in _CONDITIONS or w in _MODALS or w in _TIMES for w in prefix):
        return "revise"
    if question := re.match(r"[*_`]*[ \t]*\?", body[match.end() :]):
        # "Approve? Not yet." asks; only the answer could approve, and it is prose
        answer = _words(_sentence(body, match.end() + question.end()))[:3]
        return "revise" if any(w in _NEGATIONS or w in _DENIALS for w in answer) else "unsure"
    window = _sentence(body, match.end())
    following = _words(window)[:4]
    next_word = following[0] if following else ""
    bare_no = re.match(r"[^\w]*(?:no|nein)\b(?![ \t]+\w)", window, re.IGNORECASE)  # "Approved: no."
    if (
        next_word in _DENIALS
        or next_word in _TIMES
        or bare_no
        or any(word in _CONDITIONS for word in following)
        or _WITH_CHANGES.search(window)
    ):
        return "revise"
    if any(word in _HEDGES for word in (*prefix, *following)):
        return "unsure"
    return "approve"


def _sentence(body: str, start: int) -> str:
    end = _SENTENCE_END.search(body, start)
    return body[start : end.start() if end else len(body)]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+|[❌✗✘]", text.replace("’", "'").lower())


def _trailing(body: str) -> list[_Candidate]:
    """AutoGen-style prompts end with the word: "... looks right. APPROVED"."""
    match = re.search(r"(?<![\w-])[*_`]*(APPROVED?|REVISE)[*_`]*[.!]?\s*$", body)
    if match is None:
        return []
    sentence = re.split(r"[.!?;\n]", body[: match.start()])[-1]
    words = _words(sentence)
    if match[1] == "REVISE":
        return [_Candidate("revise", match.start(), match.end())]
    if any(w in _NEGATIONS or w in _CONDITIONS or w in _MODALS for w in words):
        return [_Candidate("revise", match.start(), match.end(), plain=False)]
    return [_Candidate("approve", match.start(), match.end())]


def _chinese_verdict(body: str) -> tuple[Verdict, str]:
    """批准 / 修改 opening the reply; anything else in Chinese is not a verdict."""
    lead = _ZH_LEAD.match(body)
    start = lead.end() if lead else 0
    sentence = re.split(r"[。！？!?\n]", body[start:])[0]
    clause = re.split(r"[，,；;：:]", sentence)[0]
    comments = body[start + len(clause) :].lstrip("。！!，,；;：: \n")
    if _ZH_REVISE.search(clause):
        return "revise", comments
    if _ZH_APPROVE.match(clause.strip("*_` ")):
        if _ZH_CONDITION.search(sentence[len(clause) :]) or _ZH_REVISE.search(sentence):
            return "revise", body
        return "approve", comments
    raise ProtocolViolation(_NO_VERDICT)


def _json_verdict(body: str) -> tuple[Verdict, str] | None:
    data = read_json(body)
    if not isinstance(data, dict):
        return None
    if call := as_call(data):  # a review tool call, printed
        data = call.arguments
    fields = {str(k).lower(): v for k, v in data.items()}
    value = next((fields[k] for k in ("verdict", "decision", "review") if k in fields), None)
    if value is None and isinstance(fields.get("approved"), bool):
        value = "approve" if fields["approved"] else "revise"
    if value is None:
        return None
    comments = next(
        (
            str(fields[k]).strip()
            for k in ("comments", "comment", "feedback", "reason")
            if k in fields
        ),
        "",
    )
    word = str(value).strip(" *_.!").lower()
    if word in {"approve", "approved", "lgtm", "accept", "accepted"}:
        return "approve", comments
    if word in {"revise", "revised", "reject", "rejected", "request_changes"}:
        return "revise", comments
    raise ProtocolViolation(
        f'Your verdict "{value}" is not APPROVE or REVISE. Reply again with APPROVE or '
        "REVISE first, then your comments."
    )


def _unwrap_fence(body: str) -> str:
    """A verdict some models fence: the block's content, then whatever followed it."""
    lines = body.splitlines()
    match = FENCE.match(lines[0])
    if match is None:
        return body
    block = Block("", "", match["fence"])
    end = next((i for i, line in enumerate(lines[1:], 1) if block.closes(line)), len(lines))
    return "\n".join(lines[1:end] + lines[end + 1 :]).strip() or body
