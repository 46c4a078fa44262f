"""Folders of managed kernels whose owner died without removing them.

A kernel's private folder (connection file with its key, sockets, log) and its
pids cgroup are removed when agentnb stops the kernel. A process killed outright
(SIGKILL, the out-of-memory killer) removes nothing, so each folder has an owner
record beside it: the next agentnb process to start a kernel removes the folders
of owners that are gone. The record lies outside the folder because the
sandboxed kernel may write in its folder, and nothing it writes may choose what
agentnb deletes. A scratch folder is never swept: what the agents wrote there is
the user's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["PREFIX", "claim", "release", "sweep"]

log = logging.getLogger(__name__)

PREFIX = "agentnb-kernel-"
_SUFFIX = ".owner"
_CGROUPS = "/sys/fs/cgroup/"
_swept = False


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), so that a pid reused by
    another process is not taken for the owner; None when there is no such process,
    "" when this system cannot tell when it started."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: whether the pid exists is all there is to know
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    # the command name may hold spaces and parentheses: the fields follow the last ")"
    return stat.rsplit(")", 1)[1].split()[19]


def _record(folder: Path) -> Path:
    return folder.with_name(folder.name + _SUFFIX)


def claim(folder: Path, *, cgroup: str | None = None) -> None:
    """Record this process as the owner of a kernel's ``folder`` (and ``cgroup``)."""
    owner = {"pid": os.getpid(), "started": _started(os.getpid()), "cgroup": cgroup}
    _record(folder).write_text(json.dumps(owner), "utf-8")


def release(folder: Path) -> None:
    """Forget the owner record of a folder that was removed."""
    with contextlib.suppress(OSError):
        _record(folder).unlink()


def _gone(owner: dict[str, object]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    started = _started(pid)
    return started is None or (bool(started) and started != owner.get("started"))


def sweep(where: str | None = None, *, force: bool = False) -> list[Path]:
    """Remove the kernel folders under ``where`` (the temporary folder) whose owner
    is gone, and their cgroups; once per process unless ``force``. Returns the
    folders removed."""
    global _swept
    if _swept and not force:
        return []
    _swept = True
    removed: list[Path] = []
    uid = os.getuid()
    try:
        entries = [e for e in os.scandir(where or tempfile.gettempdir()) if _is_record(e)]
    except OSError:
        return removed
    for entry in entries:
        with contextlib.suppress(OSError, ValueError):
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            owner = json.loads(Path(entry.path).read_text("utf-8"))
            if not isinstance(owner, dict) or not _gone(owner):
                continue
            cgroup = owner.get("cgroup")
            if isinstance(cgroup, str) and _is_ours(cgroup):
                with contextlib.suppress(OSError):  # still busy: not ours to wait for
                    os.rmdir(cgroup)
            folder = Path(entry.path[: -len(_SUFFIX)])
            shutil.rmtree(folder, ignore_errors=True)
            os.unlink(entry.path)
            removed.append(folder)
    if removed:
        log.info("removed %d kernel folder(s) left by processes that ended", len(removed))
    return removed


def _is_record(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith(PREFIX) and entry.name.endswith(_SUFFIX)


def _is_ours(cgroup: str) -> bool:
    path = os.path.normpath(cgroup)
    return path.startswith(_CGROUPS) and os.path.basename(path).startswith("agentnb-")
