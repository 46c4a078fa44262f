"""The package's public surface and its code quality gates."""

from __future__ import annotations

import re
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


def _fault_rows() -> list[tuple[str, list[str]]]:
    """The README's fault table: (fault, test ids) per row."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and not cells[0].startswith(("**", "fault", "---")):
            rows.append((cells[0], re.findall(r"`(tests/[^`]+)`", cells[3])))
    return rows


def test_every_row_of_the_fault_table_names_tests_that_exist() -> None:
    rows = _fault_rows()
    assert len(rows) >= 35
    for fault, tests in rows:
        assert tests, f"the README's fault row {fault!r} names no test"
        for test in tests:
            path, name = test.split("::")
            source = (ROOT / path).read_text()
            assert re.search(rf"^(async )?def {re.escape(name)}\(", source, re.M), test
