"""Every option declared once: the flags, the traits, the environment and
``agentnb.run``'s keywords all come from :class:`RunOptions`."""

from __future__ import annotations

import argparse
import inspect

import pytest

from agentnb import ConfigError, arun
from agentnb.flags import FlagParser, UsageError, add_run_flags, given
from agentnb.jupyter.session import Agents
from agentnb.options import RunOptions, specs


def parser(notebook: bool) -> argparse.ArgumentParser:
    parser = FlagParser(prog="test")
    add_run_flags(parser, notebook=notebook)
    return parser


@pytest.mark.parametrize("notebook", [True, False])
def test_each_option_with_a_flag_has_it_on_its_command_lines(notebook: bool) -> None:
    flags = {a.dest for a in parser(notebook)._actions}
    here = "notebook" if notebook else "cli"
    for name, (spec, _) in specs().items():
        assert (name in flags) == (spec.flag in ("both", here)), name


def test_each_configurable_option_is_a_trait_and_unset_by_default() -> None:
    traits = Agents.class_traits(config=True)
    for name, (spec, _) in specs().items():
        assert (name in traits) == spec.config, name
        if spec.config:
            assert getattr(Agents(), name) is None  # unset: the environment shows through
    assert Agents().prewarm is True  # the session's own trait


def test_arun_takes_every_option_as_a_keyword() -> None:
    keywords = inspect.signature(arun).parameters
    missing = [name for name in specs() if name not in keywords]
    assert missing == []


def test_precedence_default_environment_configuration_argument() -> None:
    config = Agents()
    environ = {"AGENTNB_MAX_TURNS": "12", "AGENTNB_MODEL": "env-model", "AGENTNB_SANDBOX": "off"}
    resolved = RunOptions.resolve({}, config=config, environ=environ)
    assert (resolved.options.max_turns, resolved.options.sandbox) == (12, False)
    assert resolved.sources["max_turns"] == "$AGENTNB_MAX_TURNS"
    config.max_turns = 7
    resolved = RunOptions.resolve({"model": "mine"}, config=config, environ=environ)
    assert (resolved.options.max_turns, resolved.options.model) == (7, "mine")
    assert (resolved.sources["max_turns"], resolved.sources["model"]) == (
        "%config Agents.max_turns",
        "flag",
    )
    assert resolved.describe("sandbox") == "sandbox='off' ($AGENTNB_SANDBOX)"


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("--retries 0", "retries", 0),
        ("--retry-backoff 0.5", "retry_backoff", 0.5),
        ("--sandbox off", "sandbox", False),
        ("--network", "network", True),
        ("--cache", "cache", True),
        ("--max-tokens 512", "max_tokens", 512),
    ],
)
def test_a_flag_gives_the_option_its_value(line: str, field: str, value: object) -> None:
    args = parser(notebook=False).parse_args(line.split())
    resolved = RunOptions.resolve(given(args), environ={})
    assert getattr(resolved.options, field) == value


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--retries -1", "must be 0 or more"),
        ("--retry-backoff 0", "must be more than 0"),
        ("--max-turns 0", "must be at least 1"),
        ("--sandbox maybe", "invalid choice"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parser(notebook=True).parse_args(line.split())


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(UsageError, match=r"\$AGENTNB_RETRIES='many' is not a valid retries"):
        RunOptions.resolve({}, environ={"AGENTNB_RETRIES": "many"})


async def test_a_bad_keyword_is_a_config_error_in_the_flags_words() -> None:
    with pytest.raises(ConfigError, match="--retries must be 0 or a positive whole number"):
        await arun("Q?", model="scripted:none.json", retries=-2)
    with pytest.raises(ConfigError, match="--max-turns must be a positive whole number"):
        await arun("Q?", model="scripted:none.json", max_turns=0)


def test_options_are_checked_when_made() -> None:
    with pytest.raises(ConfigError, match="--approve must be one of each, final, never"):
        RunOptions(approve="sometimes")
