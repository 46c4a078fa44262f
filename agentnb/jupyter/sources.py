"""Where a saved analysis gets its data, so that it runs again anywhere.

Data pushed from a notebook session is recreated by the session's own code when
that code stands on its own: the statement that last bound the name and, in turn,
those that bound the names it uses (``rng = np.random.default_rng(1)`` before
``df = pd.DataFrame(... rng ...)``), with their imports (:func:`recreate`). Where
it does not (a name the history never binds, a frame changed in place by a later
cell, a value with no code at all) the value itself is saved beside the notebook,
as Parquet where it can be, and read from there (:func:`save_values`). Files are
named relative to the notebook's folder (:func:`relative_paths`), so the notebook
and its data can move together.
"""

from __future__ import annotations

import ast
import builtins
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["recreate", "relative_paths", "save_values"]

_BUILTINS = frozenset(dir(builtins))
_MAGIC = re.compile(r"^\s*[%!]", re.MULTILINE)
_MUTATORS = frozenset(
    {"append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "sort",
     "setdefault", "add", "discard", "reverse"}
)  # fmt: skip
"""Methods that change their object (pandas' only with ``inplace=True``, also caught)."""


def _statements(history: Sequence[str]) -> list[tuple[int, ast.stmt, str]]:
    """Every top-level statement of the session, with its cell and its source."""
    found = []
    for index, cell in enumerate(history):
        if _MAGIC.search(cell):  # magics and shell escapes are not Python
            continue
        try:
            tree = ast.parse(cell)
        except SyntaxError:
            continue
        for node in tree.body:
            source = ast.get_source_segment(cell, node)
            if source is not None:
                found.append((index, node, source))
    return found


def _binds(node: ast.stmt) -> set[str]:
    names: set[str] = set()
    if isinstance(node, ast.Import | ast.ImportFrom):
        for alias in node.names:
            names.add((alias.asname or alias.name).split(".")[0])
        return names
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
    return names


def _uses(node: ast.stmt) -> set[str]:
    """Names the statement reads that it does not bind itself first."""
    used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    inner: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.arg):
            inner.add(child.arg)
        elif isinstance(child, ast.comprehension):
            inner |= {n.id for n in ast.walk(child.target) if isinstance(n, ast.Name)}
    return used - inner - _BUILTINS


def _changes(node: ast.stmt, name: str) -> bool:
    """The statement may change ``name`` in place: an item or attribute set, a
    method call on it, ``del`` of a part of it."""
    for child in ast.walk(node):
        if isinstance(child, ast.Subscript | ast.Attribute) and isinstance(
            child.ctx, ast.Store | ast.Del
        ):
            base = child.value
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id == name:
                return True
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
            base = child.func.value
            in_place = child.func.attr in _MUTATORS or any(
                k.arg == "inplace" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in child.keywords
            )
            if in_place and isinstance(base, ast.Name) and base.id == name:
                return True
    return False


def recreate(history: Sequence[str], name: str) -> str | None:
    """Statements of the session that rebuild ``name`` as it was last bound, or
    None when they would not (see the module notes)."""
    statements = _statements(history)
    last = next(
        (i for i in range(len(statements) - 1, -1, -1) if name in _binds(statements[i][1])),
        None,
    )
    if last is None or isinstance(statements[last][1], ast.Import | ast.ImportFrom):
        return None
    # a later statement that may change it in place: its code no longer makes it
    if any(_changes(node, name) for _, node, _ in statements[last + 1 :]):
        return None
    needed = {last}
    todo = [last]
    while todo:
        position = todo.pop()
        for used in _uses(statements[position][1]):
            binder = next(
                (i for i in range(position - 1, -1, -1) if used in _binds(statements[i][1])),
                None,
            )
            if binder is None:
                return None  # a name the session never bound here: the code is not enough
            if binder not in needed:
                needed.add(binder)
                todo.append(binder)
    return "\n".join(statements[i][2] for i in sorted(needed))


def relative_paths(code: str, folder: Path, cwd: Path | None = None) -> str:
    """``code`` with every string constant that names an existing file written
    relative to ``folder`` (relative names are taken from ``cwd``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    base = cwd or Path.cwd()
    edits: list[tuple[int, int, int, int, str]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if not text or "\n" in text or len(text) > 4096:
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            if not path.is_file():
                continue
        except OSError:
            continue
        relative = os.path.relpath(path.resolve(), folder.resolve())
        if node.end_lineno is None or node.end_col_offset is None:
            continue
        edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, relative))
    if not edits:
        return code
    lines = code.splitlines(keepends=True)
    for start_line, start_col, end_line, end_col, relative in sorted(edits, reverse=True):
        if start_line != end_line:
            continue
        line = lines[start_line - 1].encode()
        line = line[:start_col] + repr(relative).encode() + line[end_col:]
        lines[start_line - 1] = line.decode()
    return "".join(lines)


def save_values(values: Mapping[str, Any], notebook: Path) -> dict[str, str]:
    """Write each value beside ``notebook`` (``<stem>_data/<name>.parquet``, or
    ``.pkl`` for what Parquet cannot hold) and return the code that reads it back."""
    if not values:
        return {}
    import pandas as pd

    folder = notebook.parent / f"{notebook.stem}_data"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot save the analysis's data in {folder}: {exc}") from None
    sources: dict[str, str] = {}
    for name, value in values.items():
        relative = f"{folder.name}/{name}"
        try:
            if isinstance(value, pd.DataFrame):
                value.to_parquet(folder / f"{name}.parquet")
                sources[name] = f"pd.read_parquet({relative + '.parquet'!r})"
                continue
            if isinstance(value, pd.Series):
                value.to_frame().to_parquet(folder / f"{name}.parquet")
                sources[name] = f"pd.read_parquet({relative + '.parquet'!r}).iloc[:, 0]"
                continue
        except (ImportError, ValueError, TypeError, OSError):
            pass  # no pyarrow, or columns Parquet cannot hold: pickle it
        try:
            with open(folder / f"{name}.pkl", "wb") as file:
                pickle.dump(value, file)
        except Exception as exc:  # anything pickle refuses
            raise ConfigError(
                f"cannot save {name} beside the notebook ({type(exc).__name__}: {exc}); the "
                "notebook needs a cell that defines it"
            ) from None
        sources[name] = f"pd.read_pickle({relative + '.pkl'!r})"
    return sources
