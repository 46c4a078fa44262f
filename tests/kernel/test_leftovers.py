"""The folders of kernels whose owner process died are removed by the next one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agentnb.kernel import leftovers


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def kernel_folder(where: Path, name: str, owner: dict[str, object] | None) -> Path:
    folder = where / f"{leftovers.PREFIX}{name}"
    folder.mkdir()
    (folder / "kernel.json").write_text("{}")
    if owner is not None:
        (where / f"{folder.name}.owner").write_text(json.dumps(owner))
    return folder


def test_only_the_folders_of_owners_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = kernel_folder(tmp_path, "gone", {"pid": dead_pid(), "started": "1", "cgroup": None})
    mine = kernel_folder(tmp_path, "mine", None)
    leftovers.claim(mine)
    # the pid is alive but started at another time: a reused pid, not the owner
    reused = kernel_folder(tmp_path, "reused", {"pid": os.getpid(), "started": "-1"})
    unclaimed = kernel_folder(tmp_path, "unclaimed", None)  # an older agentnb's
    scratch = tmp_path / "agentnb-scratch-x"
    scratch.mkdir()

    removed = leftovers.sweep(str(tmp_path), force=True)

    assert sorted(removed) == sorted([gone, reused])
    assert not gone.exists()
    assert not reused.exists()
    assert not (tmp_path / f"{gone.name}.owner").exists()
    assert mine.is_dir()
    assert unclaimed.is_dir()
    assert scratch.is_dir()
    leftovers.release(mine)
    assert not (tmp_path / f"{mine.name}.owner").exists()


def test_a_record_names_no_folder_to_remove_outside_agentnbs_own(tmp_path: Path) -> None:
    # an empty folder that a forged record names as the cgroup stays
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    forged = {"pid": dead_pid(), "started": "1", "cgroup": str(elsewhere)}
    gone = kernel_folder(tmp_path, "forged", forged)
    garbled = kernel_folder(tmp_path, "garbled", None)
    (tmp_path / f"{garbled.name}.owner").write_text("{not json")

    assert leftovers.sweep(str(tmp_path), force=True) == [gone]
    assert elsewhere.is_dir()
    assert garbled.is_dir()


def test_the_sweep_runs_once_per_process(tmp_path: Path) -> None:
    leftovers.sweep(str(tmp_path), force=True)
    gone = kernel_folder(tmp_path, "later", {"pid": dead_pid(), "started": "1"})
    assert leftovers.sweep(str(tmp_path)) == []
    assert gone.is_dir()
