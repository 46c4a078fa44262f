"""An author's reply: a step (fenced code, or a tool call printed as text) or the
final report."""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from .reasoning import END_TOKENS, split_reasoning
from .replies import AuthorReply, ProtocolViolation, read_json

_PYTHON_TAGS = {"", "python", "python3", "py", "ipython", "ipython3", "pycon"}
_MARKDOWN_TAGS = {"markdown", "md"}
FENCE = re.compile(
    r"^(?P<prefix>(?:[ \t]*>)*[ \t]*(?:(?:[-*+]|\d{1,2}[.)])[ \t]+)?)"
    r"(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$"
)
_ONE_LINE_FENCE = re.compile(
    r"^(?:[ \t]*>)*[ \t]*(?P<fence>`{3,})(?:python3?|py|ipython3?)[ \t]+(?P<code>\S.*?)[ \t]*"
    r"(?P=fence)[ \t]*$",
    re.IGNORECASE,
)
_OUTPUT_INTRO = re.compile(
    r"\b(?:output|outputs|expected result|should (?:print|output|show|see|look like)"
    r"|(?:will|would) (?:print|output|show|look like)|prints something like)\b[^\n]*:\W*$",
    re.IGNORECASE,
)
_PROMPT = re.compile(r"^[ \t]*(?:>>>|In \[\d*\]:|\.\.\.:|\.\.\.)(?: |$)(?P<code>.*)$")
_CONSOLE = re.compile(r"^[ \t]*(?:>>>|In \[\d*\]:)(?: |$)")
_EMPTY = (
    "Your reply was empty. Reply with one ```python block for the next step, "
    "or with the final report (no code) if the task is done."
)
_ONLY_REASONING = (
    "Your reply held only reasoning and no answer; it may have been cut off. "
    "Reply briefly: one ```python block for the next step, or the final report (no code)."
)


@dataclass
class Block:
    """A fenced block being read: its tag, its fence and how its lines are indented."""

    tag: str
    intro: str
    fence: str = "```"
    quotes: int = 0
    indent: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def body(self) -> str:
        return "\n".join(self.lines)

    def closes(self, line: str) -> bool:
        char, count = self.fence[0], len(self.fence)
        return re.fullmatch(rf"[ \t>]*{re.escape(char)}{{{count},}}[ \t]*", line) is not None

    def add(self, line: str) -> bool:
        """Add a line; True when it ended the block with a fence at its end."""
        line = _unquote(line, self.quotes)
        spaces = len(line) - len(line.lstrip(" "))
        line = line[min(spaces, self.indent) :]
        ended = line.rstrip().endswith(self.fence) and bool(line.strip().strip(self.fence[0]))
        if ended:  # "print(1)```": no Python line ends in backticks
            line = line.rstrip()[: -len(self.fence)].rstrip()
        self.lines.append(line)
        return ended


def parse_author(text: str) -> AuthorReply:
    """Split an author's reply into rationale and code (empty code: final report)."""
    reasoning, body = split_reasoning(text)
    if not body:
        raise ProtocolViolation(_ONLY_REASONING if reasoning else _EMPTY)
    reply = _printed_tool_call(body) or _markdown_reply(_unwrap_markdown(body))
    return dataclasses.replace(reply, reasoning=reasoning)


def _markdown_reply(body: str) -> AuthorReply:
    blocks, prose = _split_fences(body)
    rationale = "\n".join(prose).strip()
    code_blocks: list[Block] = []
    calls: list[_Call] = []
    other = False
    for block in blocks:
        found = _tool_calls(block.body) if block.tag in {*_PYTHON_TAGS, "json"} else None
        if found:
            calls += found
        elif block.tag in _PYTHON_TAGS and not (code_blocks and _is_output(block)):
            code_blocks.append(block)
        else:
            other = other or block.tag not in _PYTHON_TAGS
    code = "\n\n".join(c for b in code_blocks if (c := _clean_code(b.body)))
    if not code and calls:
        return _from_calls(calls, rationale)
    if not code and other and not rationale:
        raise ProtocolViolation(
            "Your reply held only code in another language. Write the step as one "
            "```python block, or write the final report as plain markdown."
        )
    return AuthorReply(text=body, rationale=rationale, code=code)


def _split_fences(text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks, and the lines outside any block."""
    blocks: list[Block] = []
    prose: list[str] = []
    current: Block | None = None
    for line in text.splitlines():
        if current is not None:
            if current.closes(line) or current.add(line):
                blocks.append(current)
                current = None
        elif one_line := _ONE_LINE_FENCE.match(line):
            blocks.append(Block("python", _last_line(prose), lines=[one_line["code"]]))
        elif match := FENCE.match(line):
            current = _open_block(match, _last_line(prose))
        else:
            prose.append(line)
    if current is not None:  # the reply ended inside a block
        blocks.append(current)
    return blocks, prose


def _open_block(match: re.Match[str], intro: str) -> Block:
    info = match["info"].strip()
    tag = info.split()[0].lower() if info else ""
    prefix = match["prefix"]
    quotes = prefix.count(">")
    # content lines of a list item or quote are indented as far as the fence is
    indent = len(re.sub(r"[-*+]|\d{1,2}[.)]", lambda m: " " * len(m[0]), _unquote(prefix, quotes)))
    return Block(tag, intro, match["fence"], quotes, indent)


def _unquote(line: str, quotes: int) -> str:
    for _ in range(quotes):
        stripped = line.lstrip(" \t")
        if not stripped.startswith(">"):
            break
        line = stripped[2:] if stripped.startswith("> ") else stripped[1:]
    return line


def _last_line(lines: list[str]) -> str:
    return next((line for line in reversed(lines) if line.strip()), "")


def _is_output(block: Block) -> bool:
    """An untagged block after the code that shows what it prints, not more code."""
    if block.tag != "":
        return False
    return bool(_OUTPUT_INTRO.search(block.intro)) or not _looks_like_code(block.body)


def _looks_like_code(text: str) -> bool:
    try:
        tree = ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError):
        return False
    return not all(isinstance(s, ast.Expr) and _is_literal(s.value) for s in tree.body)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _clean_code(code: str) -> str:
    """The code without console prompts or the indentation of a list item."""
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if _CONSOLE.match(first):  # real code never starts with a prompt; unprompted lines are output
        lines = [m["code"] for line in lines if (m := _PROMPT.match(line))]
    return textwrap.dedent("\n".join(lines)).strip("\n")


def _unwrap_markdown(body: str) -> str:
    """The reply inside a ```markdown fence that wraps the rest of it."""
    lines = body.splitlines()
    start = next((i for i, line in enumerate(lines) if FENCE.match(line)), None)
    if start is None:
        return body
    match = FENCE.match(lines[start])
    assert match is not None
    if match["info"].strip().lower() not in _MARKDOWN_TAGS:
        return body
    wrapper = Block("markdown", "", match["fence"])
    inner = lines[start + 1 :]
    while inner and not inner[-1].strip():
        inner.pop()
    # the last fence closes the wrapper only if the fences inside it pair up
    if inner and wrapper.closes(inner[-1]):
        fences = sum(1 for line in inner[:-1] if FENCE.match(line) or wrapper.closes(line))
        if fences % 2 == 0:
            inner.pop()
    return "\n".join(lines[:start] + inner).strip()


# --- tool calls printed as text ------------------------------------------------------

_CODE_KEYS = ("code", "source", "python", "script", "cell", "program")
_REPORT_KEYS = ("report", "final_report", "answer", "final_answer", "text", "content", "summary")
_WHY_KEYS = ("why", "rationale", "reason", "explanation", "description")
_REPORT_NAME = re.compile(r"report|final|answer|finish|submit|done|complete|respond", re.IGNORECASE)
_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    arguments: dict[str, Any]

    def argument(self, keys: tuple[str, ...]) -> str:
        values = (self.arguments.get(key) for key in keys)
        return next((v.strip() for v in values if isinstance(v, str) and v.strip()), "")


def _printed_tool_call(body: str) -> AuthorReply | None:
    """A reply that is a tool call, as Llama, Qwen, Mistral and others print them."""
    if _PYTHON_TAG in body:
        before, _, after = body.partition(_PYTHON_TAG)
        after = END_TOKENS.sub("", after)
        calls = _tool_calls(after)
        if calls:
            return _from_calls(calls, before.strip())
        return _step(_clean_code(after), before.strip()) if after.strip() else None
    tagged = _TOOL_CALL_TAG.findall(body)
    if tagged:
        calls = [call for text in tagged for call in _tool_calls(text) or []]
        rest = _TOOL_CALL_TAG.sub("", body).strip()
        return _from_calls(calls, rest) if calls else None
    calls = _tool_calls(body.removeprefix("[TOOL_CALLS]"))
    return _from_calls(calls, "") if calls else None


def _tool_calls(text: str) -> list[_Call] | None:
    data = read_json(text)
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        data = data["tool_calls"]
    items = data if isinstance(data, list) else [data]
    calls = [call for item in items if (call := as_call(item))]
    return calls if calls and len(calls) == len(items) else None


def as_call(item: object) -> _Call | None:
    if isinstance(item, dict) and isinstance(item.get("function"), dict):
        item = item["function"]  # the OpenAI shape, printed
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    arguments = next((item[k] for k in ("arguments", "parameters", "args") if k in item), None)
    if not isinstance(name, str) or arguments is None:
        return None
    if isinstance(arguments, str):  # arguments serialised once more, or the bare code
        parsed = read_json(arguments)
        arguments = parsed if isinstance(parsed, dict) else {"code": arguments}
    return _Call(name, arguments) if isinstance(arguments, dict) else None


def _from_calls(calls: list[_Call], prose: str) -> AuthorReply:
    codes = [code for call in calls if (code := _clean_code(call.argument(_CODE_KEYS)))]
    if codes:
        why = next((w for call in calls if (w := call.argument(_WHY_KEYS))), "") or prose
        return _step("\n\n".join(codes), why)
    reports = [r for c in calls if _REPORT_NAME.search(c.name) and (r := c.argument(_REPORT_KEYS))]
    if reports:
        report = "\n\n".join(reports)
        return AuthorReply(text=report, rationale=report, code="")
    raise ProtocolViolation(
        f"Your reply was a call of the tool {calls[0].name!r}; no tools are available here. "
        "Write the step as one ```python block, or the final report as plain markdown."
    )


def _step(code: str, why: str) -> AuthorReply:
    # resent as the proposal, so it shows the model the shape the protocol asks for
    text = f"{why}\n\n```python\n{code}\n```".strip()
    return AuthorReply(text=text, rationale=why, code=code)
