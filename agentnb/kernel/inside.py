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
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import importlib
import json
import os
import pickle
import resource
import signal
import sys
import time
from collections.abc import Collection
from typing import Any

COMM_TARGET = "agentnb.data"
# Written in place of the dropped middle of a stream; the client turns it into its
# own marker. NUL bytes never occur in text a program means to print.
DROPPED_SENTINEL = "\x00agentnb-dropped:{n}\x00"

PULLABLE_ARRAY_KINDS = "biufcmMSU"  # numeric, datetime, bytes, str: no objects
_crash_log: Any = None


class CPUTimeLimitExceeded(BaseException):
    """Raised in a step that used up its CPU seconds.

    A BaseException, like KeyboardInterrupt, so `except Exception` in agent code
    does not swallow it.
    """


def setup(options: dict[str, Any]) -> dict[str, Any]:
    """Prepare the kernel; return what was preloaded and what was missing."""
    from IPython import get_ipython

    ip = get_ipython()
    loaded, missing = _preload(options.get("preload", ()))
    for name in ("stdout", "stderr"):
        guard = _StreamGuard(name, options["stream_head"], options["stream_tail"])
        ip.events.register("pre_run_cell", guard.install)
        ip.events.register("post_run_cell", guard.remove)
    ip.events.register("post_run_cell", _close_figures)
    tidy = _Tidy(os.getcwd(), whole_namespace=bool(options.get("sandboxed")))
    ip.events.register("pre_run_cell", tidy.before)
    ip.events.register("post_run_cell", tidy.after)
    ip.events.register("post_run_cell", _forget_stream_history)
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


class _StreamGuard:
    """Passes the head of a step's stream through; holds back only the tail.

    Installed at the start of every step, in front of IPython's own per-cell tee
    of ``write`` (which would otherwise keep every character in its output
    history), and removed at the end of the step.
    """

    def __init__(self, name: str, head: int, tail: int) -> None:
        self.name = name
        self.head = head
        self.tail_limit = tail
        self.write_through: Any = None
        self.passed = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0
        self.dropped = 0

    def install(self, *_: Any) -> None:
        stream = getattr(sys, self.name)
        self.write_through = stream.write
        stream.write = self.write

    def write(self, text: object) -> int:
        if not isinstance(text, str):
            return self.write_through(text)  # type: ignore[no-any-return]  # it raises
        n = len(text)
        room = self.head - self.passed
        if room > 0:
            self.passed += min(room, n)
            self.write_through(text[:room])
            text = text[room:]
        if text:
            self.tail.append(text)
            self.tail_len += len(text)
            if self.tail_len > 2 * self.tail_limit:
                kept = "".join(self.tail)[-self.tail_limit :]
                self.dropped += self.tail_len - len(kept)
                self.tail = collections.deque([kept])
                self.tail_len = len(kept)
        return n

    def remove(self, *_: Any) -> None:
        if self.write_through is None:
            return
        tail = "".join(self.tail)
        cut = max(len(tail) - self.tail_limit, 0)
        dropped = self.dropped + cut
        if dropped:
            self.write_through(DROPPED_SENTINEL.format(n=dropped))
        if tail:
            self.write_through(tail[cut:])
        stream = getattr(sys, self.name)
        if getattr(stream, "write", None) == self.write:
            stream.write = self.write_through
        self.write_through = None
        self.passed = self.tail_len = self.dropped = 0
        self.tail.clear()


def _forget_stream_history(*_: Any) -> None:
    # IPython 9 keeps every step's stream text in memory for `%history -o`,
    # which nobody reads in this kernel.
    from IPython import get_ipython

    outputs = getattr(get_ipython().history_manager, "outputs", None)
    if isinstance(outputs, dict):
        outputs.clear()


def _close_figures(*_: Any) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


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

    def _processes(self, prune: Collection[int] = ()) -> dict[int, str]:
        return _processes_of(None if self.whole_namespace else os.getpid(), prune)

    def _new(self) -> dict[int, str]:
        # what runs under a process that was there before the step is that process's
        # business (a kernel this one started, and the children it makes meanwhile)
        return self._processes(self.running)

    def before(self, *_: Any) -> None:
        self.running = set(self._processes())

    def after(self, *_: Any) -> None:
        notes = [note for note in (self._end_leftovers(), self._go_home()) if note]
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
