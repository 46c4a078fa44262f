"""Fidelity: notebooks run cell by cell through nbclient and through ManagedKernel
give the same outputs, but where agentnb differs by design (README, "Fidelity").

Each notebook runs in a fresh nbclient kernel (the ``python3`` kernelspec: this
interpreter, unsandboxed, as a user's notebook) and in a fresh managed kernel
(sandboxed, as by default), each cell as one step. What is compared is what a
notebook finally shows: for agentnb, each step's outputs with the updates later
steps made to them (``Execution.updates``); for nbclient, each cell's outputs,
with an ipywidgets ``Output`` widget's view replaced by the outputs nbclient's
widget state holds for it (agentnb shows those in place of the view). Terminal
colours are removed from tracebacks on both sides (agentnb removes them), and a
widget's random model id is replaced by a placeholder.

The notebooks are small and of the kind the Jupyter projects test with: rich
outputs, display ids, clear_output, streams, errors, widgets, stdin, interrupts,
and papermill's own test notebooks, as installed with papermill.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from agentnb import Execution, ManagedKernel
from agentnb.chat.messages import apply_updates

TIMEOUT = 3  # seconds a cell may run: the interrupt notebook waits it out

# One cell per string; each notebook runs in new kernels.
NOTEBOOKS: dict[str, list[str]] = {
    "rich outputs": [
        "import sys\nprint('hello')\nprint('to stderr', file=sys.stderr)\nprint('again')",
        "from IPython.display import HTML, JSON, Latex, Markdown, display\n"
        "display(HTML('<b>bold</b>'), Markdown('*md*'), JSON({'a': [1, 2]}), Latex(r'$x^2$'))",
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2), dpi=40)\n"
        "ax.plot([1, 3, 2])\nplt.show()",
        "{'dict': 1, 'list': [1, 2, 3]}",
        "display(1, 2)\n3",
        "x = 5\nx;",
        "%%capture cap\nprint('hidden')\ndisplay('also hidden')",
        "print(cap.stdout, end='')\ncap.outputs[0].data",
        "import contextlib, io\nbuf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n    print('redirected')\nbuf.getvalue()",
    ],
    "display ids": [
        "h = display('0 %', display_id=True)",
        "h.update('100 %')",
        "display('first', display_id='same')\ndisplay('other', display_id='other')\n"
        "display('second', display_id='same')",
        "display('third', display_id='same')",
        "from IPython.display import update_display\nupdate_display('nobody', display_id='none')",
        "g = display('a', display_id=True)\ng.update('b')\ng.display('c')",
        "from IPython.display import clear_output\nk = display('cleared', display_id='k')\n"
        "clear_output()\nk.update('after the clear')\nprint('end')",
        "k.update('later')",
    ],
    "clear_output": [
        "from IPython.display import clear_output\nprint('gone')\nclear_output()\nprint('kept')",
        "print('stays')\nclear_output(wait=True)",
        "for i in range(3000):\n    clear_output(wait=True)\n    print(f'step {i}')",
        "for i in range(300):\n    clear_output(wait=True)\n    display(f'frame {i}')",
        "import sys\nprint('a')\nclear_output(wait=True)\nprint('err', file=sys.stderr)",
        "p = display('bar 0', display_id=True)\nfor i in range(2000):\n    p.update(f'bar {i}')",
    ],
    "streams": [
        "print('y' * 12000)\ndisplay('D')\nraise ValueError('boom')",
        "import sys\nfor i in range(3):\n    print(i, flush=True)\n"
        "    print('e', i, file=sys.stderr, flush=True)",
        "print('no newline', end='')\nprint(' joined')",
        "import sys\nsys.stdout.write('written\\n')\nsys.stdout.writelines(['a\\n', 'b\\n'])",
        "print('\\r progress 1', end='')\nprint('\\r progress 2')",
        "for i in range(200):\n    print('x' * 100)\n"
        "    print('y' * 100, file=__import__('sys').stderr)",
        "print('z' * 30_000)",
    ],
    "errors": [
        "1/0",
        "def f():\n    raise KeyError('price')\nf()",
        "import sys\nsys.stdout.write(b'x')",
        "x = (",
        "class Bad:\n    def _repr_html_(self):\n        raise RuntimeError('no html')\n"
        "    def __repr__(self):\n        return 'Bad()'\nBad()",
        "import warnings\nwarnings.warn('careful')",
        "assert False, 'nope'",
        "raise SystemExit(3)",
    ],
    "widgets": [
        "import ipywidgets as widgets\nout = widgets.Output()\ndisplay(out)\n"
        "with out:\n    print('inside')\nprint('outside')",
        "with out:\n    raise ValueError('in the widget')\nprint('the cell is ok')",
        "print('printed before')\nwith out:\n    from IPython.display import clear_output\n"
        "    clear_output()\n    print('after the clear')",
        "out2 = widgets.Output()\nwith out2:\n    display('captured before shown')\nout2",
        "out2.append_stdout('appended\\n')",
        "len(out2.outputs)",
        "widgets.IntSlider(value=3)",
    ],
    "stdin": [
        "input('name? ')",
        "import getpass\ngetpass.getpass()",
    ],
    "tidy-up": [
        "import subprocess\np = subprocess.Popen(['sleep', '30'])",
        "import os\nos.mkdir('elsewhere')\nos.chdir('elsewhere')",
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2]);",
        "len(plt.get_fignums())",
    ],
    "interrupts": [
        "x = 41",
        "print('started', flush=True)\nimport time\ntime.sleep(30)",
        "x + 1",
    ],
}

# Where agentnb differs by design (the README's "Fidelity" table says why).
DESIGNED: dict[tuple[str, int], str] = {
    ("streams", 5): "caps: a step keeps 100 outputs, and counts the rest",
    ("streams", 6): "caps: a stream run keeps its first and last 10,000 characters",
    ("tidy-up", 0): "tidy-up: a process the step left running is ended, and said so",
    ("tidy-up", 1): "tidy-up: the working directory is put back, and said so",
    ("tidy-up", 3): "figures are closed after every step, on any backend",
}

PAPERMILL = [
    "simple_execute",
    "broken1",
    "sysexit1",
    "sysexit0",
    "systemexit",
    "line_magic_error",
    "report_mode_test",
    "result_no_exec",
    "test_logging",
]


def papermill_notebook(name: str) -> list[str]:
    papermill = pytest.importorskip("papermill")
    path = Path(papermill.__file__).parent / "tests" / "notebooks" / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"papermill's test notebook {name} is not installed")
    nb = nbformat.read(path, as_version=4)
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


# --- running ------------------------------------------------------------------------


def run_nbclient(cells: Sequence[str], cwd: Path) -> list[list[dict[str, Any]]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=TIMEOUT,
        interrupt_on_timeout=True,
        allow_errors=True,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = state.get("state", {})
    return [_expand_views(cell.outputs, models) for cell in nb.cells]


def _expand_views(outputs: list[Any], models: dict[str, Any]) -> list[dict[str, Any]]:
    """An Output widget's view replaced by the outputs its state holds."""
    shown: list[dict[str, Any]] = []
    for out in outputs:
        view = out.get("data", {}).get(_VIEW)
        model = models.get(view.get("model_id")) if isinstance(view, dict) else None
        if model is not None and model.get("model_name") == "OutputModel":
            shown.extend(model["state"].get("outputs", []))
        else:
            shown.append(out)
    return shown


async def run_agentnb(kernel: ManagedKernel, cells: Sequence[str]) -> list[Execution]:
    executions: list[Execution] = []
    for source in cells:
        execution = await kernel.execute(source, timeout=TIMEOUT)
        executions = [*apply_updates(executions, execution), execution]
    return executions


# --- comparing -----------------------------------------------------------------------

_VIEW = "application/vnd.jupyter.widget-view+json"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CELL_FILE = re.compile(r"ipykernel_\d+")  # a cell's file names the kernel's pid


def normal(outputs: Sequence[Any]) -> list[dict[str, Any]]:
    """Outputs as plain JSON, without what legitimately varies between two runs."""
    result = []
    text = _CELL_FILE.sub("ipykernel_<pid>", json.dumps(list(outputs), default=str))
    for out in json.loads(text):
        out.pop("metadata", None) if not out.get("metadata") else None
        if out.get("output_type") == "error":
            out["traceback"] = [_ANSI.sub("", line) for line in out["traceback"]]
        view = out.get("data", {}).get(_VIEW)
        if isinstance(view, dict):
            view["model_id"] = "<model>"
            out["data"]["text/plain"] = re.sub(
                r"model_id=\S+", "model_id=<model>", out["data"].get("text/plain", "")
            )
        result.append(out)
    return result


async def compare(
    name: str,
    cells: Sequence[str],
    kernel: ManagedKernel,
    cwd: Path,
) -> list[str]:
    """The cells whose outputs differ and are not known to differ by design."""
    theirs = run_nbclient(cells, cwd)
    ours = await run_agentnb(kernel, cells)
    problems = []
    for i, (nbc, execution) in enumerate(zip(theirs, ours, strict=True)):
        a, b = normal(nbc), normal(execution.outputs)
        designed = (name, i) in DESIGNED
        if (a == b) == designed:
            what = "differs by design but is identical" if designed else "differs"
            problems.append(
                f"{name} cell {i} {what}:\n{cells[i]}\n"
                f"nbclient: {_show(a)}\nagentnb:  {_show(b)}\nstatus: {execution.status}"
            )
    return problems


def _show(outputs: list[dict[str, Any]]) -> str:
    text = json.dumps(outputs)
    return text if len(text) < 3_000 else text[:1_500] + " … " + text[-1_500:]


@pytest.mark.parametrize("name", list(NOTEBOOKS))
async def test_a_notebook_shows_what_nbclient_shows(
    name: str, make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    kernel = make_kernel(preload=(), cwd=str(tmp_path))
    problems = await compare(name, NOTEBOOKS[name], kernel, tmp_path)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("name", PAPERMILL)
async def test_papermills_notebooks_show_what_nbclient_shows(
    name: str, make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    cells = papermill_notebook(name)
    kernel = make_kernel(preload=(), cwd=str(tmp_path))
    problems = await compare(f"papermill {name}", cells, kernel, tmp_path)
    assert not problems, "\n\n".join(problems)


def test_the_readme_lists_every_designed_difference() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Fidelity", 1)[1].split("\n## ", 1)[0]
    for (name, cell), _ in DESIGNED.items():
        assert f"{name}, cell {cell + 1}" in section, (name, cell)
