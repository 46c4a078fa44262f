"""The notebook session's parts that need no kernel: flags, settings, history."""

from __future__ import annotations

import pytest

from agentnb.chat.group import RunResult
from agentnb.chat.messages import Execution, Step
from agentnb.chat.termination import StopReason
from agentnb.flags import HelpShown, UsageError
from agentnb.jupyter.magics import transform
from agentnb.jupyter.session import Agents, parse_line, resolve_settings, summarise


@pytest.fixture(autouse=True)
def no_agentnb_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTNB_MODEL", "AGENTNB_APPROVE", "AGENTNB_MAX_TURNS", "AGENTNB_VISION"):
        monkeypatch.delenv(name, raising=False)


def test_settings_layer_defaults_environment_configuration_and_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = Agents()
    settings = resolve_settings(config, {})
    assert (settings.options.approve, settings.options.max_turns, settings.options.model) == (
        "each",
        30,
        None,
    )
    assert settings.sources["approve"] == "default"

    monkeypatch.setenv("AGENTNB_MODEL", "from-env")
    monkeypatch.setenv("AGENTNB_MAX_TURNS", "12")
    monkeypatch.setenv("AGENTNB_VISION", "yes")
    settings = resolve_settings(config, {})
    assert (settings.options.model, settings.options.max_turns, settings.options.vision) == (
        "from-env",
        12,
        True,
    )
    assert settings.sources["max_turns"] == "$AGENTNB_MAX_TURNS"

    config.model = "from-config"
    settings = resolve_settings(config, {"max_turns": None})
    assert settings.options.model == "from-config"
    assert settings.sources["model"] == "%config Agents.model"

    settings = resolve_settings(config, vars(parse_line("--model from-flag --max-turns 4")))
    assert (settings.options.model, settings.options.max_turns) == ("from-flag", 4)
    assert settings.sources["model"] == "flag"


def test_a_malformed_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTNB_MAX_TURNS", "lots")
    with pytest.raises(UsageError, match=r"\$AGENTNB_MAX_TURNS='lots' is not a valid max_turns"):
        resolve_settings(Agents(), {})


def test_the_flags_are_the_clis() -> None:
    args = parse_line(
        "--data a,b --data c --model m --analyst-model a1 --critic-model c1 --approve final "
        "--max-turns 5 --step-timeout 2.5 --budget-tokens 900 --out x.ipynb --background --new"
    )
    assert (args.data, args.approve, args.max_turns, args.step_timeout) == (
        ["a,b", "c"],
        "final",
        5,
        2.5,
    )
    assert (args.background, args.new, args.out, args.budget_tokens) == (True, True, "x.ipynb", 900)
    with pytest.raises(HelpShown):
        parse_line("--help")
    with pytest.raises(UsageError, match="see '%%agents --help'"):
        parse_line("--step-timeout 0")
    assert parse_line("--max-tokens 300").max_tokens == 300
    with pytest.raises(UsageError, match="--max-tokens: must be at least 1"):
        parse_line("--max-tokens 0")


def test_the_transformer_rewrites_only_agents_cells_and_top_level_lines() -> None:
    cell = transform(["%%agents --data df\n", "Which 'region'?\n", "Plot it.\n"])
    assert cell == [
        "await __import__('agentnb.jupyter.magics').jupyter.magics.run_cell("
        "'--data df', \"Which 'region'?\\nPlot it.\\n\")\n"
    ]
    compile(cell[0], "<cell>", "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT
    lines = transform(["x = 1\n", "%agents pull df\n", "    %agents status\n", "%agentsx\n"])
    assert (
        lines[1]
        == "await __import__('agentnb.jupyter.magics').jupyter.magics.run_line('pull df')\n"
    )
    assert lines[0] == "x = 1\n"
    assert lines[2:] == ["    %agents status\n", "%agentsx\n"]
    assert transform(["%%agentsfoo\n", "x\n"]) == ["%%agentsfoo\n", "x\n"]


def test_the_history_of_an_analysis_is_short() -> None:
    code = "totals = 1\n" + "y = 2\n" * 100
    ran = Execution(code=code, status="ok", outputs=(), execution_count=1, duration=0.1)
    boom = Execution(code="boom()", status="error", outputs=(), execution_count=2, duration=0.1)
    step = Step(
        number=1, author="analyst", rationale="r", code=code, proposed_code=code, execution=ran
    )
    failed = Step(
        number=2,
        author="analyst",
        rationale="r",
        code="boom()",
        proposed_code="boom()",
        execution=boom,
    )
    result = RunResult(
        run_id="r",
        task="Which region?",
        final_report="North. " * 400,
        steps=(step, failed),
        usage={},
        cost=None,
        stop_reason=StopReason("approved", "ok"),
        transcript_path=None,
    )
    text = summarise(result)
    assert text.startswith("Question: Which region?")
    assert "totals = 1" in text
    assert "boom()" not in text
    assert len(text) < 1_700


def test_the_line_expands_variables_as_magics_do() -> None:
    from agentnb.jupyter.session import _expand

    assert _expand("--model scripted:{path} --out $out", {"path": "a b/r.yaml", "out": "x"}) == (
        "--model scripted:a b/r.yaml --out x"
    )
    assert _expand("--data {missing", {}) == "--data {missing"
