"""The reply protocol, read tolerantly."""

from __future__ import annotations

import pytest

from agentnb.protocol import ProtocolViolation, parse_author, parse_review


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
    with pytest.raises(ProtocolViolation):
        parse_review("I would approve")  # lower case mid-prose stays ambiguous
