"""The reply protocol, read tolerantly: the basics, then a corpus of real models' habits."""

from __future__ import annotations

import pytest

from agentnb.chat.protocol import ProtocolViolation, parse_author, parse_review, split_reasoning


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("Load.\n```python\ndf = load()\n```", "df = load()"),
        ("Two parts.\n```py\na = 1\n```\nthen\n```python3\nb = 2\n```", "a = 1\n\nb = 2"),
        ("No tag.\n```\nx = 1\n```", "x = 1"),
        ("Cut off mid-block.\n```python\nplt.plot(x)\n", "plt.plot(x)"),
        ("Tildes.\n~~~python\nz = 3\n~~~", "z = 3"),
        ("Nested fence text.\n````python\ns = '```'\n````", "s = '```'"),
    ],
)
def test_python_blocks_make_a_step(reply: str, code: str) -> None:
    parsed = parse_author(reply)
    assert parsed.code == code
    assert not parsed.is_final


def test_prose_without_python_is_the_final_report() -> None:
    parsed = parse_author("North grew fastest.\n\n```text\nNorth 12%\n```")
    assert parsed.is_final
    assert parsed.rationale.startswith("North grew fastest.")


def test_rationale_is_the_reply_without_code() -> None:
    parsed = parse_author("First the totals.\n```python\nprint(1)\n```\nThen a chart.")
    assert parsed.rationale == "First the totals.\nThen a chart."


@pytest.mark.parametrize(
    "reply", ["", "   \n", "```bash\nls\n```"], ids=["empty", "blank", "other-language"]
)
def test_replies_that_fit_no_shape_say_what_to_do(reply: str) -> None:
    with pytest.raises(ProtocolViolation, match="```python"):
        parse_author(reply)


@pytest.mark.parametrize(
    ("reply", "verdict", "comments"),
    [
        ("APPROVE", "approve", ""),
        ("approve - looks right", "approve", "looks right"),
        ("**APPROVE**. Good.", "approve", "Good."),
        ("APPROVED", "approve", ""),
        ("REVISE: the column is unit_price.", "revise", "the column is unit_price."),
        ("## Revise\nUse a log scale.", "revise", "Use a log scale."),
        ("Looks fine overall.\nVerdict: APPROVE", "approve", "Looks fine overall."),
        ("The axis is unlabelled.\n\nREVISE", "revise", "The axis is unlabelled."),
    ],
)
def test_verdicts_are_found_tolerantly(reply: str, verdict: str, comments: str) -> None:
    parsed = parse_review(reply)
    assert (parsed.verdict, parsed.comments) == (verdict, comments)


@pytest.mark.parametrize("reply", ["", "It seems fine.", "I approve of this, mostly."])
def test_replies_without_a_verdict_are_violations(reply: str) -> None:
    with pytest.raises(ProtocolViolation, match="APPROVE or REVISE"):
        parse_review(reply)


def test_a_verdict_in_capitals_at_the_very_end_counts() -> None:
    parsed = parse_review("The regional totals add up to the overall total. APPROVED")
    assert (parsed.verdict, parsed.comments) == (
        "approve",
        "The regional totals add up to the overall total.",
    )
    # a conditional in front of the word is never an approval
    assert parse_review("I would approve").verdict == "revise"


# --- a corpus of what real models reply -------------------------------------------------
# Each reply below is in the style of a model family seen answering these prompts; the
# id names the family and the habit.

STEP, FINAL = "step", "final"
CALL = '{"name": "python", "arguments": {"code": "print(df.shape)"}}'

AUTHORS = [
    # GPT-4o
    pytest.param(
        "I'll start by loading the data.\n\n```python\nimport pandas as pd\n"
        "df = pd.read_csv('sales.csv')\ndf.head()\n```",
        STEP,
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf.head()",
        id="gpt4o-plain-step",
    ),
    pytest.param(
        "## Findings\n\n**North** grew fastest (+12%).\n\n| region | growth |\n|---|---|\n"
        "| North | 12% |",
        FINAL,
        "",
        id="gpt4o-report-with-table",
    ),
    pytest.param(
        "Totals first.\n\n```python\nprint(df['revenue'].sum())\n```\n\nExpected output:\n\n"
        "```\n123456.0\n```",
        STEP,
        "print(df['revenue'].sum())",
        id="gpt4o-expected-output-block",
    ),
    pytest.param(
        "```python\nprint(df.groupby('region').revenue.sum())\n```\n\n"
        "```\nregion\nNorth    120\nSouth     80\n```",
        STEP,
        "print(df.groupby('region').revenue.sum())",
        id="gpt4o-untagged-output-without-wording",
    ),
    pytest.param(
        "```python\nprint(6 * 7)\n```\nThis will print:\n```\n42\n```",
        STEP,
        "print(6 * 7)",
        id="gpt4o-output-that-parses-after-wording",
    ),
    pytest.param(
        "```python\nwf = 1\n```\nThen:\n```\nprint(wf)\n```",
        STEP,
        "wf = 1\n\nprint(wf)",
        id="gpt4o-untagged-code-after-code-is-joined",
    ),
    # Claude
    pytest.param(
        "Let me check the distribution.\n\n```python\nsummary = df.describe()\nprint(summary)\n"
        "```\n\nThis shows whether any region has outliers.",
        STEP,
        "summary = df.describe()\nprint(summary)",
        id="claude-step-with-closing-prose",
    ),
    pytest.param(
        "## Summary\n\nRevenue rose 8% year on year.\n\n- North: +12%\n- South: +3%\n\n"
        "The `discount` column was applied before summing.",
        FINAL,
        "",
        id="claude-report-with-bullets",
    ),
    pytest.param(
        "1. First, compute totals:\n   ```python\n   totals = df.sum()\n   print(totals)\n"
        "   ```\n2. Then plot them.",
        STEP,
        "totals = df.sum()\nprint(totals)",
        id="claude-fence-under-numbered-item",
    ),
    pytest.param(
        "<thinking>Check dtypes before summing.</thinking>\n```python\nprint(df.dtypes)\n```",
        STEP,
        "print(df.dtypes)",
        id="claude-thinking-tag",
    ),
    # Llama 3.1 8B
    pytest.param(
        "<|python_tag|>import pandas as pd\nprint(df.shape)<|eom_id|>",
        STEP,
        "import pandas as pd\nprint(df.shape)",
        id="llama-python-tag",
    ),
    pytest.param(
        '<|python_tag|>{"name": "run_step", "parameters": {"code": "print(2)"}}',
        STEP,
        "print(2)",
        id="llama-python-tag-json",
    ),
    pytest.param(CALL, STEP, "print(df.shape)", id="llama-json-tool-call"),
    pytest.param(f"```json\n{CALL}\n```", STEP, "print(df.shape)", id="llama-fenced-json-call"),
    pytest.param(
        f"I will look at the shape.\n\n```\n{CALL}\n```",
        STEP,
        "print(df.shape)",
        id="llama-untagged-fenced-call-with-prose",
    ),
    pytest.param(
        '{"name": "run_step", "parameters": {"code": "df.describe()", "why": "Summary."}}',
        STEP,
        "df.describe()",
        id="llama-run-step-parameters",
    ),
    pytest.param(
        '[{"name": "python", "arguments": {"code": "ll = 1"}}, '
        '{"name": "python", "arguments": {"code": "print(ll)"}}]',
        STEP,
        "ll = 1\n\nprint(ll)",
        id="llama-list-of-calls",
    ),
    pytest.param(
        '{"name": "final_report", "arguments": {"report": "North grew 12%."}}',
        FINAL,
        "",
        id="llama-final-report-call",
    ),
    pytest.param(
        "```python\n>>> df.head()\n>>> df.shape\n```",
        STEP,
        "df.head()\ndf.shape",
        id="llama-prompts",
    ),
    pytest.param(
        "- Load the data:\n\n    ```python\n    df = load()\n    if df.empty:\n        "
        "print('none')\n    ```",
        STEP,
        "df = load()\nif df.empty:\n    print('none')",
        id="llama-fence-under-list-item-4-spaces",
    ),
    # Gemma
    pytest.param(
        "```python print(df.shape)```", STEP, "print(df.shape)", id="gemma-one-line-fence"
    ),
    pytest.param(
        "```markdown\nLet's look.\n\n```python\ndf.info()\n```\n```",
        STEP,
        "df.info()",
        id="gemma-markdown-wrapper",
    ),
    pytest.param(
        "```python\nge = 1\n```<end_of_turn>", STEP, "ge = 1", id="gemma-end-of-turn-token"
    ),
    pytest.param(
        "> ```python\n> df.describe()\n> ```", STEP, "df.describe()", id="gemma-blockquote-fence"
    ),
    pytest.param(
        "```python\nprint(df.shape)```", STEP, "print(df.shape)", id="gemma-close-on-code"
    ),
    # Qwen2.5-Coder
    pytest.param(
        f"<tool_call>\n{CALL}\n</tool_call>", STEP, "print(df.shape)", id="qwen-tool-call-tag"
    ),
    pytest.param(
        "```pycon\n>>> df['revenue'].mean()\n41.5\n```",
        STEP,
        "df['revenue'].mean()",
        id="qwen-pycon-with-output",
    ),
    pytest.param(
        "```ipython\nIn [1]: df.shape\nOut[1]: (100, 5)\n```",
        STEP,
        "df.shape",
        id="qwen-ipython-prompts",
    ),
    pytest.param(
        "```markdown\n# Report\nNorth grew 12%.\n```", FINAL, "", id="qwen-markdown-wrapped-report"
    ),
    pytest.param(
        '{"type": "function", "function": {"name": "run_step", '
        '"arguments": "{\\"code\\": \\"print(3)\\", \\"why\\": \\"check\\"}"}}',
        STEP,
        "print(3)",
        id="qwen-openai-shape-string-arguments",
    ),
    # DeepSeek-R1 distills, QwQ, Qwen3
    pytest.param(
        "<think>\nI could compute it:\n```python\nprint(df.sum())\n```\nBut the results are "
        "already there.\n</think>\n\nThe total revenue is 1.2M, led by North.",
        FINAL,
        "",
        id="r1-draft-code-in-think-then-report",
    ),
    pytest.param(
        "<think>Plan: load.</think>\n\nLoading.\n```python\ndf = load()\n```",
        STEP,
        "df = load()",
        id="qwen3-think-then-step",
    ),
    pytest.param(
        "<think>\n\n</think>\n\n```python\nprint(2)\n```", STEP, "print(2)", id="qwen3-empty-think"
    ),
    pytest.param(
        "<think>```python\nwrong()\n```</think>\n```python\nright()\n```",
        STEP,
        "right()",
        id="qwq-code-in-think-and-after",
    ),
    pytest.param(
        "Okay, the user wants totals.\n```python\ndraft()\n```\n</think>\n\nThe total is 42.",
        FINAL,
        "",
        id="r1-template-opened-think",
    ),
    pytest.param(
        "<reasoning>\n```python\nnope()\n```\n</reasoning>\nDone: North leads.",
        FINAL,
        "",
        id="reasoning-tag",
    ),
    # gpt-oss
    pytest.param(
        "**Step 1 – totals**\n\n```python\ntotals = df.groupby('region')['revenue'].sum()\n"
        "print(totals)\n```",
        STEP,
        "totals = df.groupby('region')['revenue'].sum()\nprint(totals)",
        id="gpt-oss-step",
    ),
    pytest.param(
        "<|channel|>analysis<|message|>Need a groupby.\n```python\nx()\n```<|end|>"
        "<|start|>assistant<|channel|>final<|message|>North grew fastest.<|return|>",
        FINAL,
        "",
        id="gpt-oss-harmony-final",
    ),
    pytest.param(
        "<|channel|>analysis<|message|>Run code.<|end|><|start|>assistant to=python"
        "<|channel|>commentary<|message|>print(df.shape)<|call|>",
        STEP,
        "print(df.shape)",
        id="gpt-oss-harmony-python-call",
    ),
    # Mistral
    pytest.param(f"[TOOL_CALLS][{CALL}]", STEP, "print(df.shape)", id="mistral-tool-calls"),
]


@pytest.mark.parametrize(("reply", "kind", "code"), AUTHORS)
def test_author_replies_of_real_models(reply: str, kind: str, code: str) -> None:
    parsed = parse_author(reply)
    assert (STEP if parsed.code else FINAL, parsed.code) == (kind, code)
    for leftover in ("<think", "</think", "<|", "<tool_call>", "<end_of_turn>"):
        assert leftover not in parsed.text


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("<think>\nLet me write:\n```python\nprint(1)\n", id="unclosed-think"),
        pytest.param("<think>The report: North leads.</think>", id="only-reasoning"),
        pytest.param("<|channel|>analysis<|message|>Thinking about it", id="gpt-oss-analysis-only"),
        pytest.param('{"name": "web_search", "arguments": {"q": "x"}}', id="unknown-tool"),
    ],
)
def test_author_replies_that_are_not_a_step_or_a_report(reply: str) -> None:
    with pytest.raises(ProtocolViolation, match="```python"):
        parse_author(reply)


def test_reasoning_is_kept_apart_from_the_reply() -> None:
    parsed = parse_author("<think>draft: ```python\nx()\n```</think>\n\nNorth leads.")
    assert parsed.is_final
    assert parsed.text == parsed.rationale == "North leads."
    assert "x()" in parsed.reasoning
    review = parse_review("<think>Is REVISE right? No.</think>\n\nAPPROVE. Totals match.")
    assert (review.verdict, review.comments) == ("approve", "Totals match.")
    assert review.reasoning == "Is REVISE right? No."


@pytest.mark.parametrize(
    ("reply", "reasoning", "answer"),
    [
        ("<think>a</think>b", "a", "b"),
        ("<THINK>a</THINK>\n<think>c</think>b", "a\n\nc", "b"),
        ("<think>a", "a", ""),
        ("a</think>\n\nb", "a", "b"),
        ("```python\nt = s.split('</think>')\n```", "", "```python\nt = s.split('</think>')\n```"),
        (
            "```python\nre.sub('<think>.*</think>', '', s)\n```",
            "",
            "```python\nre.sub('<think>.*</think>', '', s)\n```",
        ),
        ("no reasoning", "", "no reasoning"),
    ],
)
def test_split_reasoning(reply: str, reasoning: str, answer: str) -> None:
    assert split_reasoning(reply) == (reasoning, answer)


def test_a_tool_call_is_shown_as_the_step_it_proposes() -> None:
    parsed = parse_author(
        '{"name": "run_step", "arguments": {"code": "print(1)", "why": "Check it."}}'
    )
    assert parsed.text == "Check it.\n\n```python\nprint(1)\n```"
    assert parsed.rationale == "Check it."
    report = parse_author('{"name": "final_report", "arguments": {"report": "It is 2."}}')
    assert (report.text, report.is_final) == ("It is 2.", True)


APPROVE, REVISE = "approve", "revise"

REVIEWS = [
    # GPT-4o
    pytest.param("APPROVE — the groupby is correct.", APPROVE, id="gpt4o-dash"),
    pytest.param("**Verdict:** APPROVE\n\nThe code is correct.", APPROVE, id="gpt4o-bold-label"),
    pytest.param("Verdict: **APPROVE**", APPROVE, id="gpt4o-bold-verdict"),
    pytest.param("Here is my review: **APPROVE**", APPROVE, id="gpt4o-here-is-my-review"),
    pytest.param("**REVISE**\n\n- The revenue ignores the discount.", REVISE, id="gpt4o-bold"),
    pytest.param(
        "**Approval:** Not granted – the revenue ignores the discount.",
        REVISE,
        id="gpt4o-approval-not-granted",
    ),
    pytest.param("Not approved: the join drops rows.", REVISE, id="gpt4o-not-approved"),
    pytest.param("Approved: no.", REVISE, id="gpt4o-approved-no"),
    pytest.param("Approve? Not yet.", REVISE, id="gpt4o-question"),
    pytest.param("Status: Approved", APPROVE, id="gpt4o-status"),
    # Claude
    pytest.param("I approve.", APPROVE, id="claude-i-approve"),
    pytest.param("I can't approve this yet — no discount.", REVISE, id="claude-cant-approve"),
    pytest.param("I can’t approve this yet.", REVISE, id="claude-curly-apostrophe"),
    pytest.param("I cannot approve this: it reads /etc/passwd.", REVISE, id="claude-cannot"),
    pytest.param("Don't approve this: the sample is tiny.", REVISE, id="claude-dont-approve"),
    pytest.param(
        "LGTM except the revenue ignores the discount; fix that first.",
        REVISE,
        id="claude-lgtm-except",
    ),
    pytest.param(
        "Sure! Here's my review.\n\nREVISE: the merge drops rows.", REVISE, id="claude-sure"
    ),
    pytest.param("I would approve after you label the axes.", REVISE, id="claude-would-after"),
    pytest.param("Approve once you fix the date parsing.", REVISE, id="claude-once"),
    pytest.param("APPROVE if the totals exclude returns.", REVISE, id="claude-if"),
    pytest.param("I approve this step, but the axis is unlabelled.", REVISE, id="claude-but"),
    pytest.param("APPROVE with changes: rename the column.", REVISE, id="claude-with-changes"),
    pytest.param("No revisions needed. APPROVE", APPROVE, id="claude-no-revisions-needed"),
    pytest.param("Revised step looks right.\n\nAPPROVE", APPROVE, id="claude-revised-step"),
    # Llama 3.1 8B
    pytest.param("APPROVED. The code looks good.", APPROVE, id="llama-approved"),
    pytest.param('{"verdict": "approve", "comments": "Looks right."}', APPROVE, id="llama-json"),
    pytest.param(
        '{"name": "review", "arguments": {"verdict": "revise", "comments": "Use unit_price."}}',
        REVISE,
        id="llama-json-tool-call",
    ),
    pytest.param('```json\n{"verdict": "REVISE"}\n```', REVISE, id="llama-fenced-json"),
    pytest.param("The step looks fine. APPROVE", APPROVE, id="llama-last-word"),
    pytest.param("LGTM 👍", APPROVE, id="llama-lgtm"),
    # Gemma
    pytest.param("```\nAPPROVE\n```", APPROVE, id="gemma-fenced-verdict"),
    pytest.param("APPROVE - no issues found.", APPROVE, id="gemma-no-issues"),
    pytest.param("1. **APPROVE** – correct.", APPROVE, id="gemma-numbered"),
    pytest.param("✅ APPROVE", APPROVE, id="gemma-emoji"),
    # Qwen2.5-Coder, in the user's language
    pytest.param("GENEHMIGT. Der Code ist korrekt.", APPROVE, id="qwen-german-approve"),
    pytest.param("ÜBERARBEITEN: Die Spalte heißt unit_price.", REVISE, id="qwen-german-revise"),
    pytest.param("NICHT GENEHMIGT: falsche Spalte.", REVISE, id="qwen-german-not-approved"),
    pytest.param("批准。代码正确。", APPROVE, id="qwen-chinese-approve"),
    pytest.param("修改：列名应为 unit_price。", REVISE, id="qwen-chinese-revise"),
    pytest.param("不批准，折扣没有计算。", REVISE, id="qwen-chinese-not-approved"),
    pytest.param("批准，但需要先修正折扣。", REVISE, id="qwen-chinese-approve-but"),
    # DeepSeek-R1 distills, QwQ, Qwen3
    pytest.param("<think>\nThe code looks right.\n</think>\n\nAPPROVE", APPROVE, id="r1-think"),
    pytest.param(
        "<think>Maybe REVISE? No, it's fine.</think>\nAPPROVE: totals match.",
        APPROVE,
        id="qwq-revise-only-in-think",
    ),
    pytest.param(
        "<think>It is wrong; I cannot approve.</think>\n\nREVISE: wrong column.",
        REVISE,
        id="qwen3-think-then-revise",
    ),
    pytest.param("Okay, let me check.\n</think>\n\nREVISE: wrong column.", REVISE, id="r1-open"),
    # gpt-oss
    pytest.param(
        "<|channel|>analysis<|message|>Check join.<|end|><|start|>assistant"
        "<|channel|>final<|message|>REVISE: the join drops rows.<|return|>",
        REVISE,
        id="gpt-oss-harmony",
    ),
    pytest.param("**APPROVE** — the totals reconcile.", APPROVE, id="gpt-oss-bold"),
    # both verdicts
    pytest.param(
        "APPROVE\n\nActually, REVISE: the join is wrong.", REVISE, id="both-approve-first"
    ),
    pytest.param("REVISE: fix the axis. Otherwise I'd APPROVE.", REVISE, id="both-revise-first"),
    pytest.param(
        "APPROVE. The code is fine, but I cannot approve the chart.",
        REVISE,
        id="approval-taken-back",
    ),
]


@pytest.mark.parametrize(("reply", "verdict"), REVIEWS)
def test_review_replies_of_real_models(reply: str, verdict: str) -> None:
    parsed = parse_review(reply)
    assert parsed.verdict == verdict
    assert "<think" not in parsed.comments
    assert "<|" not in parsed.comments


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("I approve of this, mostly.", id="hedged"),
        pytest.param("Looks good to me.", id="no-verdict-word"),
        pytest.param("APPROUVÉ", id="french"),
        pytest.param("代码看起来不错。", id="chinese-without-verdict"),
        pytest.param('{"verdict": "maybe"}', id="json-unknown-verdict"),
        pytest.param("<think>\nI need to check whether the discount", id="unclosed-think"),
        pytest.param("<think>APPROVE</think>", id="verdict-only-in-reasoning"),
    ],
)
def test_reviews_the_parser_cannot_read_are_violations(reply: str) -> None:
    with pytest.raises(ProtocolViolation, match="APPROVE or REVISE"):
        parse_review(reply)


def test_a_refused_approval_sends_all_its_words_back() -> None:
    parsed = parse_review("LGTM except the revenue ignores the discount; fix that first.")
    assert parsed.comments == "LGTM except the revenue ignores the discount; fix that first."
    assert parse_review('{"verdict": "approve", "comments": "Fine."}').comments == "Fine."
    assert parse_review("修改：列名应为 unit_price。").comments == "列名应为 unit_price。"
