"""The run flags shared by ``agentnb run`` and the ``%%agents`` magic.

One definition, so both spell every flag the same way and reject the same
mistakes with the same words. The parser raises :class:`UsageError` (one line)
instead of exiting: a mistyped flag in a notebook cell must not end the kernel.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection
from typing import Any, NoReturn

from .errors import ConfigError
from .kernel.config import check_gateway_url
from .options import specs

__all__ = ["FlagParser", "HelpShown", "UsageError", "add_run_flags", "given", "split_names"]


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


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _gateway_url(text: str) -> str:
    try:
        return check_gateway_url(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--gateway {text}: ")) from None


_TYPES: dict[str, Callable[[str], Any]] = {
    "count": _positive_int,
    "count0": _whole_number,
    "seconds": _positive_float,
    "money": _positive_float,
    "url": _gateway_url,
}


def split_names(values: list[str] | None) -> list[str]:
    """``--data a,b --data c`` as ``[a, b, c]``."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def add_run_flags(
    parser: argparse.ArgumentParser, *, notebook: bool, exclude: Collection[str] = ()
) -> None:
    """Add the flags of a run, one per option of :class:`~agentnb.options.RunOptions`
    that has one here, but those named in ``exclude`` (``data`` is the data flag).
    Values left out are None, so that configuration and the environment can fill
    them in."""
    if "data" not in exclude:
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
    here = "notebook" if notebook else "cli"
    for name, (spec, _) in specs().items():
        if spec.flag not in ("both", here) or name in exclude:
            continue
        flag = spec.flag_name(name)
        help = spec.help + (f" (or $AGENTNB_{name.upper()})" if spec.env else "")
        if spec.kind == "switch":
            parser.add_argument(flag, action="store_true", default=None, help=help)
        elif spec.kind == "cache":
            parser.add_argument(
                flag, metavar=spec.metavar, nargs="?", const=True, default=None, help=help
            )
        elif spec.kind in ("choice", "on_off"):
            parser.add_argument(flag, choices=spec.choices or ("on", "off"), help=help)
        else:
            parser.add_argument(
                flag, metavar=spec.metavar, type=_TYPES.get(spec.kind, str), help=help
            )


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The options a command line set (the others are left to configuration)."""
    names = specs()
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
