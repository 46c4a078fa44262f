"""Settings of a managed kernel: limits, working directory, environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..outputs import OutputLimits

__all__ = ["KernelConfig"]

DEFAULT_PRELOAD = ("numpy", "pandas", "matplotlib.pyplot")


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelConfig:
    """How agentnb runs its managed kernel.

    Attributes:
        step_timeout: seconds a step may run before it is interrupted.
        interrupt_grace: seconds to wait for the kernel to settle after an
            interrupt before it is restarted.
        startup_timeout: seconds to wait for a new kernel to answer.
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
    """

    step_timeout: float = 120.0
    interrupt_grace: float = 3.0
    startup_timeout: float = 60.0
    cwd: str | None = None
    env_allow: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    memory_limit: int | None = None
    cpu_time_limit: float | None = None
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    python: str | None = None
    output_limits: OutputLimits = field(default_factory=OutputLimits)

    def __post_init__(self) -> None:
        for name in ("step_timeout", "interrupt_grace", "startup_timeout", "cpu_time_limit"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.memory_limit is not None and self.memory_limit < 256 * 2**20:
            raise ConfigError(
                f"memory_limit={self.memory_limit!r} bytes is too small for a Python kernel; "
                "give at least 256 MiB (268435456), e.g. 4 GiB = 4294967296"
            )
