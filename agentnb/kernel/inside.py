"""Code that runs inside the managed kernel.

agentnb never imports this module itself: it sends its source to the kernel when
the kernel starts, so it must depend on the standard library only (pandas, numpy
and pyarrow are used when the kernel has them). It sets up:

- the per-step stream guard: a flood of output stays in the kernel, only its head
  and tail cross the wire, with a count the client adds to its own marker;
- figures closed after every step, so memory does not grow plot after plot;
- after every step, processes it left running are ended and the working
  directory is put back, each with a line on stderr that tells the analyst;
- optional limits: address space for the process, CPU seconds per step;
- the ``agentnb.data`` comm target, through which values are pushed and pulled.

One module past the usual length on purpose: it is the code installed inside the
kernel as one file, so that it can be sent there as one string with nothing to
import.
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import importlib
import json
import os
import pickle
import re
import resource
import signal
import sys
import threading
import time
from collections.abc import Collection
from typing import Any

COMM_TARGET = "agentnb.data"
# Written in place of the dropped middle of a stream; the client turns it into its
# own marker. NUL bytes never occur in text a program means to print.
DROPPED_SENTINEL = "\x00agentnb-dropped:{n}\x00"
# Written on stderr for outputs beyond the limit that the kernel counted, not sent.
OUTPUTS_SENTINEL = "\x00agentnb-outputs-dropped:{n}\x00"
# A traceback entry of this module's own frames (see _Outputs._on_error).
_OWN_FRAME = re.compile(r"\s*File agentnb_inside\.py:\d+")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

PULLABLE_ARRAY_KINDS = "biufcmMSU"  # numeric, datetime, bytes, str: no objects
_crash_log: Any = None
_history: Any = None


class CPUTimeLimitExceeded(BaseException):
    """Raised in a step that used up its CPU seconds.

    A BaseException, like KeyboardInterrupt, so `except Exception` in agent code
    does not swallow it.
    """


def setup(options: dict[str, Any]) -> dict[str, Any]:
    """Prepare the kernel; return what was preloaded and what was missing."""
    from IPython import get_ipython

    ip = get_ipython()
    global _history
    _history = ip.history_manager
    loaded, missing = _preload(options.get("preload", ()))
    outputs = _Outputs(
        ip,
        head=options["stream_head"],
        tail=options["stream_tail"],
        max_outputs=options.get("max_outputs", 100),
        budget=options.get("flood_budget", 100),
    )
    ip.events.register("pre_run_cell", outputs.install)
    ip.events.register("post_run_cell", outputs.remove)
    ip.events.register("post_run_cell", _after_step)
    tidy = _Tidy(os.getcwd(), whole_namespace=bool(options.get("sandboxed")))
    ip.events.register("pre_run_cell", tidy.before)
    ip.events.register("post_run_cell", tidy.after)
    if options.get("cpu_time_limit"):
        cpu = _CpuLimit(float(options["cpu_time_limit"]))
        ip.events.register("pre_run_cell", cpu.arm)
        ip.events.register("post_run_cell", cpu.disarm)
    if options.get("memory_limit"):
        limit = int(options["memory_limit"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if options.get("max_processes"):
        # counted per user namespace: in the sandbox, only the sandbox's own tasks
        count = int(options["max_processes"])
        resource.setrlimit(resource.RLIMIT_NPROC, (count, count))
    if options.get("crash_log"):
        # a crash (segfault, abort) leaves the Python stack in the kernel's log,
        # which agentnb quotes when it reports the death
        global _crash_log
        _crash_log = open(options["crash_log"], "a")  # noqa: SIM115 - lives with the process
        faulthandler.enable(_crash_log, all_threads=False)
    ip.kernel.comm_manager.register_target(COMM_TARGET, _open_data_comm)
    return {"preloaded": loaded, "missing": missing}


def _preload(modules: list[str]) -> tuple[list[str], list[str]]:
    loaded, missing = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
        else:
            loaded.append(name)
    return loaded, missing


class _Run:
    """A run of consecutive writes to one stream: the client shows it as one output and
    keeps its head and its tail; here, what of it is held back, capped the same way."""

    __slots__ = ("discarded", "dropped", "head", "length", "name", "queued", "tail", "tail_len")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queued = False  # among the held outputs
        self.discarded = False  # beyond max_outputs: counted, not kept
        self.length = 0  # characters written to the run, passed or held
        self.head: list[str] = []  # held characters that fall in the run's head
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0
        self.dropped = 0

    def hold(self, text: str, head: int, tail: int) -> None:
        room = head - self.length
        self.length += len(text)
        if room > 0:
            self.head.append(text[:room])
            text = text[room:]
        if not text:
            return
        self.tail.append(text)
        self.tail_len += len(text)
        if self.tail_len > 2 * tail:  # compact now and then, not at every write
            kept = "".join(self.tail)[-tail:]
            self.dropped += self.tail_len - len(kept)
            self.tail = collections.deque([kept])
            self.tail_len = len(kept)

    def take(self, tail: int) -> str:
        """The held text, with the count of what was dropped; nothing is held after."""
        text = "".join(self.tail)
        cut = max(len(text) - tail, 0)
        dropped = self.dropped + cut
        held = "".join(self.head)
        if dropped:
            held += DROPPED_SENTINEL.format(n=dropped)
        held += text[cut:]
        self.queued = False
        self.head.clear()
        self.tail.clear()
        self.tail_len = self.dropped = 0
        return held


class _Outputs:
    """A step's outputs on their way out of the kernel.

    An ordinary step is not touched: its writes and displays pass straight through.
    A step that floods (a stream run past its head, or more display, update and
    clear messages than ``budget``) is held back from then on and coalesced here,
    before the IOPub socket, which would otherwise drop messages (its status: idle
    among them) once the client falls behind: what a clear_output clears is
    dropped, updates of one display keep only the last, a stream run keeps its head
    and tail with a count of the rest, outputs beyond ``max_outputs`` since the last
    clear are counted. What is held goes out, in the order it was produced,
    wherever order can be seen: before an execute_result, an error, a comm message
    (an Output widget's capture starts and ends with one) and at the end of the step.

    Stream text enters through ``write`` (installed on sys.stdout and sys.stderr for
    the step, in front of IPython's own per-cell tee of ``write``, which would keep
    every character in its output history); displays through the display
    publisher's hooks. The kernel's fd watcher thread writes too, hence the lock.
    """

    def __init__(self, ip: Any, *, head: int, tail: int, max_outputs: int, budget: int) -> None:
        self.ip = ip
        self.head = head
        self.tail = tail
        self.max_outputs = max_outputs
        self.budget = budget
        self.lock = threading.RLock()
        self.streams: dict[str, Any] = {}
        self.parents: dict[str, Any] = {}  # each stream's parent header at the step's start
        self.through: dict[str, Any] = {}
        self.writers = {name: self._writer(name) for name in ("stdout", "stderr")}
        self.active = False
        self.step: str | None = None  # the msg_id of the step's request
        self._reset()
        ip.display_pub.register_hook(self._on_display)
        ip.displayhook.register_hook(self._on_result)
        self._show_traceback = ip._showtraceback
        ip._showtraceback = self._on_error
        _wrap_comms(self)

    def _reset(self) -> None:
        self.hold = False
        self.sent = 0  # messages and stream runs passed through in this step
        self.held: list[Any] = []  # _Run objects and display messages, in order
        self.run: _Run | None = None  # the stream run the next write may continue
        self.items = 0  # outputs the client shows since the last clear
        self.dropped_outputs = 0  # beyond max_outputs since the last clear
        self.reported = 0  # of those, already counted to the client
        self.wait = False  # a clear_output(wait=True) that no output has applied yet
        self.counting = True  # off once a widget may capture outputs
        self.wrote = False  # text went to a stream since it was last flushed

    # --- the step ---------------------------------------------------------------------

    def install(self, *_: Any) -> None:
        with self.lock:
            self._reset()
            header = self.ip.kernel.get_parent().get("header") or {}
            self.step = header.get("msg_id")
            for name, writer in self.writers.items():
                stream = getattr(sys, name)
                current = stream.write
                if current != writer:  # not left installed by a step that broke off
                    self.through[name] = current
                try:
                    stream.write = writer
                except (AttributeError, TypeError):
                    continue  # a stream the step's code put there: not guarded
                self.streams[name] = stream
                self.parents[name] = getattr(stream, "parent_header", None)
            self.active = True

    def remove(self, *_: Any) -> None:
        with self.lock:
            if not self.active:
                return
            self._release()
            self.active = False
            for name, stream in self.streams.items():
                if getattr(stream, "write", None) == self.writers[name]:
                    stream.write = self.through[name]
            self.streams.clear()
            self.held = []
            self.run = None

    # --- streams ----------------------------------------------------------------------

    def _writer(self, name: str) -> Any:
        def write(text: object) -> int:
            if not (self.active and isinstance(text, str)) or not self._ours(name):
                # What is not text raises, as the stream itself does (the traceback
                # is shown without this frame, see _on_error); what is written for
                # another request (a thread of an earlier step, a comm handler while
                # an async step waits) is that request's, and passes.
                return self.through[name](text)  # type: ignore[no-any-return]
            with self.lock:
                self._write(name, text)
            return len(text)

        return write

    def _ours(self, name: str) -> bool:
        """Whether the caller writes for this step (the kernel's fd watcher does:
        output of the step's subprocesses). The stream's parent is per thread and
        task; the step's own is the very object it had when the step began."""
        parent = getattr(self.streams.get(name), "parent_header", None)
        if parent is self.parents.get(name):
            return True
        return ((parent or {}).get("header") or {}).get("msg_id") == self.step

    def _write(self, name: str, text: str) -> None:
        self._arrive()
        run = self.run
        if run is None or run.name != name:
            run = self.run = _Run(name)
            if not self.hold:
                self.items += 1
                self._count_sent()
            elif self.counting and self.items >= self.max_outputs:
                self.dropped_outputs += 1
                run.discarded = True
            else:
                self.items += 1
        if run.discarded:
            return
        if not self.hold:
            room = self.head - run.length
            if len(text) <= room:
                run.length += len(text)
                self.through[name](text)
                self.wrote = True
                return
            # the run outgrows its head: the head passes, the rest is held, and so
            # is all that follows in this step
            if room > 0:
                run.length += room
                self.through[name](text[:room])
                self.wrote = True
                text = text[room:]
            self.hold = True
        if not run.queued:
            run.queued = True
            self.held.append(run)
        run.hold(text, self.head, self.tail)

    # --- displays ---------------------------------------------------------------------

    def _on_display(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        if not self.active:
            return msg
        with self.lock:
            kind = msg["msg_type"]
            content = msg["content"]
            if kind == "clear_output":
                return self._clear(msg, bool(content.get("wait")))
            display_id = (content.get("transient") or {}).get("display_id")
            if kind == "update_display_data":
                if not self.hold:
                    self._count_sent()
                    return msg
                if display_id:
                    self._update_held(display_id, msg)
                return None
            # display_data
            self._arrive()
            self.run = None
            if not self.hold:
                self.items += 1
                self._count_sent()
                return msg
            if display_id:
                self._update_held(display_id, None, content)
            if self.counting and self.items >= self.max_outputs:
                self.dropped_outputs += 1
                if display_id:  # it still updates the outputs shown with its id
                    self._update_held(display_id, _as_update(self.ip, msg))
                return None
            self.items += 1
            self.held.append(msg)
            return None

    def _count_sent(self) -> None:
        self.sent += 1
        if self.sent > self.budget:
            self.hold = True

    def _clear(self, msg: dict[str, Any], wait: bool) -> dict[str, Any] | None:
        if not self.hold:
            self._count_sent()
            if wait:
                self.wait = True
            else:
                self._cleared()
            return msg
        if wait:
            if not self.wait:
                self.wait = True
                self.held.append(msg)
            return None
        self.held = [*_survivors(self.ip, self.held), msg]
        self._cleared()
        return None

    def _cleared(self) -> None:
        self.items = 0
        self.dropped_outputs = self.reported = 0
        self.run = None
        self.wait = False

    def _arrive(self) -> None:
        """An output arrives: a waiting clear_output takes effect."""
        if not self.wait:
            return
        clears = [i for i, op in enumerate(self.held) if _is_clear(op)]
        if clears:
            # what the clear removes need not go out (but for its updates)
            last = clears[-1]
            self.held = [*_survivors(self.ip, self.held[:last]), *self.held[last:]]
        self._cleared()

    def _update_held(
        self,
        display_id: str,
        update: dict[str, Any] | None,
        content: dict[str, Any] | None = None,
    ) -> None:
        """Apply an update to the held outputs with ``display_id``; keep it, as the
        only held update of that id, for the outputs that went out already."""
        content = content if content is not None else update["content"]  # type: ignore[index]
        for op in self.held:
            if (
                isinstance(op, dict)
                and op["msg_type"] == "display_data"
                and (_op_id(op) == display_id)
            ):
                op["content"]["data"] = content.get("data", {})
                op["content"]["metadata"] = content.get("metadata", {})
        if update is None:
            return
        self.held = [op for op in self.held if not (_is_update(op) and _op_id(op) == display_id)]
        self.held.append(update)

    # --- where order shows --------------------------------------------------------

    def _on_result(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.active:
            with self.lock:
                self._arrive()
                self.run = None
                self._release()
        return msg

    def _on_error(self, etype: Any, evalue: Any, stb: list[str]) -> Any:
        # agentnb's own frames (this module's wrappers, between the step's code and
        # the stream or comm that raised) are not the step's business
        stb = [entry for entry in stb if not _OWN_FRAME.match(_ANSI.sub("", entry))]
        if self.active:
            with self.lock:
                self._arrive()
                self.run = None
                self._release()
        return self._show_traceback(etype, evalue, stb)

    def before_comm(self) -> None:
        if self.active:
            with self.lock:
                self.counting = False  # an Output widget may capture what follows
                self.run = None
                self._release()

    def _release(self) -> None:
        """Send what is held, in order, with the count of outputs left out since the
        last clear (before a clear that waits for an output, which it is not)."""
        held, self.held = self.held, []
        if self.dropped_outputs > self.reported and "stderr" in self.streams:
            count = self.dropped_outputs - self.reported
            self.reported = self.dropped_outputs
            clears = [i for i, op in enumerate(held) if _is_clear(op)]
            at = clears[-1] if self.wait and clears else len(held)
            held.insert(at, _Count(count))
        pub = self.ip.display_pub
        for op in held:
            if isinstance(op, _Count):
                self.through["stderr"](OUTPUTS_SENTINEL.format(n=op.n))
                self.wrote = True
                continue
            if isinstance(op, _Run):
                text = op.take(self.tail)
                if text:
                    self.through[op.name](text)
                    self.wrote = True
                continue
            self._flush_streams()
            pub.session.send(pub.pub_socket, op, ident=pub.topic)
        self._flush_streams()

    def _flush_streams(self) -> None:
        if self.wrote:
            self.wrote = False
            for stream in self.streams.values():
                stream.flush()


class _Count:
    """Where the count of outputs left out goes among the held outputs."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


def _survivors(ip: Any, ops: list[Any]) -> list[dict[str, Any]]:
    """What is left of held outputs that a clear removes: the updates they carry to
    outputs shown elsewhere (a display with an id updates every output with that id,
    as it arrives), the last one of each id."""
    last: dict[Any, dict[str, Any]] = {}
    for op in ops:
        if _is_update(op):
            last.pop(_op_id(op), None)
            last[_op_id(op)] = op
        elif isinstance(op, dict) and op["msg_type"] == "display_data" and _op_id(op):
            last.pop(_op_id(op), None)
            last[_op_id(op)] = _as_update(ip, op)
    return list(last.values())


def _is_clear(op: Any) -> bool:
    return isinstance(op, dict) and op["msg_type"] == "clear_output"


def _is_update(op: Any) -> bool:
    return isinstance(op, dict) and op["msg_type"] == "update_display_data"


def _op_id(op: dict[str, Any]) -> Any:
    return (op["content"].get("transient") or {}).get("display_id")


def _as_update(ip: Any, msg: dict[str, Any]) -> dict[str, Any]:
    pub = ip.display_pub
    return pub.session.msg(  # type: ignore[no-any-return]
        "update_display_data", msg["content"], parent=msg["parent_header"]
    )


def _wrap_comms(outputs: _Outputs) -> None:
    """Held outputs go out before any comm message of the step (once per process)."""
    try:
        from ipykernel.comm.comm import BaseComm
    except ImportError:  # not an ipykernel: no comms to order against
        return
    publish: Any = BaseComm.publish_msg
    if getattr(publish, "_agentnb", False):
        return

    def publish_msg(self: Any, *args: Any, **kwargs: Any) -> Any:
        outputs.before_comm()
        return publish(self, *args, **kwargs)

    publish_msg._agentnb = True  # type: ignore[attr-defined]
    BaseComm.publish_msg = publish_msg  # type: ignore[method-assign]


def _after_step(*_: Any) -> None:
    # figures are closed, so memory does not grow plot after plot
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and pyplot.get_fignums():
        pyplot.close("all")
    # IPython 9 keeps every step's stream text in memory for `%history -o`,
    # which nobody reads in this kernel
    outputs = getattr(_history, "outputs", None)
    if outputs:
        outputs.clear()


class _Tidy:
    """Ends the processes a step left running and puts the working directory back.

    A forgotten ``Popen`` or server would outlive the step (and hold ports, files
    and memory until the session ends); a ``chdir`` or a deleted directory would
    make every later relative path, and the next restart, fail. Each repair is
    reported on stderr, in the step's own output, so the analyst sees it.
    """

    def __init__(self, home: str, *, whole_namespace: bool = False) -> None:
        self.home = home
        self.running: set[int] = set()
        # in the sandbox's PID namespace every process but its init and the kernel
        # is the agents' doing, daemons that left the kernel's tree by double-forking
        # and setsid included
        self.whole_namespace = whole_namespace
        self.clock = _PidClock()
        self.seen: int | None = None  # the clock when `running` was taken

    def _processes(self, prune: Collection[int] = ()) -> dict[int, str]:
        return _processes_of(None if self.whole_namespace else os.getpid(), prune)

    def _new(self) -> dict[int, str]:
        # what runs under a process that was there before the step is that process's
        # business (a kernel this one started, and the children it makes meanwhile)
        return self._processes(self.running)

    def before(self, *_: Any) -> None:
        # The cheap check, every step: no process (nor thread) was made since the
        # last look, so the processes running are those seen then. The walk through
        # /proc only when something was.
        now = self.clock.read()
        if now is None or now != self.seen:
            self.running = set(self._processes())
        self.seen = now

    def after(self, *_: Any) -> None:
        now = self.clock.read()
        changed = now is None or now != self.seen
        notes = [self._end_leftovers() if changed else "", self._go_home()]
        if changed:
            self.running = set(self._processes())
            self.seen = self.clock.read()
        notes = [note for note in notes if note]
        if notes:
            sys.stderr.write("".join(f"[agentnb] {note}\n" for note in notes))
            sys.stderr.flush()

    def _end_leftovers(self) -> str:
        now = self._new()
        left = {pid: cmd for pid, cmd in now.items() if pid not in self.running}
        if not left:
            return ""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and set(self._new()) & set(left):
                _reap()
                time.sleep(0.02)
            if not set(self._new()) & set(left):
                break
        _reap()
        names = ", ".join(f"{cmd or '?'} (pid {pid})" for pid, cmd in sorted(left.items())[:5])
        more = f" and {len(left) - 5} more" if len(left) > 5 else ""
        return (
            f"ended {len(left)} process{'es' if len(left) > 1 else ''} this step left running: "
            f"{names}{more}. Wait for child processes within the step (subprocess.run)."
        )

    def _go_home(self) -> str:
        try:
            here: str | None = os.getcwd()
        except FileNotFoundError:
            here = None
        if here == self.home:
            return ""
        note = ""
        if not os.path.isdir(self.home):
            os.makedirs(self.home, exist_ok=True)
            note = f"the step deleted the working directory {self.home}; it was made again, empty. "
        os.chdir(self.home)
        if here is None:
            note += "the step's working directory was deleted; "
        else:
            note += f"the step changed the working directory to {here}; "
        return note + f"steps run in {self.home}: use paths instead of os.chdir."


class _PidClock:
    """The last process or thread id the kernel's PID namespace handed out (Linux's
    ``ns_last_pid``): unchanged means no process was started meanwhile. One small
    read, some microseconds; None where there is no such file. (Opened at each read:
    a descriptor of it kept open made a new kernel's first step 10 ms slower.)"""

    path = "/proc/sys/kernel/ns_last_pid"

    def read(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            return int(os.read(fd, 32))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)


def _processes_of(parent: int | None, prune: Collection[int] = ()) -> dict[int, str]:
    """The live processes descended from ``parent`` (Linux /proc; elsewhere none),
    with their command lines, but none below a process in ``prune``; with no
    parent, every process of this PID namespace but its init and this one."""
    tree = None if parent is None else _tree_below(parent)
    children = tree if tree is not None else _whole_tree()
    found: dict[int, str] = {}
    if parent is None:
        me = os.getpid()
        todo = [pid for pids in children.values() for pid in pids if pid not in (1, me)]
    else:
        todo = list(children.get(parent, ()))
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
        except OSError:
            found[pid] = ""
        if parent is not None and pid not in prune:
            todo.extend(children.get(pid, ()))
    return found


def _whole_tree() -> dict[int, list[int]]:
    """Every live process of this PID namespace, by parent."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for entry in entries:
        up = _alive(entry) if entry.isdigit() else None
        if up is not None:
            children.setdefault(up, []).append(int(entry))
    return children


def _tree_below(root: int) -> dict[int, list[int]] | None:
    """The live processes below ``root``, by parent, from the kernel's per-thread
    ``children`` lists: a few reads instead of one per process of the machine (about
    4 ms a step on a desktop). None where the kernel does not provide those lists."""
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return None
    children: dict[int, list[int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        kids: list[int] = []
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids.extend(int(kid) for kid in f.read().split())
            except OSError:  # the thread or the process ended meanwhile
                continue
        live = [kid for kid in kids if _alive(str(kid)) is not None]
        if live:
            children[pid] = live
            todo.extend(live)
    return children


def _alive(pid: str) -> int | None:
    """The parent of a live process; None for a zombie (it has ended) or a gone one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == b"Z" else int(fields[1])


def _reap() -> None:
    # the kernel is the parent of what the step started: collect the exit statuses
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class _CpuLimit:
    """Per-step CPU seconds, through RLIMIT_CPU's soft limit and SIGXCPU."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = False
        self.hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        signal.signal(signal.SIGXCPU, self._expired)

    def arm(self, *_: Any) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime + self.seconds) + 1
        if self.hard != resource.RLIM_INFINITY:
            soft = min(soft, self.hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, self.hard))
        self.active = True

    def disarm(self, *_: Any) -> None:
        self.active = False
        resource.setrlimit(resource.RLIMIT_CPU, (self.hard, self.hard))

    def _expired(self, *_: Any) -> None:
        # The signal repeats every second past the soft limit; raise once, and
        # never between steps, where it would hit the kernel's own machinery.
        if self.active:
            self.active = False
            raise CPUTimeLimitExceeded(f"the step used more than {self.seconds:g} s of CPU time")


# --- data hand-off ----------------------------------------------------------------


def _open_data_comm(comm: Any, _msg: Any) -> None:
    comm.on_msg(lambda msg: _on_data_msg(comm, msg))


def _on_data_msg(comm: Any, msg: dict[str, Any]) -> None:
    from IPython import get_ipython

    namespace = get_ipython().user_ns
    request = msg["content"]["data"]
    name = request.get("name")
    try:
        if request.get("op") == "push":
            # Writable copies: arrays rebuilt on the wire's read-only frames
            # would refuse in-place edits.
            buffers = [bytearray(b) for b in msg.get("buffers") or []]
            namespace[name] = pickle.loads(buffers[0], buffers=buffers[1:])
            comm.send({"ok": True, "summary": _summary(namespace[name])})
        elif request.get("op") == "pull":
            if name not in namespace:
                comm.send({"ok": False, "error": f"there is no variable named {name!r}"})
                return
            meta, payload = _encode(namespace[name])
            comm.send({"ok": True, **meta}, buffers=payload)
        else:
            comm.send({"ok": False, "error": f"unknown operation {request.get('op')!r}"})
    except Exception as err:
        comm.send({"ok": False, "error": f"{type(err).__name__}: {err}"})


def _summary(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return f"{type(value).__name__} {'×'.join(str(n) for n in shape)}"
    return type(value).__name__


def _encode(value: Any) -> tuple[dict[str, Any], list[Any]]:
    """A value as (description, buffers) in formats that cannot carry code."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame | pandas.Series):
        import pyarrow as pa

        series = isinstance(value, pandas.Series)
        frame = value.to_frame() if series else value
        # None: a RangeIndex travels as metadata, any other index as columns
        table = pa.Table.from_pandas(frame, preserve_index=None)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        meta: dict[str, Any] = {"kind": "series" if series else "dataframe"}
        if series:
            meta["name"] = value.name if isinstance(value.name, str | int | float) else None
        return meta, [sink.getvalue()]
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.dtype.kind not in PULLABLE_ARRAY_KINDS or value.dtype.names:
            raise TypeError(
                f"arrays of dtype {value.dtype} cannot be pulled; convert to a numeric, "
                "string or datetime array or to a DataFrame first"
            )
        array = numpy.ascontiguousarray(value)
        return {"kind": "ndarray", "dtype": array.dtype.str, "shape": list(array.shape)}, [
            array.tobytes()
        ]
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        raise TypeError(
            f"a {type(value).__module__}.{type(value).__qualname__} cannot be pulled; pull "
            "takes DataFrames, Series, numpy arrays and JSON-like values (numbers, "
            "strings, lists, dicts); convert it first, e.g. pd.DataFrame(value)"
        ) from None
    return {"kind": "json"}, [text.encode()]
