"""The transcript: every event of a run, one JSON line each, flushed as it happens.

It is written before any user interface sees the event, so a crash, a dead kernel
or a closed browser tab loses nothing. ``read_transcript`` gives the events back
(a torn last line, from a crash mid-write, is skipped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import ConfigError
from .events import Event, from_record, to_record

__all__ = ["TranscriptWriter", "default_transcript_dir", "read_transcript"]

log = logging.getLogger(__name__)


def default_transcript_dir() -> Path:
    """``.agentnb/runs`` under the current directory (next to the notebook)."""
    return Path.cwd() / ".agentnb" / "runs"


class TranscriptWriter:
    """Appends events to a JSONL file; each line is flushed to the OS at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the transcript {path}: {exc.strerror or exc}; "
                "pass transcript= a writable path"
            ) from exc

    def write(self, event: Event) -> None:
        if self._file is None:
            return
        line = json.dumps(to_record(event), ensure_ascii=False, default=str)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # fsync is not offered everywhere
                os.fsync(self._file.fileno())
            with contextlib.suppress(OSError):  # what a full disk could not take is lost
                self._file.close()
            self._file = None


def read_transcript(path: str | Path) -> Iterator[Event]:
    """The events of a transcript, in order."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the transcript {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                event = from_record(json.loads(line))
            except (ValueError, TypeError) as exc:
                log.warning("skipping line %d of %s: %s", number, path, exc)
                continue
            if isinstance(event, Event):
                yield event
