"""Every option of a run, declared once.

A field of :class:`RunOptions` is an option: its default, and in its
:class:`Spec` its help, its kind (how text becomes a value), and where else it
may be given. The ``agentnb run`` and ``%%agents`` flags
(:func:`agentnb.flags.add_run_flags`), the ``%config Agents.*`` traits
(:func:`configurable`), the ``AGENTNB_*`` environment variables, ``agentnb.run``'s
keywords and the engine's arguments are all derived from here, so a new option is
one new field.

Precedence, lowest first: the built-in default, the environment
(``AGENTNB_MAX_TURNS=12``), traitlets configuration (``%config Agents.max_turns =
12``), then what the caller said (a flag, a keyword of ``agentnb.run``).
Configuration set in a notebook is more deliberate than a variable exported in a
shell profile long ago, so it wins over the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError

if TYPE_CHECKING:
    from .models.base import ModelClient

__all__ = ["Resolved", "RunOptions", "Spec", "configurable", "specs"]

Kind = Literal[
    "text", "count", "count0", "seconds", "money", "switch", "choice", "on_off", "size",
    "url", "cache",
]  # fmt: skip


@dataclass(frozen=True)
class Spec:
    """How one option is given, besides as a keyword of ``agentnb.run``."""

    help: str
    kind: Kind = "text"
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    flag: Literal["both", "notebook", "cli", "none"] = "both"
    """Which command lines have ``--name``."""
    env: bool = True
    """Read from ``AGENTNB_NAME``."""
    config: bool = True
    """A trait of ``Agents`` (``%config Agents.name``)."""

    def flag_name(self, name: str) -> str:
        return "--" + name.replace("_", "-")


def _option(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class RunOptions:
    """The options of one run, resolved. ``None`` means "not set" where the
    option's help gives a default that another part owns (the kernel's step
    timeout, the model client's ``max_tokens``)."""

    model: str | ModelClient | None = _option(
        None,
        "the model of every agent: a name for the OpenAI-compatible endpoint, "
        "scripted:PATH or replay:TRANSCRIPT",
        metavar="NAME",
    )
    analyst_model: str | ModelClient | None = _option(None, "the analyst's model", metavar="NAME")
    critic_model: str | ModelClient | None = _option(None, "the critic's model", metavar="NAME")
    approve: str | None = _option(
        None,
        "ask before each step and the final report (each), only the final report (final), "
        "or never; default: each in a notebook and on a terminal, never in agentnb.run "
        "and when nobody is at the terminal",
        kind="choice",
        choices=("each", "final", "never"),
    )
    protocol: str = _option(
        "auto",
        "how the agents reply: tool calls (tools), the text protocol (text), or tool calls "
        "where the endpoint takes them, else text (auto, the default)",
        kind="choice",
        choices=("auto", "tools", "text"),
    )
    max_turns: int | None = _option(
        30, "stop after N agent replies and executions (default: 30)", kind="count", metavar="N"
    )
    step_timeout: float | None = _option(
        None,
        "interrupt a step that runs longer (default: 120, the managed kernel's own)",
        kind="seconds",
        metavar="SECONDS",
    )
    model_timeout: float = _option(
        60.0,
        "give up on a model reply that goes silent this long after its first token, "
        "after retries (default: 60)",
        kind="seconds",
        metavar="SECONDS",
    )
    first_token_timeout: float = _option(
        300.0,
        "wait this long for a model's first token (a local model on a CPU reads a long "
        "prompt for minutes first), then --model-timeout between tokens (default: 300)",
        kind="seconds",
        metavar="SECONDS",
    )
    retries: int = _option(
        4,
        "retry a model call that failed in a way that may pass (a dropped connection, "
        "HTTP 429 or 5xx) up to N times (default: 4)",
        kind="count0",
        metavar="N",
    )
    retry_backoff: float = _option(
        1.0,
        "seconds before the first retry, doubled for each next one up to 20 "
        "(default: 1; a server's Retry-After wins)",
        kind="seconds",
        metavar="SECONDS",
    )
    budget_tokens: int | None = _option(
        None, "stop before the agents use more than N tokens", kind="count", metavar="N"
    )
    budget_cost: float | None = _option(
        None,
        "stop before the agents cost more than this many dollars",
        kind="money",
        metavar="DOLLARS",
        flag="none",
    )
    time_limit: float | None = _option(
        None, "stop after this long", kind="seconds", metavar="SECONDS"
    )
    max_tokens: int | None = _option(
        None,
        "tokens a model's reply may have (default 8192); a reply cut by it is never run",
        kind="count",
        metavar="N",
    )
    vision: bool = _option(False, "send plots to models that accept images", kind="switch")
    cache: bool | str | None = _option(
        None,
        "reuse model replies from the on-disk response cache (optionally in DIR; in "
        "configuration, '' for the default folder)",
        kind="cache",
        metavar="DIR",
    )
    base_url: str | None = _option(
        None,
        "the OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)",
        metavar="URL",
    )
    gateway: str | None = _option(
        None,
        "run the managed kernel on this Jupyter Kernel Gateway or Enterprise Gateway "
        "(token: $AGENTNB_GATEWAY_TOKEN)",
        kind="url",
        metavar="URL",
    )
    gateway_token: str | None = _option(None, "the gateway's token", flag="none", metavar="TOKEN")
    sandbox: bool = _option(
        True,
        "run the agents' code in a bubblewrap sandbox: no secrets, no home, no network, "
        "the working folder read-only (default: on; off runs it as you, with your files)",
        kind="on_off",
    )
    network: bool = _option(
        False,
        "let the sandboxed code open outbound network connections (default: no network)",
        kind="switch",
    )
    memory_limit: int | None = _option(
        None,
        "memory the agents' kernel may take, e.g. 4G (default: half of this machine's); "
        "read when that kernel starts",
        kind="size",
        flag="none",
    )
    notes: bool = _option(
        True,
        "with each step inserted into the notebook, insert its reason above it, and the "
        "final report after the steps, as markdown cells (default: on; off inserts the "
        "code only)",
        kind="on_off",
        flag="notebook",
    )
    out: str | None = _option(
        None,
        "save the analysis as a notebook that re-runs from top to bottom",
        metavar="PATH.ipynb",
        env=False,
        config=False,
    )
    transcript: str | None = _option(
        None,
        "write the JSONL transcript here (default: .agentnb/runs/)",
        metavar="PATH",
        flag="cli",
        env=False,
        config=False,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                _check(f.name, _spec(f), value)

    @classmethod
    def resolve(
        cls,
        given: Mapping[str, Any] = {},
        *,
        config: Any = None,
        defaults: Mapping[str, Any] = {},
        environ: Mapping[str, str] | None = None,
        given_as: str = "flag",
    ) -> Resolved:
        """Layer the defaults (the built-in ones, then ``defaults``), the
        environment, ``config`` (an ``Agents`` instance) and ``given`` (names
        absent from it are not set). A malformed value is a :class:`UsageError`
        naming where it came from."""
        from .flags import UsageError

        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for f in dataclasses.fields(cls):
            name, spec = f.name, _spec(f)
            values[name], sources[name] = defaults.get(name, f.default), "default"
            layers: list[tuple[str, Any]] = []
            env = f"AGENTNB_{name.upper()}"
            if spec.env and environ.get(env):
                layers.append((f"${env}", environ[env]))
            if spec.config and config is not None and getattr(config, name, None) is not None:
                layers.append((f"%config Agents.{name}", getattr(config, name)))
            if name in given:
                layers.append((given_as, given[name]))
            for source, raw in layers:
                if raw is None:  # said so: no value (max_turns=None, no limit)
                    values[name], sources[name] = None, source
                    continue
                try:
                    value = _coerce(spec, raw)
                    _check(name, spec, value)
                except (ValueError, ConfigError) as exc:
                    if source.startswith("$"):
                        raise UsageError(
                            f"{source}={raw!r} is not a valid {name}" + _detail(exc)
                        ) from None
                    what = _bare(exc) or f"{raw!r} is not a valid {name}"
                    raise UsageError(f"{what} (from {source})") from None
                values[name], sources[name] = value, source
        return Resolved(cls(**values), sources)

    @classmethod
    def from_keywords(
        cls,
        keywords: Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] = {},
    ) -> Resolved:
        """Options given as keywords (``agentnb.run``, ``agentnb.evaluate``): None is
        not set, except ``max_turns=None``, which means no limit; paths may be path
        objects. A malformed value is a :class:`ConfigError` in the keyword's words."""
        from .flags import UsageError

        given = {
            name: os.fspath(value) if isinstance(value, os.PathLike) else value
            for name, value in keywords.items()
            if value is not None
        }
        if "max_turns" in keywords and keywords["max_turns"] is None:
            given["max_turns"] = None
        try:
            return cls.resolve(given, defaults=defaults, given_as="argument")
        except UsageError as err:
            raise ConfigError(str(err).replace("(from argument)", "").strip()) from None

    def changed(self, **values: Any) -> RunOptions:
        return dataclasses.replace(self, **values)


@dataclass(frozen=True)
class Resolved:
    """Options and where each came from (``default``, ``$AGENTNB_…``,
    ``%config Agents.…``, ``flag``, ``argument``)."""

    options: RunOptions
    sources: Mapping[str, str]

    def describe(self, *names: str) -> str:
        """``name=value (source)`` for ``%agents status``."""
        return ", ".join(
            f"{n}={_shown(n, getattr(self.options, n))!r} ({self.sources[n]})" for n in names
        )


def specs() -> dict[str, tuple[Spec, Any]]:
    """Every option's spec and default, in declaration order."""
    return {f.name: (_spec(f), f.default) for f in dataclasses.fields(RunOptions)}


def configurable(name: str, doc: str, **extra: Any) -> type:
    """A traitlets ``Configurable`` class with a trait per configurable option
    (None when unset, so the environment and the defaults show through), plus
    ``extra`` traits of the caller's own."""
    from traitlets import Bool, Enum, Float, Int, Unicode
    from traitlets.config import Configurable

    traits: dict[str, Any] = {}
    for option, (spec, _) in specs().items():
        if not spec.config:
            continue
        trait: Any
        if spec.kind in ("count", "count0"):
            trait = Int(None, allow_none=True, help=spec.help)
        elif spec.kind in ("seconds", "money"):
            trait = Float(None, allow_none=True, help=spec.help)
        elif spec.kind == "switch":
            trait = Bool(None, allow_none=True, help=spec.help)
        elif spec.kind in ("choice", "on_off"):
            trait = Enum(spec.choices or ("on", "off"), None, allow_none=True, help=spec.help)
        else:
            trait = Unicode(None, allow_none=True, help=spec.help)
        traits[option] = trait.tag(config=True)
    return type(name, (Configurable,), {"__doc__": doc, **traits, **extra})


# --- kinds --------------------------------------------------------------------------


def _spec(f: dataclasses.Field[Any]) -> Spec:
    spec = f.metadata["spec"]
    assert isinstance(spec, Spec)
    return spec


_YES = {"1", "true", "yes", "on"}
_NO = {"0", "false", "no", "off"}


def _coerce(spec: Spec, raw: Any) -> Any:
    """A value of the option's kind from text (the environment, a flag) or from a
    value (configuration, a keyword)."""
    kind = spec.kind
    if kind in ("switch", "on_off"):
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if kind == "on_off" and word not in _YES | _NO:
            raise ValueError("give on or off")
        return word in _YES
    if kind in ("count", "count0"):
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError("expected a whole number")
        return int(raw)
    if kind in ("seconds", "money"):
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        return float(raw)
    if kind == "cache":
        return True if raw is True or raw == "" else str(raw)
    if kind == "size" and isinstance(raw, str):
        from .kernel.config import parse_size

        return parse_size(raw)
    if kind == "url" and isinstance(raw, str):
        from .kernel.config import check_gateway_url

        return check_gateway_url(raw)
    return raw


def _check(name: str, spec: Spec, value: Any) -> None:
    """Refuse a value the run cannot use, naming its flag."""
    flag = spec.flag_name(name)
    if spec.kind == "count" and (not isinstance(value, int) or value < 1):
        raise ConfigError(f"{flag} must be a positive whole number, not {value!r}")
    if spec.kind == "count0" and (not isinstance(value, int) or value < 0):
        raise ConfigError(f"{flag} must be 0 or a positive whole number, not {value!r}")
    if spec.kind in ("seconds", "money") and not (
        isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    ):
        raise ConfigError(f"{flag} must be positive, not {value!r}")
    if spec.kind == "choice" and value not in spec.choices:
        raise ConfigError(f"{flag} must be one of {', '.join(spec.choices)}, not {value!r}")
    if spec.kind == "url":
        from .kernel.config import check_gateway_url

        check_gateway_url(value)
    if spec.kind == "size":
        from .kernel.config import KernelConfig

        KernelConfig(memory_limit=value)  # the same floor as everywhere else


def _shown(name: str, value: Any) -> Any:
    """The value as the user writes it: ``sandbox='on'``, not True."""
    spec = _spec(next(f for f in dataclasses.fields(RunOptions) if f.name == name))
    if spec.kind == "on_off" and isinstance(value, bool):
        return "on" if value else "off"
    return value


def _bare(exc: Exception) -> str:
    return str(exc).strip()


def _detail(exc: Exception) -> str:
    text = _bare(exc)
    return f": {text}" if text and not text.startswith(("invalid literal", "could not")) else ""
