"""The package's public surface and its code quality gates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import agentnb

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_exported_once() -> None:
    # their order is ruff's (RUF022), checked by the quality gate
    assert len(set(agentnb.__all__)) == len(agentnb.__all__)
    for name in agentnb.__all__:
        assert hasattr(agentnb, name), name
    for name in ("run", "arun", "RunResult", "Role", "Decision", "StopReason"):
        assert name in agentnb.__all__


def test_the_kernel_side_code_is_self_contained() -> None:
    # it is sent to the kernel as source, where agentnb may not be installed
    source = (ROOT / "agentnb" / "kernel" / "inside.py").read_text()
    assert "from agentnb" not in source
    assert "from ." not in source


@pytest.mark.quality
@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_quality_gate(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
