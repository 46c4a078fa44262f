"""Scorers, as the benchmarks score: InfiAgent-DABench's exact match, DABStep's normalised
match, and agentnb's own numbers with a tolerance, text and sets."""

from __future__ import annotations

import pytest

from agentnb.evaluate.scoring import (
    Expected,
    Score,
    dabench_equal,
    dabstep_match,
    extract_final,
    extract_named,
    list_match,
    number_match,
    text_match,
)


def test_named_answers_are_extracted_as_infiagent_dabench_does() -> None:
    text = (
        "The mean is **34.65**.\n@mean_fare[34.65]\n@median_fare[15.0], @is_normal[no]\n"
        "@mean_fare[34.66]"  # a name given twice: the last one counts
    )
    assert extract_named(text) == {"mean_fare": "34.66", "median_fare": "15.0", "is_normal": "no"}
    # the value ends at the first closing bracket, and never spans lines
    assert extract_named("@outliers[[1, 2]]") == {"outliers": "[1, 2"}
    assert extract_named("@a[1\n2]") == {}
    assert extract_named(None) == {}


@pytest.mark.parametrize(
    ("answer", "label", "right"),
    [
        ("34.65", "34.65", True),
        ("34.650", "34.65", True),  # numbers compared as numbers
        ("34.6500001", "34.65", True),  # within 1e-6
        ("34.651", "34.65", False),  # not within 1e-6
        ("no", "no", True),
        ("No", "no", False),  # text is not normalised at all
        (" no", "no", False),
        ("nan", "nan", True),  # the same text
        (None, "1", False),  # no answer
        ("", "", True),
    ],
)
def test_dabench_equality_is_exact_or_within_1e_6(
    answer: str | None, label: str, right: bool
) -> None:
    assert dabench_equal(answer, label) is right


@pytest.mark.parametrize(
    ("answer", "expected", "right"),
    [
        ("42", "42", True),
        ("42.0", "42", True),
        ("1,234.5", "1234.5", True),  # a thousands separator
        ("$1,234.50", "1234.5", True),
        ("0.12345", "0.1234", True),  # small numbers: within 1e-4
        ("0.13", "0.12", False),
        ("12.35", "12.3456", True),  # equal rounded to the shorter one's decimals
        ("12.4", "12.3456", False),
        ("45.2%", "45.2", True),
        ("B, A, C", "A, B, C", True),  # a list: order does not matter
        ("[A; C; B]", "A, B, C", True),
        ("A, B", "A, B, C", False),
        ("1.0, 2", "2, 1", True),  # items compared by type
        ("Not Applicable", "not applicable", True),
        ("Visa", "visa", True),
        ("the answer is NexPay", "NexPay", True),  # a one-word answer inside a longer one
        ("GlobalCard", "NexPay", False),
        ("  yes.", "yes", True),  # punctuation and spaces do not count
        (None, "yes", False),
    ],
)
def test_dabstep_matches_by_answer_type(answer: str | None, expected: str, right: bool) -> None:
    assert dabstep_match(answer, expected) is right


def test_the_final_answer_line_is_found_without_its_markdown() -> None:
    assert extract_final("Work...\nFINAL ANSWER: 42") == "42"
    assert extract_final("**Final answer:** `NexPay`") == "NexPay"
    assert extract_final("**FINAL ANSWER**: A, B") == "A, B"
    assert extract_final("Final answer: 1\n...\nFINAL ANSWER: 2\n") == "2"  # the last one
    assert extract_final("The answer is 42.") is None
    assert extract_final(None) is None


def test_numbers_within_a_tolerance() -> None:
    assert number_match("5875.5", 5875.5)
    assert number_match("5,875.50", 5875.5)
    assert number_match("$5875.504", 5875.5, tolerance=0.01)
    assert not number_match("5875.52", 5875.5, tolerance=0.01)
    assert number_match("105", 100, rel_tolerance=0.05)
    assert number_match("35.44%", "35.44")
    assert number_match("1e3", 1000)
    assert not number_match("about 12", 12)  # the value alone, not in words
    assert not number_match("twelve", 12)
    assert not number_match(None, 12)


def test_text_ignores_case_spaces_quotes_and_a_final_period() -> None:
    assert text_match("  gizmo ", "Gizmo")
    assert text_match('"Elm  Street".', "elm street")
    assert text_match("true", True)
    assert not text_match("Gizmos", "Gizmo")


def test_lists_compare_as_sets() -> None:
    assert list_match("West, South", ["South", "West"])
    assert list_match("[South; west; South]", ["South", "West"])  # repeats do not count
    assert list_match("1.001, 2", [2, 1], tolerance=0.01)
    assert not list_match("South", ["South", "West"])  # one missing
    assert not list_match("South, West, North", ["South", "West"])  # one too many
    assert not list_match(None, ["South"])


def test_a_score_is_right_when_every_sub_answer_is() -> None:
    score = Score({"a": "1", "b": "2", "c": None}, {"a": True, "b": True, "c": False})
    assert not score.correct
    assert score.fraction == pytest.approx(2 / 3)
    assert Score({"a": "1"}, {"a": True}).correct
    assert not Score().correct  # nothing expected, nothing right


def test_expected_answers_choose_their_scorer() -> None:
    assert Expected("x", "7.40", "exact").matches("7.4")  # as numbers
    assert not Expected("x", "7.40", "exact").matches("7.41")
    assert Expected("x", 7.4, "number", tolerance=0.01).matches("7.405")
    assert Expected("x", ["a", "b"], "list").matches("b, a")
    assert Expected("x", ["a", "b"], "dabstep").matches("b; a")
    assert Expected("x", "Gizmo", "text").matches("gizmo")
    assert Expected("x", ["a", "b"]).as_text() == "a, b"
