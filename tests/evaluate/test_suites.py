"""Suites read from the benchmarks' published layouts and from agentnb's own JSONL; the
prompt tells the analyst the answer format each requires."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentnb import ConfigError
from agentnb.evaluate import load_suite, shipped_suites

from .conftest import native, report, write_jsonl


def test_infiagent_dabench_is_read_from_its_published_layout(dabench: Path) -> None:
    for where in (
        dabench.parents[1],  # the repository's root
        dabench,  # examples/DA-Agent
        dabench / "data",
        dabench / "data" / "da-dev-questions.jsonl",
    ):
        suite = load_suite(where)
        assert suite.kind == "dabench"
        assert suite.name == "InfiAgent-DABench (da-dev)"
        assert [t.id for t in suite.tasks] == ["0", "3", "7"]
    first, second, third = suite.tasks
    assert first.files == (dabench / "data" / "da-dev-tables" / "shop.csv",)
    assert third.files[0].name == "sensor readings.csv"  # spaces and all
    assert [(e.name, e.value, e.scorer) for e in second.expected] == [
        ("max_quantity", "9", "exact"),
        ("min_quantity", "1", "exact"),
    ]
    assert first.level == "easy"
    prompt = first.prompt()
    assert prompt.startswith("What is the mean of the price column?")
    assert "Constraints: Round to two decimal places." in prompt
    assert "Answer format: @mean_price[mean], a number rounded to two decimal places." in prompt
    assert "@name[value]" in prompt


def test_dabench_mistakes_are_named_before_anything_runs(dabench: Path) -> None:
    data = dabench / "data"
    (data / "da-dev-tables" / "shop.csv").unlink()
    with pytest.raises(ConfigError, match=r"missing data file\(s\) da-dev-tables/shop.csv"):
        load_suite(dabench)
    (data / "da-dev-labels.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"da-dev-labels\.jsonl is missing"):
        load_suite(dabench)
    (data / "da-dev-labels.jsonl").write_text('{"id": 0, "common_answers": [["a", "1"]]}\n')
    with pytest.raises(ConfigError, match="question 3 has no label"):
        load_suite(dabench)


def test_dabstep_is_read_from_its_published_layout(dabstep: Path) -> None:
    for where in (dabstep, dabstep / "data", dabstep / "data" / "tasks" / "dev.jsonl"):
        suite = load_suite(where)
        assert suite.kind == "dabstep"
        assert suite.name == "DABStep (dev)"
    first, second = suite.tasks
    assert [p.name for p in first.files] == ["fees.json", "manual.md", "payments.csv"]
    assert first.documents == {"manual": dabstep / "data" / "context" / "manual.md"}
    context = dabstep / "data" / "context"
    assert first.data() == [
        str(context / "fees.json"),
        str(context / "payments.csv"),
        {"manual": "# Manual\n\nFees are charged per payment.\n"},
    ]
    assert [(e.name, e.value, e.scorer) for e in second.expected] == [
        ("answer", "Shop_A, Shop_B", "dabstep")
    ]
    assert second.level == "hard"
    prompt = second.prompt()
    assert "Guidelines: Answer with a comma-separated list of merchant names." in prompt
    assert "`manual` (manual.md)" in prompt
    assert "FINAL ANSWER: <answer>" in prompt
    assert second.score(report(second)).correct
    assert second.score("FINAL ANSWER: shop_b; shop_a").correct  # DABStep's normalisation
    assert not second.score("FINAL ANSWER: Shop_A").correct


def test_dabsteps_full_set_has_no_answers_to_score(dabstep: Path) -> None:
    with pytest.raises(ConfigError, match=r"task 1 has no answer .*run the dev set"):
        load_suite(dabstep / "data" / "tasks" / "all.jsonl")
    (dabstep / "data" / "context" / "manual.md").unlink()
    (dabstep / "data" / "context" / "payments.csv").unlink()
    (dabstep / "data" / "context" / "fees.json").unlink()
    (dabstep / "data" / "context").rmdir()
    with pytest.raises(ConfigError, match="context/ folder"):
        load_suite(dabstep)


def test_a_native_suite(tmp_path: Path) -> None:
    suite = native(
        tmp_path,
        [
            {"id": "a", "task": "Total?", "data": "t.csv", "answers": {"total": 6}},
            {
                "task": "Who and which?",
                "data": ["t.csv", "notes/n.md"],
                "answers": {
                    "who": "Ann",
                    "which": {"value": [1, 2], "tolerance": 0.5},
                    "exactly": {"value": "7.40", "scorer": "exact"},
                },
                "level": "hard",
            },
            {"id": "c", "task": "One answer?", "answer": "x, y", "scorer": "dabstep"},
        ],
        {"t.csv": "v\n1\n2\n3\n", "notes/n.md": "Ann wrote this."},
    )
    assert suite.kind == "native"
    assert suite.name == "suite"
    a, b, c = suite.tasks
    assert (a.id, b.id, c.id) == ("a", "2", "c")  # the line number when no id is given
    assert [(e.name, e.scorer) for e in b.expected] == [
        ("who", "text"),
        ("which", "list"),
        ("exactly", "exact"),
    ]
    assert b.expected[1].tolerance == 0.5
    assert "Answer format: @who[text] @which[comma-separated items] @exactly[number]" in b.prompt()
    assert b.documents == {"n": tmp_path / "suite" / "notes" / "n.md"}
    assert b.score("@who[ann] @which[2.2, 1] @exactly[7.4]").correct
    assert b.score("@who[ann] @which[2.6, 1] @exactly[7.4]").fraction == pytest.approx(2 / 3)
    assert c.style == "final"
    assert c.score("FINAL ANSWER: y, x").correct


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "a", "answers": {"x": 1}}, "'task' must say what to find out"),
        ({"id": "a", "task": "T"}, "give the expected 'answers'"),
        ({"id": "a", "task": "T", "answers": {"bad name": 1}}, "must be letters, digits and _"),
        ({"id": "a", "task": "T", "answers": {"x": 1}, "scorer": "fuzzy"}, "scorer 'fuzzy'"),
        ({"id": "a", "task": "T", "answers": {"x": 1}, "tolerance": -1}, "tolerance must be"),
        ({"id": "a", "task": "T", "answers": {"x": {"tolerance": 1}}}, "gives no 'value'"),
        ({"id": "a", "task": "T", "answers": {"x": None}}, "a number, a text or a list"),
        ({"id": "a", "task": "T", "data": ["absent.csv"], "answers": {"x": 1}}, "absent.csv"),
    ],
)
def test_native_suite_mistakes_are_named(tmp_path: Path, record: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        native(tmp_path, [record], {})


def test_ids_are_unique_and_a_suite_is_a_path_or_a_shipped_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="used twice"):
        native(tmp_path, [{"id": 1, "task": "A", "answer": 1}] * 2, {})
    with pytest.raises(ConfigError, match=r"no such file or folder \(agentnb ships .*mini"):
        load_suite(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="found none of InfiAgent-DABench's"):
        load_suite(tmp_path / "empty")
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"q": 1}])
    with pytest.raises(ConfigError, match="neither DABStep's task_id nor agentnb's task"):
        load_suite(odd)
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match="line 1: not JSON"):
        load_suite(tmp_path / "broken.jsonl")


def test_the_shipped_suite_exercises_every_scorer_and_style() -> None:
    assert "mini" in shipped_suites()
    suite = load_suite("mini")
    assert len(suite.tasks) == 12
    scorers = {e.scorer for t in suite.tasks for e in t.expected}
    assert scorers == {"exact", "dabstep", "number", "text", "list"}
    assert {t.style for t in suite.tasks} == {"named", "final"}
    assert any(len(t.expected) > 1 for t in suite.tasks)  # proportional scoring
    assert any(t.documents for t in suite.tasks)  # a document given as text
    assert any(f.suffix == ".json" for t in suite.tasks for f in t.files)
    for task in suite.tasks:  # each task's own right answer is scored right
        assert task.score(report(task)).correct, task.id
        assert not task.score(report(task, "wrong")).correct, task.id


def test_a_selection_of_tasks(dabench: Path) -> None:
    suite = load_suite(dabench)
    assert [t.id for t in suite.select(ids=["7", "0"]).tasks] == ["0", "7"]  # the suite's order
    assert [t.id for t in suite.select(limit=2).tasks] == ["0", "3"]
    with pytest.raises(ConfigError, match="has no task 99"):
        suite.select(ids=["99"])
    with pytest.raises(ConfigError, match="--limit must be at least 1"):
        suite.select(limit=0)
