"""The example notebooks in ``example_notebooks/``, as users and their CI run them.

Every notebook is checked as a file: valid nbformat, saved without outputs, a
``python3`` kernelspec, and every cell valid IPython whose ``%%agents`` flags
parse. The ones that need no key (the offline quickstart, and the local-model
notebook pointed at agentnb's scripted loopback server) are executed headless
from top to bottom, with nbclient and with papermill, in a temporary folder:
each ``%%agents`` cell must finish its analysis, and the analysis notebook the
quickstart saves must itself re-run. A ``%%agents`` cell that waits for a click
must fail fast there, saying to use ``--approve never``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode
from papermill.exceptions import PapermillExecutionError

from agentnb import demo
from agentnb.jupyter.session import parse_line
from agentnb.models.server import ScriptedServer

EXAMPLES = Path(__file__).resolve().parents[1] / "example_notebooks"
QUICKSTART = "01_quickstart_offline.ipynb"
LOCAL = "02_local_model.ipynb"
HOSTED = "03_openai_azure.ipynb"
NOTEBOOKS = (QUICKSTART, LOCAL, HOSTED)

LOCAL_MODEL = "llama3.1"
"""The model 02 names by default; the scripted server serves only this one."""
LOCAL_REPLIES = [
    # analyst, critic, analyst (final report), critic: what a local model might say
    "Revenue per order net of the discount, summed per product.\n\n"
    "```python\n"
    'sales["revenue"] = sales["units"] * sales["unit_price"] * (1 - sales["discount"])\n'
    'by_product = sales.groupby("product")["revenue"].sum().sort_values(ascending=False)\n'
    "by_product.round(0)\n"
    "```",
    "APPROVE. Revenue nets out the discount.",
    "The table above ranks the products by their 2024 revenue, net of discount.",
    "APPROVE.",
]

# --- the files -------------------------------------------------------------------------


def read(name: str) -> NotebookNode:
    return nbformat.read(EXAMPLES / name, as_version=4)


def agents_cells(notebook: NotebookNode) -> list[NotebookNode]:
    return [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith("%%agents")]


def cell(notebook: NotebookNode, cell_id: str) -> NotebookNode:
    return next(c for c in notebook.cells if c.get("id") == cell_id)


def text(code_cell: NotebookNode) -> str:
    """What a code cell showed as text: streams and plain-text results."""
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in code_cell.outputs
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_is_saved_clean(name: str) -> None:
    notebook = read(name)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for code in (c for c in notebook.cells if c.cell_type == "code"):
        assert code.outputs == [], code.id
        assert code.execution_count is None, code.id
        assert set(code.metadata) <= {"tags"}, code.id
    raw = (EXAMPLES / name).read_text(encoding="utf-8")
    assert str(Path(__file__).resolve().parents[1]) not in raw
    assert not re.search(r"(?<![\w.])/(home|Users|root|tmp|work|usr|opt)/", raw)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_cell_is_valid_ipython_and_every_agents_line_parses(name: str) -> None:
    notebook = read(name)
    transform = TransformerManager().transform_cell
    for code in (c for c in notebook.cells if c.cell_type == "code"):
        ast.parse(transform(code.source), filename=f"{name}:{code.id}")
    assert agents_cells(notebook)
    for code in agents_cells(notebook):
        line, _, task = code.source.partition("\n")
        parse_line(line.removeprefix("%%agents"))  # raises UsageError for a bad flag
        assert task.strip(), code.id


def test_the_quickstart_asks_what_the_scripted_replies_answer() -> None:
    (ask,) = agents_cells(read(QUICKSTART))
    assert ask.source.partition("\n")[2].strip() == demo.TASK
    assert "--approve never" in ask.source


def test_the_local_notebook_can_be_parameterised() -> None:
    notebook = read(LOCAL)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", ())]
    assert {"BASE_URL", "MODEL"} <= set(re.findall(r"^(\w+) =", parameters.source, re.M))


# --- running them ------------------------------------------------------------------------


def launches_this_python(argv: list[str]) -> bool:
    """A kernelspec command that starts ``sys.executable`` (jupyter_client runs
    ``sys.executable`` for a bare ``python``, ``python3`` or ``python3.X``)."""
    major, minor = sys.version_info[:2]
    if argv[0] in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True
    return Path(argv[0]).absolute() == Path(sys.executable).absolute()


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python3``, the kernel the notebooks name, starting this interpreter (which
    has agentnb). When the machine's ``python3`` kernelspec starts another Python,
    one that starts this one shadows it from a temporary JUPYTER_PATH."""
    try:
        argv = KernelSpecManager().get_kernel_spec("python3").argv
    except NoSuchKernel:
        argv = []
    if argv and launches_this_python(argv):
        yield "python3"
        return
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (agentnb tests)",
                "language": "python",
            }
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "JUPYTER_PATH",
            os.pathsep.join(filter(None, [str(root), os.environ.get("JUPYTER_PATH")])),
        )
        yield "python3"


def with_parameters(notebook: NotebookNode, parameters: dict[str, Any]) -> NotebookNode:
    """Set parameters as papermill does: a cell after the one tagged ``parameters``."""
    index = next(
        i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", ())
    )
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, injected)
    return notebook


Edit = Callable[[NotebookNode], None]
Run = Callable[..., NotebookNode]


@pytest.fixture(params=["nbclient", "papermill"])
def run_example(request: pytest.FixtureRequest, kernel_name: str, tmp_path: Path) -> Run:
    """``run_example(name, parameters=..., edit=...)``: copy the example into a fresh
    folder and execute it there headless; returns the executed notebook, or raises
    the engine's error for a cell that failed."""

    def run(name: str, parameters: dict[str, Any] | None = None, edit: Edit | None = None) -> Any:
        notebook = read(name)
        if edit is not None:
            edit(notebook)
        source = tmp_path / name
        nbformat.write(notebook, source)
        if request.param == "papermill":
            return papermill.execute_notebook(
                str(source),
                str(tmp_path / f"executed-{name}"),
                parameters=parameters or {},
                kernel_name=kernel_name,
                cwd=str(tmp_path),
                progress_bar=False,
            )
        if parameters:
            with_parameters(notebook, parameters)
        client = NotebookClient(
            notebook,
            timeout=120,
            kernel_name=kernel_name,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
        return notebook

    return run


def managed_kernel_pid(status: str) -> int:
    found = re.search(r"managed kernel: running \(pid (\d+)\)", status)
    assert found, status
    return int(found.group(1))


def assert_one_finished_chat(executed: NotebookNode) -> None:
    (ask,) = agents_cells(executed)
    # the chat's widget, and the chat as it ended for where no widget shows; no error
    assert [o.output_type for o in ask.outputs] == ["display_data", "display_data"]
    assert "application/vnd.jupyter.widget-view+json" in ask.outputs[0].data
    assert ask.outputs[1].metadata.agentnb.view == "static"


@pytest.mark.kernel
def test_the_quickstart_runs_headless_and_saves_a_notebook_that_reruns(
    run_example: Run, kernel_name: str, tmp_path: Path, wait_gone: Callable[..., bool]
) -> None:
    executed = run_example(QUICKSTART)
    assert_one_finished_chat(executed)
    status = text(cell(executed, "status"))
    assert "phase: done" in status
    assert "stop reason: approved" in status
    assert "steps: 1 ok, 2 ok, 3 ok" in status
    pulled = text(cell(executed, "pull"))
    assert re.search(r"South\s+22061\.0\s+38651\.0\s+75\.2", pulled), pulled
    saved = tmp_path / "quickstart-analysis.ipynb"
    assert text(cell(executed, "save")).startswith("saved ")
    assert saved.is_file()
    # the notebook's kernel is gone, and the agents' kernel with it
    assert wait_gone(managed_kernel_pid(status), within=10)

    analysis = nbformat.read(saved, as_version=4)
    nbformat.validate(analysis)
    assert analysis.metadata.agentnb.stop_reason.kind == "approved"
    assert "South grew fastest" in analysis.cells[-1].source
    # "Restart & Run All" of the saved analysis, in a fresh kernel: from sales.csv to the end
    NotebookClient(
        analysis,
        timeout=60,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for c in analysis.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.fixture
def local_server() -> Iterator[ScriptedServer]:
    """agentnb's OpenAI-compatible loopback server, standing in for Ollama."""
    with ScriptedServer(LOCAL_REPLIES, models=[LOCAL_MODEL]) as server:
        yield server


@pytest.mark.kernel
def test_the_local_model_notebook_runs_against_an_openai_compatible_server(
    run_example: Run, local_server: ScriptedServer
) -> None:
    executed = run_example(LOCAL, parameters={"BASE_URL": local_server.base_url})
    assert text(cell(executed, "check")) == f"models served: ['{LOCAL_MODEL}']\n"
    assert_one_finished_chat(executed)
    status = text(cell(executed, "status"))
    assert "stop reason: approved" in status
    assert f"model='{LOCAL_MODEL}' (%config Agents.model)" in status
    assert "steps: 1 ok" in status
    # every reply came from the server, through the openai client, for the notebook's model
    assert local_server.pending == 0
    assert {r["model"] for r in local_server.requests} == {LOCAL_MODEL}
    assert all(r["stream"] for r in local_server.requests)


def wait_for_a_click(notebook: NotebookNode) -> None:
    """The quickstart's %%agents cell as a first-time user may write it: approvals on."""
    (ask,) = agents_cells(notebook)
    ask.source = ask.source.replace(" --approve never", "")


@pytest.mark.kernel
def test_a_cell_waiting_for_approval_fails_fast_headless(run_example: Run) -> None:
    started = time.monotonic()
    with pytest.raises((CellExecutionError, PapermillExecutionError)) as failed:
        run_example(QUICKSTART, edit=wait_for_a_click)
    took = time.monotonic() - started
    assert failed.value.ename == "AgentsError"
    assert "nobody can approve step 1" in failed.value.evalue
    assert "--approve never" in failed.value.evalue
    assert took < 60, f"the headless cell took {took:.0f} s to give up"
