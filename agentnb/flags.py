"""The run flags shared by ``agentnb run`` and the ``%%agents`` magic.

One definition, so both spell every flag the same way and reject the same
mistakes with the same words. The parser raises :class:`UsageError` (one line)
instead of exiting: a mistyped flag in a notebook cell must not end the kernel.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from .errors import ConfigError
from .kernel.config import check_gateway_url

__all__ = ["DEFAULTS", "FlagParser", "HelpShown", "UsageError", "add_run_flags", "split_names"]

DEFAULTS = {"max_turns": 30, "step_timeout": 120.0, "model_timeout": 60.0}
"""Built-in values of the flags whose default is not None."""


class UsageError(ConfigError):
    """A malformed command line or magic line."""


class FlagParser(argparse.ArgumentParser):
    """Usage errors raised as :class:`UsageError`, never ``SystemExit``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # --help inside a notebook prints and must return to the cell, not exit the kernel
        if status:
            raise UsageError(message or f"{self.prog}: invalid usage")
        raise HelpShown


class HelpShown(Exception):
    """``--help`` or ``--version`` was asked for and printed: nothing else to do."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _gateway_url(text: str) -> str:
    try:
        return check_gateway_url(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--gateway {text}: ")) from None


def split_names(values: list[str] | None) -> list[str]:
    """``--data a,b --data c`` as ``[a, b, c]``."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def add_run_flags(parser: argparse.ArgumentParser, *, notebook: bool) -> None:
    """Add the flags of a run. Values left out are None, so that configuration
    and the environment can fill them in (see :data:`DEFAULTS`)."""
    if notebook:
        parser.add_argument(
            "--data",
            metavar="NAME[,NAME...]",
            action="append",
            help="variables of your namespace to give the agents (DataFrames, …)",
        )
    else:
        parser.add_argument(
            "--data",
            metavar="FILE",
            action="append",
            help="a data file loaded as a DataFrame named after it (repeatable; or FILE,FILE)",
        )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="the model of every agent: a name for the OpenAI-compatible endpoint, "
        "scripted:PATH or replay:TRANSCRIPT (default: $AGENTNB_MODEL)",
    )
    parser.add_argument("--analyst-model", metavar="NAME", help="the analyst's model")
    parser.add_argument("--critic-model", metavar="NAME", help="the critic's model")
    parser.add_argument(
        "--approve",
        choices=("each", "final", "never"),
        help="ask before each step and the final report (each), only the final report "
        "(final), or never"
        + ("; default: each" if notebook else "; default: each on a terminal, else never"),
    )
    parser.add_argument(
        "--max-turns",
        metavar="N",
        type=_positive_int,
        help=f"stop after N agent replies and executions (default: {DEFAULTS['max_turns']})",
    )
    parser.add_argument(
        "--step-timeout",
        metavar="SECONDS",
        type=_positive_float,
        help=f"interrupt a step that runs longer (default: {DEFAULTS['step_timeout']:g})",
    )
    parser.add_argument(
        "--model-timeout",
        metavar="SECONDS",
        type=_positive_float,
        help="give up on a model call that sends nothing for this long, after retries "
        f"(default: {DEFAULTS['model_timeout']:g})",
    )
    parser.add_argument(
        "--budget-tokens",
        metavar="N",
        type=_positive_int,
        help="stop before the agents use more than N tokens",
    )
    parser.add_argument(
        "--time-limit", metavar="SECONDS", type=_positive_float, help="stop after this long"
    )
    parser.add_argument(
        "--max-tokens",
        metavar="N",
        type=_positive_int,
        help="tokens a model's reply may have (default 8192); a reply cut by it is never run",
    )
    parser.add_argument(
        "--vision",
        action="store_true",
        default=None,
        help="send plots to models that accept images",
    )
    parser.add_argument(
        "--cache",
        metavar="DIR",
        nargs="?",
        const=True,
        default=None,
        help="reuse model replies from the on-disk response cache (optionally in DIR)",
    )
    parser.add_argument(
        "--out",
        metavar="PATH.ipynb",
        help="save the analysis as a notebook that re-runs from top to bottom",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="the OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)",
    )
    parser.add_argument(
        "--sandbox",
        choices=("on", "off"),
        help="run the agents' code in a bubblewrap sandbox: no secrets, no home, no network, "
        "the working folder read-only (default: on; off runs it as you, with your files)",
    )
    parser.add_argument(
        "--network",
        action="store_true",
        default=None,
        help="let the sandboxed code open outbound network connections (default: no network)",
    )
    parser.add_argument(
        "--gateway",
        metavar="URL",
        type=_gateway_url,
        help="run the managed kernel on this Jupyter Kernel Gateway or Enterprise Gateway "
        "(default: $AGENTNB_GATEWAY; token: $AGENTNB_GATEWAY_TOKEN)",
    )
