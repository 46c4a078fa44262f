"""Settings of a managed kernel: limits, working directory, environment, where it runs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigError
from .outputs import OutputLimits
from .sandbox import DEFAULT_MAX_PROCESSES

__all__ = ["KernelConfig", "check_gateway_url", "parse_size"]

DEFAULT_PRELOAD = ("numpy", "pandas", "matplotlib.pyplot")


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelConfig:
    """How agentnb runs its managed kernel.

    Attributes:
        step_timeout: seconds a step may run before it is interrupted.
        interrupt_grace: seconds to wait for the kernel to settle after an
            interrupt before it is restarted.
        startup_timeout: seconds to wait for a new kernel to answer.
        iopub_timeout: once a step's reply has come, how long its output channel may
            stay silent before agentnb stops waiting for the rest of its outputs (the
            kernel's ``idle``, which a flooded channel can drop): the step then ends
            from its reply, with a note that output may be incomplete, and the kernel
            keeps its state (nbclient's ``iopub_timeout``, 4 s, likewise).
        cwd: the kernel's working directory; ``None`` means the caller's current
            directory (in a notebook: the notebook's directory).
        env_allow: names of environment variables passed to the kernel even
            though they look secret (see :mod:`agentnb.kernel.environment`).
        env: variables set in the kernel's environment after scrubbing.
        memory_limit: address-space limit of the kernel in bytes (RLIMIT_AS).
        cpu_time_limit: CPU seconds one step may use (RLIMIT_CPU, per step).
        preload: modules imported when the kernel starts, so the first steps do
            not pay for them; missing ones are skipped.
        python: interpreter that runs the kernel; ``None`` means this one.
        output_limits: caps on what is kept of a step's output.
        gateway: base URL of a Jupyter Kernel Gateway or Enterprise Gateway to run
            the kernel on (``http://host:8888``); ``None`` runs it on this machine.
            ``cwd``, ``env_allow``, ``python`` and the environment scrub do not apply
            to a remote kernel: the gateway decides its directory, interpreter and
            environment (``env`` is sent; the gateway keeps what it allows).
        gateway_token: the gateway's auth token; ``None`` means
            ``$AGENTNB_GATEWAY_TOKEN``. Never shown in a repr.
        gateway_kernel: the gateway's kernelspec to start; ``None`` means
            ``$AGENTNB_GATEWAY_KERNEL``, else the gateway's default.
        sandbox: run a local kernel in a bubblewrap sandbox (see
            :mod:`agentnb.kernel.sandbox`); ``None`` means ``$AGENTNB_SANDBOX``, else on.
            Where the sandbox cannot start, the kernel does not start either. A remote
            kernel is the gateway's to isolate.
        network: let the sandboxed kernel open outbound connections (off: no network).
        readable: more paths the sandboxed kernel may read, besides ``cwd`` (which it
            reads without its dotfiles) and the Python environment.
        scratch: the folder the sandboxed kernel writes to; ``None`` means a new
            folder per kernel in the temporary directory, kept if anything was written.
        max_processes: processes and threads the sandbox may hold (a fork bomb ends
            there).
    """

    step_timeout: float = 120.0
    interrupt_grace: float = 3.0
    startup_timeout: float = 60.0
    iopub_timeout: float = 4.0
    cwd: str | None = None
    env_allow: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    memory_limit: int | None = None
    cpu_time_limit: float | None = None
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    python: str | None = None
    output_limits: OutputLimits = field(default_factory=OutputLimits)
    gateway: str | None = None
    gateway_token: str | None = field(default=None, repr=False)
    gateway_kernel: str | None = None
    sandbox: bool | None = None
    network: bool = False
    readable: tuple[str, ...] = ()
    scratch: str | None = None
    max_processes: int = DEFAULT_MAX_PROCESSES

    def __post_init__(self) -> None:
        if self.gateway is not None:
            object.__setattr__(self, "gateway", check_gateway_url(self.gateway))
        for name in (
            "step_timeout",
            "interrupt_grace",
            "startup_timeout",
            "iopub_timeout",
            "cpu_time_limit",
        ):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.memory_limit is not None and self.memory_limit < 256 * 2**20:
            raise ConfigError(
                f"memory_limit={self.memory_limit!r} bytes is too small for a Python kernel; "
                "give at least 256 MiB (268435456), e.g. 4 GiB = 4294967296"
            )
        if self.max_processes < 16:
            raise ConfigError(
                f"max_processes={self.max_processes!r} is too few for a Python kernel and its "
                "threads; give at least 16"
            )


def check_gateway_url(url: str) -> str:
    """The gateway's base URL without a trailing slash, or a ConfigError saying why not."""
    text = str(url).strip()
    example = "e.g. http://127.0.0.1:8888 or https://gateway.example.org/base"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        raise ConfigError(f"--gateway {text}: not a URL ({err}); {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--gateway {text}: give the gateway's base URL starting with http:// or https://, "
            f"{example}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        # a token in the URL would end up in logs, transcripts and error messages
        raise ConfigError(
            f"--gateway {parts.scheme}://{parts.hostname}…: give the URL without credentials, "
            "query or fragment; put the token in AGENTNB_GATEWAY_TOKEN"
        )
    return text.rstrip("/")


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """A size in bytes from ``4294967296``, ``4G``, ``512M`` or ``1.5GiB``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if match is None:
        raise ConfigError(f"{text!r} is not a size: give bytes or a number with K, M, G or T")
    return int(float(match[1]) * _UNITS[match[2].upper()])
