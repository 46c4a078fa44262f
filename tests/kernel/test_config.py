"""KernelConfig refuses values it cannot use, saying what would work."""

from __future__ import annotations

import pytest

from agentnb import ConfigError, KernelConfig


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("step_timeout", 0, "step_timeout must be a positive number of seconds"),
        ("interrupt_grace", -1, "interrupt_grace must be a positive"),
        ("cpu_time_limit", 0, "cpu_time_limit must be a positive"),
        ("memory_limit", 1_000_000, "too small for a Python kernel"),
    ],
)
def test_bad_values_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KernelConfig(**{field: value})  # type: ignore[arg-type]
