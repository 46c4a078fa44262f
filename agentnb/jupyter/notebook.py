"""The analysis notebook: a run as an nbformat v4 notebook that runs again.

:func:`build_notebook` is a pure function of a run's events, so the same notebook
comes from the live events and from the transcript (:func:`notebook_from_transcript`).
The cells, in order:

1. the title and the task (markdown);
2. the data: a note on each name, then the code that loaded the files (step 0,
   with its real outputs), then code that recreates data pushed from the user's
   session, when the caller said how (``data_sources``);
3. for each step that ran and succeeded: a markdown note (:func:`step_note`: the
   author's rationale, whether the user edited the code, the reviewers' approving
   comments as a short quote), then the code that ran with its real outputs from
   the managed kernel. The cells an ``%%agents`` cell inserts into the live
   notebook have the same two per step, and the report below them;
4. for each step that failed (error, timeout, dead kernel, interrupt): one
   markdown line where it happened, with the error's name and value and no
   traceback; it is not a code cell, so "Restart & Run All" does not stop on it;
5. the final report; when the run ended without an approved answer, the last
   report proposed (marked as not approved) and a closing note with the stop reason.

Decisions worth knowing:

- Code cells are numbered 1, 2, … in order, and ``execute_result`` outputs carry
  the same number, so the notebook looks freshly run.
- Data pushed from the user's session (names in :class:`~agentnb.chat.events.DataReady`
  that the loading code does not assign) has no code in the run that recreates it.
  ``data_sources`` maps such a name to code that does: an expression
  (``"pd.read_csv('sales.csv')"``, written as ``sales = pd.read_csv(...)``) or
  statements that bind the name; ``import pandas as pd`` / ``import numpy as np``
  are added when the code uses ``pd.`` / ``np.`` without importing them. A pushed
  name without a source gets a markdown note that says how to provide it; no code
  cell is invented for it, so running the notebook without it stops at the first
  step that uses it with a ``NameError`` naming it. Sources for names the run did
  not push are ignored.
- No import cell is added: the managed kernel's preload
  (:attr:`KernelConfig.preload <agentnb.kernel.KernelConfig.preload>`) imports
  modules without binding any name in the user namespace, so step code only ever
  had the names that it, earlier steps or the loading code bound.
- A failed step is left out even if it assigned variables before it failed; a later
  step that relies on such a variable will not re-run. The loading code of step 0
  is kept even when it failed (it is what the notebook needs); its outputs show why.
- Events of several runs (a transcript appended to twice): the last run wins.
- Cell ids are derived from the run id and the cell's position, so building twice
  gives equal notebooks.
- Outputs are those of model-written code, so they are untrusted: they pass through
  :func:`~agentnb.ui.untrusted.safe_outputs` (no script, sanitised HTML, a note where
  something was removed), no cell is marked trusted and the notebook is not signed,
  so nothing in it runs in a browser when it is opened.
- Every code cell carries its provenance in ``metadata["agentnb"]`` (run id, step,
  author, edited), and so do a step's note and the report (run id, step, ``kind``:
  ``reason`` or ``report``); the notebook's ``metadata["agentnb"]`` holds the agentnb
  version, run id, task, data names, models, tokens and cost per agent, and the
  stop reason.

:func:`save_notebook` validates the notebook and writes it atomically: a temporary
file in the same directory, flushed and synced, then renamed over the target. An
existing notebook is never left half-written, and the temporary file is removed
when anything fails.

One module past the usual length on purpose: the notebook's cells and its atomic
save are one deliverable.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chat.events import Event, RunStarted
from ..chat.messages import Execution
from ..chat.termination import StopReason
from ..chat.transcript import read_transcript
from ..errors import ConfigError
from ..kernel.outputs import Output, strip_ansi
from ..models.base import Usage
from ..record import RunRecord, StepRecord, subject
from ..ui.untrusted import safe_markdown, safe_outputs
from .sources import relative_paths

if TYPE_CHECKING:
    import nbformat

# nbformat is imported where a notebook is built or saved, not with agentnb: it imports
# jsonschema and its format checkers (about a second), which %load_ext should not wait for

__all__ = [
    "build_notebook",
    "note_provenance",
    "notebook_from_transcript",
    "report_note",
    "save_notebook",
    "step_note",
]

_TITLE_LIMIT = 80
_ERROR_VALUE_LIMIT = 300
_SUMMARY_LINE = re.compile(r"^### (\w+): (.+)$", re.MULTILINE)
_CELL_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_IMPORTS = {
    "pd": ("import pandas as pd", re.compile(r"\bpd\.")),
    "np": ("import numpy as np", re.compile(r"\bnp\.")),
}
_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
_LANGUAGE_INFO = {
    "name": "python",
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


# --- cells ---------------------------------------------------------------------------


class _Cells:
    def __init__(self, run_id: str) -> None:
        self.prefix = _CELL_ID_CHARS.sub("", run_id)[:40] or "agentnb"
        self.cells: list[dict[str, Any]] = []
        self.count = 0

    def _id(self) -> str:
        return f"{self.prefix}-{len(self.cells) + 1}"

    def markdown(self, source: str, provenance: dict[str, Any] | None = None) -> None:
        # the task, rationales, reviews and reports are model or user text, and a
        # notebook the user signs renders a markdown cell's raw HTML
        self.cells.append(
            {
                "cell_type": "markdown",
                "id": self._id(),
                "metadata": {"agentnb": provenance} if provenance else {},
                "source": safe_markdown(source.strip()),
            }
        )

    def code(self, source: str, outputs: Iterable[Output], provenance: dict[str, Any]) -> None:
        self.count += 1
        kept = [_output(out, self.count) for out in safe_outputs(outputs)]
        self.cells.append(
            {
                "cell_type": "code",
                "id": self._id(),
                "metadata": {"agentnb": provenance},
                "source": source.strip("\n"),
                "outputs": kept,
                "execution_count": self.count,
            }
        )


def _output(out: Output, count: int) -> dict[str, Any]:
    """A plain-JSON copy of an output (as the transcript holds it), renumbered."""
    copy: dict[str, Any] = json.loads(json.dumps(out, default=str))
    if copy.get("output_type") == "execute_result":
        copy["execution_count"] = count
    return copy


def build_notebook(
    run: RunRecord | Iterable[Event],
    *,
    data_sources: Mapping[str, str] | None = None,
    known: Collection[str] = (),
    folder: Path | None = None,
) -> nbformat.NotebookNode:
    """The analysis notebook of a run, from its record or its events (live or from a
    transcript, folded into a :class:`~agentnb.record.RunRecord`).

    Args:
        run: the run's record, or its events in order; a run still going gives the
            notebook so far.
        data_sources: for data pushed from the user's session, code that recreates
            each name (``{"sales": "pd.read_csv('sales.csv')"}``); see the module notes.
        known: data names that cells before this notebook define (an earlier analysis
            of the same session, see :func:`join_notebooks`): not described or
            loaded again, so the state those cells left is what the steps see.
        folder: where the notebook will be saved: files its data cells read are named
            relative to it, so the notebook runs again wherever the two are moved.

    Raises:
        ConfigError: a data source is not valid Python.
    """
    import nbformat

    from .. import __version__

    if not isinstance(run, RunRecord):
        run = RunRecord.fold(run)
    cells = _Cells(run.run_id)
    _title(cells, run)
    _data(cells, run, dict(data_sources or {}), set(known), folder)
    _steps(cells, run)
    _ending(cells, run)
    reason = run.reason
    metadata = {
        "kernelspec": dict(_KERNELSPEC),
        "language_info": json.loads(json.dumps(_LANGUAGE_INFO)),
        "agentnb": {
            "version": __version__,
            "run_id": run.run_id,
            "task": run.task,
            "data": list(run.data_names),
            "models": run.models,
            "usage": {agent: _usage_record(u) for agent, u in run.usage.items()},
            "cost": run.cost,
            "stop_reason": {"kind": reason.kind, "message": reason.message} if reason else None,
        },
    }
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata, "cells": cells.cells}
    node: nbformat.NotebookNode = nbformat.from_dict(notebook)  # type: ignore[no-untyped-call]
    return node


def join_notebooks(notebooks: Sequence[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """One notebook of a session's analyses, in order (build the later ones with
    ``known=``). Code cells are numbered on through the whole notebook; the
    metadata of each analysis is kept under ``metadata.agentnb.runs``."""
    import nbformat

    if not notebooks:
        raise ConfigError("no analysis to join")
    first = notebooks[0]
    if len(notebooks) == 1:
        return first
    joined: nbformat.NotebookNode = nbformat.from_dict(  # type: ignore[no-untyped-call]
        json.loads(json.dumps(first))
    )
    joined.cells = []
    count = 0
    for notebook in notebooks:
        for cell in json.loads(json.dumps(notebook.cells)):
            if cell["cell_type"] == "code":
                count += 1
                cell["execution_count"] = count
                for out in cell["outputs"]:
                    if out.get("output_type") == "execute_result":
                        out["execution_count"] = count
            joined.cells.append(nbformat.from_dict(cell))  # type: ignore[no-untyped-call]
    joined.metadata["agentnb"]["runs"] = [dict(n.metadata["agentnb"]) for n in notebooks]
    return joined


def notebook_from_transcript(
    path: str | os.PathLike[str], *, data_sources: Mapping[str, str] | None = None
) -> nbformat.NotebookNode:
    """The analysis notebook of the (last) run in a JSONL transcript.

    Raises:
        ConfigError: the transcript cannot be read or holds no run.
    """
    events = list(read_transcript(Path(path)))
    if not any(isinstance(e, RunStarted) for e in events):
        raise ConfigError(f"the transcript {path} holds no agentnb run (no RunStarted event)")
    return build_notebook(events, data_sources=data_sources)


def _title(cells: _Cells, run: RunRecord) -> None:
    task = run.task.strip()
    first = task.splitlines()[0].strip() if task else ""
    title = first if len(first) <= _TITLE_LIMIT else first[: _TITLE_LIMIT - 1].rstrip() + "…"
    lines = [f"# {title or 'Analysis'}", ""]
    if task and task != title:
        lines += ["**Task:**", "", _quote(task), ""]
    who = ", ".join(f"{agent} ({model})" for agent, model in run.models.items())
    byline = (
        f"An analysis by agentnb, run `{run.run_id}`" if run.run_id else "An analysis by agentnb"
    )
    lines.append(f"*{byline}{': ' + who if who else ''}.*")
    cells.markdown("\n".join(lines))


def _assigned(code: str) -> set[str]:
    """Names the loading code binds at its top level."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set(re.findall(r"^(\w+)\s*=", code, re.MULTILINE))
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _source_code(name: str, source: str) -> str:
    """Code that binds ``name``: ``name = <expression>``, or the statements as given."""
    source = source.strip()
    try:
        ast.parse(source, mode="eval")
    except SyntaxError:
        try:
            ast.parse(source)
        except SyntaxError as exc:
            raise ConfigError(
                f"data_sources[{name!r}] is not valid Python ({exc.msg}, line {exc.lineno}): "
                "give an expression such as \"pd.read_csv('sales.csv')\" or statements that "
                f"assign {name}"
            ) from None
        return source
    return f"{name} = {source}"


def _data(
    cells: _Cells, run: RunRecord, sources: dict[str, str], known: set[str], folder: Path | None
) -> None:
    names = tuple(n for n in run.data_names if n not in known)
    if not names and run.setup_code is None:
        return
    loaded = _assigned(run.setup_code) if run.setup_code else set()
    pushed = [n for n in names if n not in loaded]
    described = dict(_SUMMARY_LINE.findall(run.data.summary)) if run.data else {}

    def label(name: str) -> str:
        what = described.get(name)
        return f"`{name}` ({what})" if what else f"`{name}`"

    lines = ["## Data", ""]
    if run.setup_code is not None:
        from_files = [n for n in names if n in loaded] or sorted(loaded)
        lines.append("Loaded from files by the next cell: " + ", ".join(map(label, from_files)))
        if run.setup is not None and not run.setup.ok:
            lines.append("")
            lines.append(f"**Loading the data failed** ({_failure(run.setup)}).")
    recreated = [n for n in pushed if n in sources]
    missing = [n for n in pushed if n not in sources]
    if recreated:
        lines += [
            "",
            "Passed in from the Python session, and recreated by the code given for it: "
            + ", ".join(map(label, recreated)),
        ]
    if missing:
        example = missing[0]
        lines += [
            "",
            "Passed in from the Python session, with no code here that recreates it: "
            + ", ".join(map(label, missing))
            + ". Before running this notebook, add a cell here that defines "
            + ", ".join(f"`{n}`" for n in missing)
            + f" (for instance `{example} = pd.read_csv('...')`), or build the notebook "
            + f"with `data_sources={{'{example}': \"pd.read_csv('...')\"}}`.",
        ]
    cells.markdown("\n".join(lines))
    if run.setup_code is not None:
        outputs = run.setup.outputs if run.setup is not None else ()
        setup = run.setup_code if folder is None else relative_paths(run.setup_code, folder)
        cells.code(setup, outputs, run.provenance(0))
    if recreated:
        code = "\n".join(_source_code(n, sources[n]) for n in recreated)
        if folder is not None:
            code = relative_paths(code, folder)
        imports = [
            line
            for line, used in _IMPORTS.values()
            if used.search(code) and line not in code and line not in (run.setup_code or "")
        ]
        if imports:
            code = "\n".join(imports) + "\n\n" + code
        cells.code(code, (), run.provenance(0, author="user"))


def _steps(cells: _Cells, run: RunRecord) -> None:
    done = [(step, step.execution) for step in run.ran if step.execution is not None]
    for index, (step, execution) in enumerate(done):
        if execution.ok:
            _good_step(cells, run, step, execution)
        else:
            later = [s.number for s, _ in done[index + 1 :]]
            _failed_step(cells, step, execution, later[0] if later else None)


def _good_step(cells: _Cells, run: RunRecord, step: StepRecord, execution: Execution) -> None:
    cells.markdown(step_note(step), note_provenance(run, step.number))
    cells.code(execution.code, execution.outputs, run.provenance(step.number))


def step_note(step: StepRecord) -> str:
    """The markdown above a step's code, in the saved notebook and in the live one:
    its number, why its author proposed it, whether the user edited the code, and
    the reviewers who approved it, with their words."""
    lines = [f"## {subject(step.number).capitalize()}"]
    rationale = step.why.strip()
    if rationale:
        lines += ["", rationale]
    if step.edited:
        lines += [
            "",
            "*The user edited this code before it ran; the cell holds the code that ran.*",
        ]
    notes = []
    for review in step.approvals:
        words = review.text.strip()
        notes.append(
            f"**{review.sender}** approved: {words}" if words else f"**{review.sender}** approved."
        )
    if notes:
        lines += ["", _quote("\n\n".join(notes))]
    return "\n".join(lines)


def report_note(run: RunRecord) -> str | None:
    """The final report as a markdown cell, after the steps (the saved notebook's and
    the live one's); marked as not approved unless the run ended with it approved.
    None when no report was proposed."""
    report = run.final_report
    if report is None or not report.strip():
        return None
    if run.outcome == "approved":
        return "## Final report\n\n" + report.strip()
    return (
        "## Final report (not approved)\n\n"
        "*The reviewers or the user did not approve this report.*\n\n" + report.strip()
    )


def note_provenance(run: RunRecord, step: int | None) -> dict[str, Any]:
    """``metadata["agentnb"]`` of a markdown cell of a run: a step's note (``kind``
    ``reason``) or the final report (``kind`` ``report``, no step)."""
    if step is None:
        return {"run_id": run.run_id, "kind": "report"}
    return {"run_id": run.run_id, "step": step, "kind": "reason"}


def _failed_step(
    cells: _Cells, step: StepRecord, execution: Execution, next_step: int | None
) -> None:
    who = f" ({step.author})" if step.author is not None else ""
    then = (
        f"; the analysis went on with {subject(next_step)}."
        if next_step is not None
        else "; no step ran after it."
    )
    restarted = (
        " The kernel was restarted, so the variables of earlier steps were lost."
        if execution.restarted
        else ""
    )
    cells.markdown(
        f"*{subject(step.number).capitalize()}{who} {_failure(execution)} and is not part of "
        f"this notebook{then}*{restarted}"
    )


def _failure(execution: Execution) -> str:
    """How a step failed, in a few words: ``failed with `KeyError: 'price'```."""
    if execution.status == "error":
        error = execution.error
        if error is None:
            return "failed"
        name = strip_ansi(str(error.get("ename", "Error")))
        value = " ".join(strip_ansi(str(error.get("evalue", ""))).split())
        if len(value) > _ERROR_VALUE_LIMIT:
            value = value[: _ERROR_VALUE_LIMIT - 1] + "…"
        said = (f"{name}: {value}" if value else name).replace("`", "'")
        return f"failed with `{said}`"
    return {
        "timeout": "ran past its time limit and was interrupted",
        "died": "failed: the kernel died while it ran",
        "interrupted": "was interrupted",
    }.get(execution.status, f"ended with status {execution.status}")


def _ending(cells: _Cells, run: RunRecord) -> None:
    finished = run.finished
    report = report_note(run)
    if report is not None:
        cells.markdown(report, note_provenance(run, None))
    if finished is None:
        if run.started is not None:
            cells.markdown("---\n\n*The run had not finished when this notebook was built.*")
        return
    if run.outcome != "approved":
        cells.markdown(_stopped(finished.reason))


def _stopped(reason: StopReason) -> str:
    return (
        "---\n\n**The run ended without an approved answer** "
        f"(`{reason.kind}`): {reason.message.strip()}"
    )


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip().splitlines())


def _usage_record(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "calls": usage.calls,
        "estimated": usage.estimated,
    }


# --- saving -------------------------------------------------------------------------


def save_notebook(nb: nbformat.NotebookNode, path: str | os.PathLike[str]) -> Path:
    """Validate ``nb`` and write it to ``path`` atomically; return the path written.

    The notebook goes to a temporary file in the same directory, is synced to disk
    and then renamed over ``path``: an existing file is replaced whole or not at all,
    and the temporary file never outlives a failure.

    Raises:
        ConfigError: the notebook is not valid nbformat, or ``path`` cannot be written.
    """
    import nbformat

    target = Path(path).expanduser()
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise ConfigError(
            f"the notebook is not valid nbformat ({exc.message}); nothing was written to {target}"
        ) from None
    text: str = nbformat.writes(nb)  # type: ignore[no-untyped-call]
    data = (text if text.endswith("\n") else text + "\n").encode("utf-8")
    try:
        _write_atomically(target, data)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = Path(exc.filename) if exc.filename else None
        if where is not None and where != target and not where.name.startswith(f".{target.name}."):
            reason += f": {where}"  # a parent directory, not the notebook or its temporary file
        raise ConfigError(
            f"cannot write the notebook {target}: {reason}; choose a path in a writable directory"
        ) from exc
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    for folder in (target.parent, *target.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
            break
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None  # a new file: the umask decides, as for any other file
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (not offered everywhere)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
