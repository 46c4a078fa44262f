"""Approved steps written into the live notebook as code cells.

:class:`CellWriter` is the kernel's end of the ``agentnb.cells`` comm; the other
end is the agentnb-cells JupyterLab / Notebook 7 extension (``widgets/``), which
inserts each step below the ``%%agents`` cell, once, in the browser that ran the
cell. Where no extension answers (VS Code, classic Notebook, headless runs), the
writer says so once and drops the steps: the saved analysis notebook has them.

Protocol, version 1 (``widgets/README.md`` has the frontend's side):

- kernel opens: ``{anchor: cell id | None, run_id, version: 1}``
- frontend replies ``{event: "ready", client: "lab" | "notebook", version: 1}``,
  or closes the comm when it has no such target
- kernel sends ``{action: "insert", key: "<run_id>:<step>", cell: <nbformat code cell>}``
- frontend replies ``{event: "inserted", key, cell_id, index[, note][, duplicate]}``
  or ``{event: "error", key, message}``
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from comm import create_comm
from comm.base_comm import BaseComm

__all__ = ["COMM_TARGET", "CellWriter", "anchor_cell_id"]

log = logging.getLogger(__name__)

COMM_TARGET = "agentnb.cells"
PROTOCOL_VERSION = 1

_SAVE_HINT = "Save the analysis with `%agents save PATH` or the Save button to get them as cells."
NO_EXTENSION = (
    "Cells were not inserted: this frontend has no agentnb extension (VS Code or classic "
    f"Notebook). {_SAVE_HINT}"
)
NO_ANSWER = (
    "Cells were not inserted: no notebook frontend answered (a headless run, or a page "
    f"without the agentnb extension loaded). {_SAVE_HINT}"
)
NO_KERNEL = f"Cells were not inserted: this is not running in a Jupyter kernel. {_SAVE_HINT}"
DISCONNECTED = (
    "Cells are no longer inserted: the notebook page closed its connection to this run "
    f"(reloaded, or the kernel was changed). {_SAVE_HINT}"
)

State = Literal["connecting", "active", "unavailable"]


def anchor_cell_id() -> str | None:
    """The id of the cell being executed, as JupyterLab and Notebook 7 send it.

    None outside a kernel, or when the frontend sends no cell id (nbclient,
    papermill, older frontends).
    """
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent()
    except Exception:
        log.debug("no parent message to read a cell id from", exc_info=True)
        return None
    metadata = parent.get("metadata") if isinstance(parent, dict) else None
    cell_id = metadata.get("cellId") if isinstance(metadata, dict) else None
    return cell_id if isinstance(cell_id, str) and cell_id else None


def _in_kernel() -> bool:
    from ipykernel.kernelbase import Kernel

    return bool(Kernel.initialized())


class CellWriter:
    """Sends a run's approved steps to the notebook frontend as cells.

    Use it on the kernel's event loop: :meth:`open` inside the ``%%agents`` cell
    (the comm's parent header must be that cell's request, so that only the
    browser that ran it writes), then :meth:`insert` per step, :meth:`close` at
    the end. Steps inserted before the frontend answers are queued and sent in
    order once it does.

    Args:
        run_id: the run's id; with the step number it makes each cell's key.
        anchor: id of the ``%%agents`` cell (:func:`anchor_cell_id`); steps go
            below it. None appends them at the end of the notebook.
        on_status: called with a sentence for the user when cells cannot be
            inserted (no extension, no answer, a failed insert).
        ready_timeout: seconds to wait for the frontend's answer after
            :meth:`open` before giving up (headless runs never answer).
        on_inserted: called with the step number and the new cell's id when the
            frontend inserted a step.
    """

    def __init__(
        self,
        *,
        run_id: str,
        anchor: str | None,
        on_status: Callable[[str], None] | None = None,
        ready_timeout: float = 5.0,
        on_inserted: Callable[[int, str], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.anchor = anchor
        self.state: State = "connecting"
        self.client: str | None = None  # "lab" or "notebook", once ready
        self.inserted: dict[str, str] = {}  # key -> id of the cell it landed in
        self.errors: list[str] = []
        self._on_status = on_status
        self._on_inserted = on_inserted
        self._steps: dict[str, int] = {}
        self._ready_timeout = ready_timeout
        self._comm: BaseComm | None = None
        self._queued: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._answered: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        """Open the comm; the frontend's answer arrives later (see :meth:`ready`)."""
        if self._comm is not None or self.state != "connecting":
            return
        if not _in_kernel():
            self._give_up(NO_KERNEL)
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._answered = self._loop.create_future()
        self._timer = self._loop.call_later(self._ready_timeout, self._give_up, NO_ANSWER)
        data = {"anchor": self.anchor, "run_id": self.run_id, "version": PROTOCOL_VERSION}
        self._comm = create_comm(target_name=COMM_TARGET, data=data)
        self._comm.on_msg(lambda msg: self._on_loop(self._received, msg["content"]["data"]))
        self._comm.on_close(lambda _msg: self._on_loop(self._closed_by_frontend))

    async def ready(self) -> bool:
        """True once the frontend's extension answered; False if cells cannot be inserted."""
        if self._answered is None:
            if self.state == "connecting":
                raise RuntimeError("CellWriter.ready() before open()")
            return self.state == "active"
        # shielded: a caller giving up waiting must not decide for the others
        return await asyncio.shield(self._answered)

    def insert(
        self,
        *,
        step: int,
        code: str,
        outputs: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, Any],
    ) -> None:
        """Send one step as a code cell (queued until the frontend is ready)."""
        key = f"{self.run_id}:{step}"
        cell = {
            "cell_type": "code",
            "execution_count": None,
            "source": code,
            "outputs": [dict(output) for output in outputs],
            "metadata": {
                "agentnb": {**metadata, "key": key, "run_id": self.run_id, "step": step},
                # the outputs are those of code the user approved, as if run by hand; an
                # untrusted cell would make the frontend refuse to sign the whole notebook
                # on save, and its widgets would not render when it is opened again
                "trusted": True,
            },
        }
        self._steps[key] = step
        message = {"action": "insert", "key": key, "cell": cell}
        if self.state == "active" and self._comm is not None:
            self._comm.send(message)
        elif self.state == "connecting":
            self._queued.append(message)
        else:
            log.debug("step %s not inserted: cells are unavailable", key)

    def close(self) -> None:
        """Close the comm; nothing is inserted afterwards."""
        self._settle("unavailable")
        self._queued.clear()
        comm, self._comm = self._comm, None
        if comm is not None:
            comm.close()

    def _on_loop(self, handler: Callable[..., None], *args: Any) -> None:
        # ipykernel 7 may dispatch comm messages on a subshell thread; the writer's
        # state belongs to the loop that opened it.
        if self._loop is None or threading.get_ident() == self._loop_thread:
            handler(*args)
        else:
            self._loop.call_soon_threadsafe(handler, *args)

    def _received(self, data: Mapping[str, Any]) -> None:
        event = data.get("event")
        if event == "ready" and self.state == "connecting":
            if data.get("version") != PROTOCOL_VERSION:
                self._give_up(
                    f"Cells were not inserted: the browser's agentnb extension speaks protocol "
                    f"version {data.get('version')}, this kernel {PROTOCOL_VERSION}; reload the "
                    f"page after upgrading agentnb. {_SAVE_HINT}"
                )
                return
            self.client = str(data.get("client"))
            self._settle("active")
            queued, self._queued = self._queued, []
            for message in queued:
                if self._comm is not None:
                    self._comm.send(message)
        elif event == "inserted":
            key, cell_id = str(data["key"]), str(data["cell_id"])
            self.inserted[key] = cell_id
            if self._on_inserted is not None and key in self._steps:
                try:
                    self._on_inserted(self._steps[key], cell_id)
                except Exception:
                    log.exception("on_inserted callback failed")
            if data.get("note"):
                log.info("step %s: %s", data["key"], data["note"])
        elif event == "error":
            error = f"{data.get('key')}: {data.get('message')}"
            self.errors.append(error)
            if self.state == "connecting":
                self._give_up(f"Cells were not inserted: {data.get('message')}. {_SAVE_HINT}")
            else:
                self._status(f"Step {data.get('key')} was not inserted: {data.get('message')}.")
        else:
            log.warning("unexpected message from the agentnb-cells extension: %r", data)

    def _closed_by_frontend(self) -> None:
        self._comm = None  # already closed on both sides
        self._give_up(NO_EXTENSION if self.state == "connecting" else DISCONNECTED)

    def _give_up(self, reason: str) -> None:
        if self.state == "unavailable":
            return
        self._settle("unavailable")
        self._queued.clear()
        log.info(reason)
        self._status(reason)
        if self._comm is not None:
            # a frontend answering late must not insert what the user was told is lost
            self._comm.close()
            self._comm = None

    def _settle(self, state: State) -> None:
        self.state = state
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._answered is not None and not self._answered.done():
            self._answered.set_result(state == "active")

    def _status(self, sentence: str) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(sentence)
        except Exception:
            log.exception("on_status callback failed")
