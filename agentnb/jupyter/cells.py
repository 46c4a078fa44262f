"""Approved steps written into the live notebook as cells.

:class:`CellWriter` is the kernel's end of the ``agentnb.cells`` comm; the other
end is the agentnb-cells JupyterLab / Notebook 7 extension (``widgets/``), which
inserts each cell below the ``%%agents`` cell, once, in the browser that ran the
cell: per step a markdown note (why, who approved it) and its code, then the
final report as markdown (the saved analysis notebook has the same cells).
Where no extension answers (VS Code, classic Notebook, headless runs), the writer
says so once and keeps the steps: the saved analysis notebook has them, and a
notebook page that attaches later gets them.

Protocol, version 4 (``widgets/README.md`` has the frontend's side):

- kernel opens, from the ``%%agents`` cell: ``{anchor: cell id | None, run_id, version: 4}``
- frontend replies ``{event: "ready", client: "lab" | "notebook", version: 4}``,
  or closes the comm when it has no such target
- kernel sends ``{action: "insert", run_id, key, cell: <nbformat cell>}``: a step's
  code cell (key ``<run_id>:<step>``), its note (a markdown cell, key
  ``<run_id>:<step>:reason``) or the report (markdown, key ``<run_id>:report``)
- frontend replies ``{event: "inserted", key, cell_id, index[, note][, duplicate]}``
  or ``{event: "error", key, message}``
- kernel sends ``{action: "outputs", run_id, key, outputs}`` when a later step
  changed what a step's code cell shows (``handle.update(...)`` of a display the
  step made, its display id shown again): the cell of that key gets these outputs
  in place of its own, as a notebook's cell does
- frontend replies ``{event: "updated", key, cell_id, index}``, ``{event:
  "updated", key, cell_id: null, note}`` when the notebook has no such cell (the
  user deleted it), or ``{event: "error", key, action: "outputs", message}``

A page that did not run the cell (the tab was closed and the notebook opened
again, or the page reloaded) never saw that comm. When its kernel connection comes
up it opens one itself, on the kernel's target of the same name (registered by
``%load_ext agentnb``, :func:`register_target`):

- frontend opens: ``{version: 4, client, cells: [the notebook's cell ids]}``
- kernel, for each run whose anchor is one of those cells and that is still going
  or has steps the frontend has not acknowledged: ``{action: "attach", run_id,
  anchor, display: <the %%agents cell's display bundle>}``, then every cell of the
  run as an ``insert`` (the frontend skips keys the notebook already has, so an
  ``outputs`` follows for each step whose outputs a later step changed); the
  writer uses this comm from now on and stops writing to its old one (left open:
  the new page never saw it).
- kernel, for each of those cells whose last run has ended (its writer closed):
  ``{action: "show", run_id, anchor, display, chat}``. A notebook saved with an
  inserted step is not signed (those cells are never trusted), so it opens with
  every cell untrusted, and a widget view is not a safe mime type: the page puts
  the kernel's display back into the cell and trusts that cell, if the cell still
  shows that run's widget. ``chat`` (also in ``attach``, once the run ended) is
  the static copy of the chat the run left in its cell, a ``display_data``
  output of sanitised HTML: the page puts it back beside the widget, from the
  kernel rather than from the notebook file, as the cell is now trusted. Nothing
  else is sent for an ended run: the steps a page acknowledged are the user's to
  delete.
- no run of those cells at all, or once every attached run is done: the kernel
  closes the comm.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from comm import create_comm
from comm.base_comm import BaseComm

from ..ui.untrusted import safe_markdown, safe_outputs

__all__ = [
    "COMM_TARGET",
    "CellWriter",
    "anchor_cell_id",
    "register_target",
    "unregister_target",
]

log = logging.getLogger(__name__)

COMM_TARGET = "agentnb.cells"
PROTOCOL_VERSION = 4
"""3: markdown cells (a step's note, the report) besides code cells. 4: ``outputs``,
a step's cell shows what a later step changed (display updates)."""

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
    "The notebook page closed its connection to this run (the notebook was closed, or its "
    "kernel was changed): the run goes on, and its steps are inserted when the notebook is "
    f"opened again on this kernel. {_SAVE_HINT}"
)

State = Literal["connecting", "active", "detached", "unavailable"]

# The writers a notebook page can attach to: their run is going, or it ended with
# steps no page has acknowledged yet. One list per kernel, as the comm target is.
_attachable: list[CellWriter] = []
# A run that ended while no page was open keeps its steps (outputs and all) for a
# page that comes back, but only the latest few such runs do.
KEEP_FINISHED = 8
# The last closed writer of each %%agents cell, for the widget a reopened page shows
# there (see the "show" action above); the latest cells only.
_ended: dict[str, CellWriter] = {}
KEEP_ENDED = 32


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


def _uncounted(output: dict[str, Any]) -> dict[str, Any]:
    """An output as an inserted cell shows it: an ``execute_result`` without the
    managed kernel's execution count, which would read as one of the notebook's."""
    if output.get("output_type") == "execute_result":
        return {**output, "execution_count": None}
    return output


def _in_kernel() -> bool:
    from ipykernel.kernelbase import Kernel

    return bool(Kernel.initialized())


class _Link(Protocol):
    """Where a writer's messages go: the comm it opened, or one a page opened."""

    def send(self, data: dict[str, Any]) -> None: ...

    def release(self, writer: CellWriter) -> None:
        """The writer is done with this link: close it if nobody else uses it."""

    def leave(self, writer: CellWriter) -> None:
        """The writer moved to another page's link; this one's page is likely gone."""


class _OwnComm:
    """The comm a writer opened from the ``%%agents`` cell; nobody else uses it."""

    def __init__(self, comm: BaseComm) -> None:
        self.comm = comm

    def send(self, data: dict[str, Any]) -> None:
        self.comm.send(data)

    def release(self, writer: CellWriter) -> None:
        self.comm.close()

    def leave(self, writer: CellWriter) -> None:
        # Not closed: the page now attached never saw this comm open, and
        # JupyterLab logs an error for the close of a comm it does not know. Left
        # open in the kernel's comm manager; an old page still alive may answer
        # on it, and the writer ignores what comes from a link it left.
        pass


class _Page:
    """A comm a notebook page opened to attach to the runs it shows; shared by them."""

    def __init__(self, comm: BaseComm, client: str) -> None:
        self.comm = comm
        self.client = client
        self.writers: dict[str, CellWriter] = {}
        self.closed = False
        comm.on_msg(self._received)
        comm.on_close(self._closed_by_frontend)

    def send(self, data: dict[str, Any]) -> None:
        if not self.closed:
            self.comm.send(data)

    def release(self, writer: CellWriter) -> None:
        self.writers.pop(writer.run_id, None)
        if not self.writers and not self.closed:
            self.closed = True
            self.comm.close()

    def leave(self, writer: CellWriter) -> None:
        # as _OwnComm.leave: another page is attached now, which never saw this comm
        self.writers.pop(writer.run_id, None)

    def shown(self, ended: Sequence[CellWriter]) -> None:
        """Tell the page which widgets of ended runs are this kernel's own."""
        for writer in ended:
            self.send(writer.show_message())
        if not self.writers and not self.closed:
            self.closed = True
            self.comm.close()

    def _received(self, msg: Mapping[str, Any]) -> None:
        data = msg["content"]["data"]
        key = data.get("key")
        writer = next(
            (w for w in self.writers.values() if isinstance(key, str) and w.sent(key)), None
        )
        if writer is None:
            log.warning("a notebook page wrote about a run it is not attached to: %r", data)
            return
        writer._on_loop(writer._received, data, self)

    def _closed_by_frontend(self, _msg: Mapping[str, Any]) -> None:
        self.closed = True
        writers, self.writers = list(self.writers.values()), {}
        for writer in writers:
            writer._on_loop(writer._link_closed, self)


def _page_opened(comm: BaseComm, msg: Mapping[str, Any]) -> None:
    """A notebook page opened a comm on our target: attach it to the runs it shows."""
    data = msg["content"]["data"]
    if data.get("version") != PROTOCOL_VERSION:
        log.info(
            "a notebook page speaks agentnb.cells version %s, this kernel %s: not attached",
            data.get("version"),
            PROTOCOL_VERSION,
        )
        comm.close()
        return
    cells = data.get("cells")
    shown = {c for c in cells if isinstance(c, str)} if isinstance(cells, list) else set()
    writers = [w for w in _attachable if w.anchor is not None and w.anchor in shown]
    going = {w.anchor for w in writers}
    ended = [w for anchor, w in list(_ended.items()) if anchor in shown and anchor not in going]
    if not writers and not ended:
        comm.close()  # nothing of ours in that notebook
        return
    page = _Page(comm, str(data.get("client")))
    for writer in writers:
        page.writers[writer.run_id] = writer
        writer._on_loop(writer.attach, page)
    if ended:
        ended[0]._on_loop(page.shown, ended)


def register_target() -> None:
    """Let notebook pages attach to runs they did not start (a reload, a reopened tab).

    ``%load_ext agentnb`` calls it; outside a kernel it does nothing.
    """
    if not _in_kernel():
        return
    from comm import get_comm_manager

    get_comm_manager().register_target(COMM_TARGET, _page_opened)


def unregister_target() -> None:
    if not _in_kernel():
        return
    from comm import get_comm_manager

    manager = get_comm_manager()
    if manager.targets.get(COMM_TARGET) is _page_opened:
        manager.unregister_target(COMM_TARGET, _page_opened)


class CellWriter:
    """Sends a run's approved steps to the notebook frontend as cells.

    Use it on the kernel's event loop: :meth:`open` inside the ``%%agents`` cell
    (the comm's parent header must be that cell's request, so that only the
    browser that ran it writes), then :meth:`insert` per step, :meth:`finish` when
    the run ends. Steps inserted before the frontend answers are sent in order
    once it does.

    The writer keeps every step until the run has ended and a frontend has
    acknowledged them all: a page that did not run the cell (the tab was closed and
    the notebook opened again) attaches through :func:`register_target`'s comm
    target and gets them all, and every step after that.

    Args:
        run_id: the run's id; with the step number it makes each cell's key.
        anchor: id of the ``%%agents`` cell (:func:`anchor_cell_id`); steps go
            below it. None appends them at the end of the notebook.
        on_status: called with a sentence for the user when cells cannot be
            inserted (no extension, no answer, a failed insert, a page gone).
        ready_timeout: seconds to wait for the frontend's answer after
            :meth:`open` before giving up (headless runs never answer).
        on_inserted: called with the step number and the new cell's id the first
            time a frontend inserted a step.
        display: returns the ``%%agents`` cell's display bundle (the widget's view),
            which a page that attaches shows in that cell if it lacks it.
        chat: returns the static copy of the chat that the ended run left in its
            cell (a ``display_data`` output), or None while the run goes on; a page
            that puts the widget back keeps it beside the widget.
    """

    def __init__(
        self,
        *,
        run_id: str,
        anchor: str | None,
        on_status: Callable[[str], None] | None = None,
        ready_timeout: float = 5.0,
        on_inserted: Callable[[int, str], None] | None = None,
        display: Callable[[], Mapping[str, Any]] | None = None,
        chat: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.anchor = anchor
        self.state: State = "connecting"
        self.client: str | None = None  # "lab" or "notebook", once ready
        self.inserted: dict[str, str] = {}  # key -> id of the cell it landed in
        self.errors: list[str] = []
        self.attached = 0  # how many pages attached after the one that ran the cell
        self._on_status = on_status
        self._on_inserted = on_inserted
        self._display = display
        self._chat = chat
        self._steps: dict[str, int] = {}
        self._messages: dict[str, dict[str, Any]] = {}  # every step's insert, in order
        self._updated: set[str] = set()  # keys whose outputs a later step changed
        self._earlier: dict[str, list[dict[str, Any]]] = {}  # earlier runs' cells' outputs
        self._settled: set[str] = set()  # keys a frontend inserted, found or refused
        self._finished = False
        self._closed = False
        self._ready_timeout = ready_timeout
        self._link: _Link | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._context: contextvars.Context | None = None
        self._answered: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        """Open the comm; the frontend's answer arrives later (see :meth:`ready`)."""
        if self._link is not None or self.state != "connecting" or self._closed:
            return
        if not _in_kernel():
            self._give_up(NO_KERNEL)
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._context = contextvars.copy_context()
        self._answered = self._loop.create_future()
        self._timer = self._loop.call_later(self._ready_timeout, self._give_up, NO_ANSWER)
        data = {"anchor": self.anchor, "run_id": self.run_id, "version": PROTOCOL_VERSION}
        comm = create_comm(target_name=COMM_TARGET, data=data)
        own = _OwnComm(comm)
        self._link = own
        comm.on_msg(lambda msg: self._on_loop(self._received, msg["content"]["data"], own))
        comm.on_close(lambda _msg: self._on_loop(self._link_closed, own))
        _attachable.append(self)

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
        """Send one step as a code cell (kept until a frontend is there to take it)."""
        key = f"{self.run_id}:{step}"
        cell = {
            "cell_type": "code",
            "execution_count": None,
            "source": code,
            # never trusted: model-written code made these outputs, and a trusted cell
            # (or a notebook signed on save) would run whatever script they carry
            "outputs": [_uncounted(output) for output in safe_outputs(outputs)],
            "metadata": {"agentnb": {**metadata, "key": key, "run_id": self.run_id, "step": step}},
        }
        self._steps[key] = step
        self._send(key, cell)

    def update_outputs(self, *, step: int, outputs: Sequence[Mapping[str, Any]]) -> None:
        """A later step changed what ``step`` shows (a display updated, an id shown
        again): its cell gets ``outputs``, sanitised and uncounted as an insert's.

        The insert kept for a page that attaches later carries them too. A step that
        was not sent as a cell (it failed, or it came from an earlier run), or whose
        cell already shows these outputs, is left alone."""
        key = f"{self.run_id}:{step}"
        message = self._messages.get(key)
        if self._closed or message is None:
            return
        shown = [_uncounted(output) for output in safe_outputs(outputs)]
        if shown == message["cell"]["outputs"]:
            return
        message["cell"] = {**message["cell"], "outputs": shown}
        self._updated.add(key)
        if self.state == "active" and self._link is not None:
            self._link.send(self._outputs_message(key))

    def update_earlier(self, key: str, outputs: Sequence[Mapping[str, Any]]) -> None:
        """A step of this run changed what a step of an earlier run in the same kernel
        shows: that step's cell (``key``, wherever the user moved it) gets ``outputs``,
        sanitised and uncounted. Kept for a page that attaches later."""
        shown = [_uncounted(output) for output in safe_outputs(outputs)]
        if self._closed or self._earlier.get(key) == shown:
            return
        self._earlier[key] = shown
        if self.state == "active" and self._link is not None:
            self._link.send(self._outputs_message(key))

    def _outputs_message(self, key: str) -> dict[str, Any]:
        message = self._messages.get(key)
        outputs = message["cell"]["outputs"] if message is not None else self._earlier[key]
        return {"action": "outputs", "run_id": self.run_id, "key": key, "outputs": outputs}

    def insert_markdown(self, *, key: str, source: str, metadata: Mapping[str, Any]) -> None:
        """Send a markdown cell of the run (a step's note, the final report); ``key``
        is its suffix after the run id (``"2:reason"``, ``"report"``). ``source`` is
        model-written: it goes through :func:`~agentnb.ui.untrusted.safe_markdown`."""
        key = f"{self.run_id}:{key}"
        cell = {
            "cell_type": "markdown",
            "source": safe_markdown(source.strip()),
            "metadata": {"agentnb": {**metadata, "key": key, "run_id": self.run_id}},
        }
        self._send(key, cell)

    def sent(self, key: str) -> bool:
        """Whether this writer sent (or keeps for a page) the cell of ``key``."""
        return key in self._messages or key in self.inserted

    def _send(self, key: str, cell: dict[str, Any]) -> None:
        if self._closed:
            log.debug("cell %s of a closed writer not inserted", key)
            return
        message = {"action": "insert", "run_id": self.run_id, "key": key, "cell": cell}
        self._messages[key] = message
        if self.state == "active" and self._link is not None:
            self._link.send(message)

    def attach(self, page: _Page) -> None:
        """A notebook page that shows the anchor cell connected: it gets the run from now on.

        The newest page wins: the one the user opened last is the one looking.
        Every step goes again, and the page skips those its notebook already has.
        """
        if self._closed:
            page.release(self)
            return
        old, self._link = self._link, page
        if old is not None and old is not page:
            old.leave(self)
        self.client = page.client
        self.attached += 1
        self._settle("active")
        page.send(
            {
                "action": "attach",
                "run_id": self.run_id,
                "anchor": self.anchor,
                "display": self._display_bundle(),
                "chat": self._chat_output(),
            }
        )
        for message in self._messages.values():
            page.send(message)
        # a notebook saved before a later step changed these cells' outputs has them
        # already, and skips their inserts: it gets the outputs as they now are
        for key in [*(k for k in self._messages if k in self._updated), *self._earlier]:
            page.send(self._outputs_message(key))

    def finish(self) -> None:
        """The run ended: close once a frontend has taken every step.

        Until then a page may still attach and get them; the oldest finished
        writers beyond :data:`KEEP_FINISHED` are closed (their steps dropped).
        """
        self._finished = True
        self._maybe_done()
        waiting = [w for w in _attachable if w._finished]
        for writer in waiting[: max(0, len(waiting) - KEEP_FINISHED)]:
            writer.close()

    def show_message(self) -> dict[str, Any]:
        """What a page opened later is told of this ended run: its cell's widget."""
        return {
            "action": "show",
            "run_id": self.run_id,
            "anchor": self.anchor,
            "display": self._display_bundle(),
            "chat": self._chat_output(),
        }

    def close(self) -> None:
        """Close the comm; nothing is inserted afterwards."""
        self._closed = True
        self._settle("unavailable")
        if self in _attachable:
            _attachable.remove(self)
        self._messages.clear()  # nothing is sent any more; _ended may keep the writer a while
        self._updated.clear()
        self._earlier.clear()
        if self.anchor is not None and self._display is not None and self._loop is not None:
            _ended.pop(self.anchor, None)
            _ended[self.anchor] = self
            for anchor in list(_ended)[: max(0, len(_ended) - KEEP_ENDED)]:
                del _ended[anchor]
        link, self._link = self._link, None
        if link is not None:
            link.release(self)

    def _on_loop(self, handler: Callable[..., None], *args: Any) -> None:
        # ipykernel 7 may dispatch comm messages on a subshell thread; the writer's
        # state belongs to the loop that opened it. And under the %%agents cell's
        # request, as the run's own widget updates are: ipykernel routes a widget's
        # clicks to the subshell of the request it last published under, and the
        # subshell JupyterLab keeps for this comm target is gone once the comm has
        # closed, taking with it the clicks on the widgets the handlers changed (a
        # folded step's "show").
        context = self._context.copy() if self._context is not None else None
        if self._loop is None or threading.get_ident() == self._loop_thread:
            if context is None:
                handler(*args)
            else:
                context.run(handler, *args)
        else:
            self._loop.call_soon_threadsafe(handler, *args, context=context)

    def _display_bundle(self) -> Mapping[str, Any] | None:
        if self._display is None:
            return None
        try:
            return dict(self._display())
        except Exception:
            log.exception("the display of the %%agents cell could not be made")
            return None

    def _chat_output(self) -> Mapping[str, Any] | None:
        if self._chat is None:
            return None
        try:
            chat = self._chat()
        except Exception:
            log.exception("the static chat of the %%agents cell could not be made")
            return None
        return dict(chat) if chat is not None else None

    def _received(self, data: Mapping[str, Any], link: _Link) -> None:
        event = data.get("event")
        if event == "ready":
            if link is not self._link or self.state != "connecting":
                return  # an answer to a comm this writer already left
            if data.get("version") != PROTOCOL_VERSION:
                self._give_up(
                    f"Cells were not inserted: the browser's agentnb extension speaks protocol "
                    f"version {data.get('version')}, this kernel {PROTOCOL_VERSION}; reload the "
                    f"page after upgrading agentnb. {_SAVE_HINT}"
                )
                return
            self.client = str(data.get("client"))
            self._settle("active")
            for message in self._messages.values():
                link.send(message)
            for key in self._earlier:
                link.send(self._outputs_message(key))
        elif event == "inserted":
            key, cell_id = str(data["key"]), str(data["cell_id"])
            first = key not in self.inserted
            self.inserted[key] = cell_id
            self._settled.add(key)
            if first and self._on_inserted is not None and key in self._steps:
                try:
                    self._on_inserted(self._steps[key], cell_id)
                except Exception:
                    log.exception("on_inserted callback failed")
            if data.get("note"):
                log.info("step %s: %s", key, data["note"])
        elif event == "updated":
            if data.get("note"):
                log.info("outputs of %s: %s", data.get("key"), data["note"])
        elif event == "error" and data.get("action") == "outputs":
            about = data.get("key")
            self.errors.append(f"{about}: {data.get('message')}")
            self._status(f"The outputs of step {about} were not updated: {data.get('message')}.")
        elif event == "error":
            about = data.get("key")
            self.errors.append(f"{about}: {data.get('message')}")
            if self.state == "connecting" and link is self._link:
                self._give_up(f"Cells were not inserted: {data.get('message')}. {_SAVE_HINT}")
                return
            if isinstance(about, str):
                self._settled.add(about)
            self._status(f"Step {about} was not inserted: {data.get('message')}.")
        else:
            log.warning("unexpected message from the agentnb-cells extension: %r", data)
        self._maybe_done()

    def _link_closed(self, link: _Link) -> None:
        if link is not self._link:
            return  # a comm this writer already left
        self._link = None  # already closed on both sides
        if self.state == "connecting":
            self._give_up(NO_EXTENSION)
        elif self.state == "active":
            self.state = "detached"
            log.info(DISCONNECTED)
            self._status(DISCONNECTED)

    def _maybe_done(self) -> None:
        if (
            self._finished
            and not self._closed
            and self.state != "connecting"
            and self._settled.issuperset(self._messages)
        ):
            self.close()

    def _give_up(self, reason: str) -> None:
        if self.state == "unavailable":
            return
        self._settle("unavailable")
        log.info(reason)
        self._status(reason)
        link, self._link = self._link, None
        if link is not None:
            # a frontend answering late must not insert what the user was just told of;
            # a page that attaches later still gets the steps
            link.release(self)
        self._maybe_done()

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
