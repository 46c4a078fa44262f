"""Whole evaluations: real managed kernels (one per task), the real openai client against a
loopback server whose model knows each task's answer (or gets them wrong, or crashes
its kernel), real files in the results folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from agentnb import ConfigError
from agentnb.chat.events import KernelReady
from agentnb.chat.transcript import read_transcript
from agentnb.evaluate import EvalAborted, aevaluate, compare, load_suite
from agentnb.models.scripted import ScriptedModel
from agentnb.models.server import Status

from ..kernel.gateway import running_gateway
from .conftest import FAST, OracleServer, RecordingView, close, endpoint, native, step

pytestmark = pytest.mark.kernel


async def test_an_oracle_scores_the_shipped_suite_in_full(
    oracle_server: OracleServer, tmp_path: Path
) -> None:
    suite = load_suite("mini")
    oracle, server = oracle_server(suite)
    view = RecordingView()
    result = await aevaluate(
        "mini", out=tmp_path / "out", concurrency=3, view=view, kernel_config=FAST,
        **endpoint(server),
    )  # fmt: skip
    summary = result.summary
    for key in ("accuracy_by_question", "accuracy_by_sub_question", "accuracy_proportional"):
        assert summary[key] == 1.0, key
    assert summary["tasks"] == summary["scored"] == summary["correct"] == 12
    assert summary["stop_reasons"] == {"approved": 12}
    assert summary["cost"] == 0.0  # the scripted model is free
    assert summary["cost_per_correct"] == 0.0
    assert summary["median_time"] > 0
    assert summary["tokens"]["per_agent"].keys() == {"analyst", "critic"}
    assert summary["label"] == "scripted, text"
    # three at a time, each task once, each with its analyst and its critic
    assert view.most_running == 3
    assert sorted(view.finished) == sorted(t.id for t in suite.tasks)
    assert view.closed
    assert sorted(oracle.calls("analyst")) == sorted(oracle.calls("critic"))
    assert len(oracle.calls("analyst")) == 12
    assert result.ran == 12
    assert [r["id"] for r in result.records] == [t.id for t in suite.tasks]
    for record in result.records:
        assert record["correct"]
        assert record["status"] == "answered"
        assert record["models"] == {"analyst": "scripted", "critic": "scripted"}
        assert record["tokens"]["analyst"]["calls"] == record["tokens"]["critic"]["calls"] == 1
        assert record["wall_time"] > 0
        transcript = Path(record["transcript"])
        assert transcript.parent == tmp_path / "out" / "transcripts"
        (ready,) = [e for e in read_transcript(transcript) if isinstance(e, KernelReady)]
        assert ready.sandboxed  # every task in a sandboxed kernel of its own
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12
    assert json.loads((result.summary_path).read_text())["accuracy_by_question"] == 1.0
    notebook = nbformat.read(result.notebook_path, as_version=4)
    assert notebook.cells[2].outputs[0]["data"]["image/png"]


async def test_wrong_and_partial_answers_on_infiagent_dabench(
    oracle_server: OracleServer, dabench: Path, tmp_path: Path
) -> None:
    suite = load_suite(dabench)
    # question 0 (one answer) wrong; 3 (two answers) and 7 (four) half right
    modes = {"0": "wrong", "3": "half", "7": "half"}
    _oracle, server = oracle_server(suite, modes=modes)
    result = await aevaluate(
        dabench, out=tmp_path / "out", concurrency=3, kernel_config=FAST, **endpoint(server)
    )
    summary = result.summary
    assert summary["accuracy_by_question"] == 0.0
    assert close(summary["accuracy_by_sub_question"], (0 + 1 + 2) / (1 + 2 + 4))
    assert close(summary["accuracy_proportional"], (0 + 1 / 2 + 2 / 4) / 3)
    by_id = {r["id"]: r for r in result.records}
    assert by_id["0"]["answers"] == {"mean_price": "999999"}
    assert by_id["0"]["expected"] == {"mean_price": "4.25"}
    assert by_id["3"]["right"] == {"max_quantity": True, "min_quantity": False}
    assert by_id["7"]["score"] == 0.5
    assert all(r["status"] == "answered" for r in result.records)  # answered, wrongly
    assert summary["by_level"]["medium"] == {"tasks": 1, "correct": 0, "accuracy": 0.0}


async def test_a_task_that_times_out_or_crashes_its_kernel_fails_with_its_reason(
    oracle_server: OracleServer, tmp_path: Path
) -> None:
    suite = native(
        tmp_path,
        [
            {"id": "slow", "task": "How slow?", "data": ["v.csv"], "answers": {"n": 3}},
            {"id": "crash", "task": "How fragile?", "data": ["v.csv"], "answers": {"n": 3}},
            {"id": "fine", "task": "How many?", "data": ["v.csv"], "answers": {"n": 3}},
        ],
        {"v.csv": "v\n1\n2\n3\n"},
    )

    def crash(prompt: str) -> str:  # a new way to end the kernel each time
        return step(f"import os\nos._exit(1)  # attempt {prompt.count('(died)')}")

    _oracle, server = oracle_server(
        suite,
        behaviours={"slow": lambda _: step("import time\ntime.sleep(60)"), "crash": crash},
    )
    result = await aevaluate(
        # long enough for three kernel deaths and restarts on a loaded machine
        suite, out=tmp_path / "out", concurrency=3, time_limit=15, kernel_config=FAST,
        **endpoint(server),
    )  # fmt: skip
    by_id = {r["id"]: r for r in result.records}
    slow, crashed, fine = by_id["slow"], by_id["crash"], by_id["fine"]
    assert not slow["correct"]
    assert slow["status"] == "failed"
    assert slow["stop_reason"] == "time_limit"
    assert "stopped after" in slow["stop_message"]
    assert slow["step_statuses"] == ["interrupted"]
    assert slow["wall_time"] < 45
    assert not crashed["correct"]
    assert crashed["status"] == "failed"
    assert crashed["stop_reason"] == "loop_guard"
    assert "the last: died" in crashed["stop_message"]
    assert crashed["step_statuses"] == ["died", "died", "died"]
    assert fine["correct"]
    assert close(result.summary["accuracy_by_question"], 1 / 3)
    assert result.summary["stop_reasons"] == {"time_limit": 1, "loop_guard": 1, "approved": 1}
    assert result.summary["answered"] == 1


async def test_a_second_run_skips_what_was_scored_and_rerun_failed_retries(
    oracle_server: OracleServer, dabench: Path, tmp_path: Path
) -> None:
    suite = load_suite(dabench)
    out = tmp_path / "out"
    _broken, server = oracle_server(suite, behaviours={"3": lambda _: Status(400)})
    first = await aevaluate(
        dabench, out=out, ids=["0", "3"], kernel_config=FAST, **endpoint(server)
    )
    assert first.ran == 2
    assert [r["status"] for r in first.records] == ["answered", "failed"]
    assert first.records[1]["stop_reason"] == "model_error"
    assert first.summary["tasks"] == 2

    # the whole suite, same models: only the task not run yet runs
    oracle, server = oracle_server(suite)
    second = await aevaluate(dabench, out=out, kernel_config=FAST, **endpoint(server))
    assert second.ran == 1
    assert set(oracle.calls("analyst")) == {"7"}
    assert second.summary["tasks"] == 3
    assert close(second.summary["accuracy_by_question"], 2 / 3)  # 3 still failed

    # --rerun-failed: only the failed one, which now answers
    oracle, server = oracle_server(suite)
    third = await aevaluate(
        dabench, out=out, rerun_failed=True, kernel_config=FAST, **endpoint(server)
    )
    assert third.ran == 1
    assert set(oracle.calls("analyst")) == {"3"}
    assert third.summary["accuracy_by_question"] == 1.0
    assert [r["id"] for r in third.records] == ["0", "3", "7"]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4  # the failed record stays in the file; the last one counts
    transcripts = sorted(p.name for p in (out / "transcripts").iterdir())
    assert transcripts == ["0.jsonl", "3.2.jsonl", "3.jsonl", "7.jsonl"]

    # other settings into the same folder: refused before anything runs
    with pytest.raises(ConfigError, match="holds an evaluation with other settings"):
        await aevaluate(dabench, out=out, critic=False, **endpoint(server))


async def test_ablations_no_critic_and_the_tools_protocol(
    oracle_server: OracleServer, dabstep: Path, tmp_path: Path
) -> None:
    suite = load_suite(dabstep)
    oracle, server = oracle_server(suite)
    options = {**endpoint(server), "ids": ["2"], "kernel_config": FAST}
    alone = await aevaluate(dabstep, out=tmp_path / "alone", critic=False, **options)
    assert oracle.calls("critic") == []  # the analyst alone
    assert oracle.calls("analyst") == ["2"]
    (record,) = alone.records
    assert record["correct"]
    assert record["models"] == {"analyst": "scripted"}
    assert record["tokens"].keys() == {"analyst"}
    assert alone.summary["label"] == "scripted, no critic, text"
    assert alone.summary["critic"] is False
    assert oracle.tool_calls == 0

    tools = await aevaluate(dabstep, out=tmp_path / "tools", **{**options, "protocol": "tools"})
    assert oracle.calls("critic") == ["2"]
    assert oracle.tool_calls == 2  # the analyst's final_report, the critic's review
    assert tools.summary["accuracy_by_question"] == 1.0
    assert tools.summary["label"] == "scripted, tools"

    both = compare(tmp_path / "tools", tmp_path / "alone")
    labels = [run["label"] for run in both["runs"]]
    assert labels == ["scripted, tools", "scripted, no critic, text"]
    assert both["both"] == 1
    with_critic, without = (run["tokens"]["per_agent"] for run in both["runs"])
    assert with_critic.keys() == {"analyst", "critic"}
    assert without.keys() == {"analyst"}


async def test_the_first_tasks_failing_alike_stop_the_evaluation(
    oracle_server: OracleServer, tmp_path: Path
) -> None:
    suite = load_suite("mini")
    _oracle, server = oracle_server(
        suite, behaviours={t.id: (lambda _: Status(401)) for t in suite.tasks}
    )
    with pytest.raises(
        EvalAborted, match=r"the first 3 tasks all failed the same way \(model_error"
    ):
        await aevaluate(
            "mini", out=tmp_path / "out", limit=6, kernel_config=FAST, **endpoint(server)
        )
    records = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(records) == 3  # kept, for --rerun-failed
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["scored"] == 3
    assert summary["tasks"] == 6


@pytest.mark.skipif(
    importlib.util.find_spec("kernel_gateway") is None,
    reason="jupyter_kernel_gateway is not installed (pip install -e '.[test]')",
)
async def test_tasks_run_on_a_kernel_gateway(
    oracle_server: OracleServer, dabstep: Path, tmp_path: Path
) -> None:
    suite = load_suite(dabstep)
    _oracle, server = oracle_server(suite)
    (tmp_path / "gw").mkdir()
    with running_gateway(tmp_path / "gw") as gateway:
        result = await aevaluate(
            dabstep, out=tmp_path / "out", concurrency=2, gateway=gateway.url,
            gateway_token=gateway.token, **endpoint(server),
        )  # fmt: skip
        assert gateway.kernels() == []  # each task's kernel ended with it
    assert result.summary["accuracy_by_question"] == 1.0
    assert result.summary["scored"] == 2
    for record in result.records:
        events = read_transcript(Path(record["transcript"]))
        (ready,) = [e for e in events if isinstance(e, KernelReady)]
        assert "gateway" in ready.isolation


async def test_a_model_client_given_as_an_object_serves_every_task(tmp_path: Path) -> None:
    suite = native(
        tmp_path,
        [
            {"id": "a", "task": "First?", "answers": {"x": 1}},
            {"id": "b", "task": "Second?", "answer": "two"},
        ],
        {},
    )
    closed: list[str] = []

    class Model(ScriptedModel):
        async def aclose(self) -> None:
            closed.append("model")

    model = Model({"analyst": ["@x[1]", "FINAL ANSWER: two"], "critic": ["APPROVE", "APPROVE"]})
    result = await aevaluate(suite, out=tmp_path / "out", model=model, kernel_config=FAST)
    assert result.summary["accuracy_by_question"] == 1.0
    assert closed == ["model"]  # once, at the end: not after the first task
    assert result.summary["label"] == "scripted"
    with pytest.raises(ConfigError, match="approve is always 'never'"):
        await aevaluate(suite, out=tmp_path / "other", model=model, approve="each")
