"""Ports and processes of this machine (Linux ``/proc``), for the tests and the benchmarks
that start servers and kernels and must leave nothing behind."""

from __future__ import annotations

import signal
import socket
from pathlib import Path


def interruptible() -> None:
    """``preexec_fn`` of a child that a test stops with SIGINT: a test runner started in
    the background (``cmd &`` in a script) ignores SIGINT, and its children would too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc (Z = zombie), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    return process_state(pid) not in (None, "Z")


def children_of(pid: int, *, all_below: bool = True) -> list[int]:
    """The processes below ``pid``: children, grandchildren, … (``all_below=False``: its
    children only)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    if not all_below:
        return parents.get(pid, [])
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
