"""Data for the agents: loading files in the managed kernel, and summaries of it.

Both run as code in the managed kernel, so they work the same for pushed
DataFrames, files and remote kernels, and the loading code is exactly what the
saved notebook will need to run from a fresh kernel.
"""

from __future__ import annotations

import ast
import keyword
import re
from pathlib import Path

from ..errors import ConfigError

__all__ = [
    "CELL_CHARS",
    "NAME_CHARS",
    "VALUE_CHARS",
    "assigned",
    "loader_code",
    "summary_code",
    "variable_name",
]

_READERS = {
    ".csv": "pd.read_csv({path!r})",
    ".tsv": "pd.read_csv({path!r}, sep='\\t')",
    ".txt": "pd.read_csv({path!r}, sep=None, engine='python')",
    ".parquet": "pd.read_parquet({path!r})",
    ".pq": "pd.read_parquet({path!r})",
    ".feather": "pd.read_feather({path!r})",
    ".json": "pd.read_json({path!r})",
    ".jsonl": "pd.read_json({path!r}, lines=True)",
    ".xlsx": "pd.read_excel({path!r})",
    ".xls": "pd.read_excel({path!r})",
    ".pkl": "pd.read_pickle({path!r})",
    ".pickle": "pd.read_pickle({path!r})",
}


def variable_name(path: Path) -> str:
    """A Python name for a data file: ``sales-2024.csv`` → ``sales_2024``."""
    stem = path.name.split(".")[0]
    name = re.sub(r"\W+", "_", stem).strip("_").lower() or "data"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"df_{name}"
    return name


def assigned(code: str | None) -> set[str]:
    """The names a data-loading cell binds (none for code that does not parse)."""
    if not code:
        return set()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def loader_code(files: dict[str, Path]) -> str:
    """Code that loads each file into a DataFrame named by its key."""
    lines = ["import pandas as pd", ""]
    for name, path in files.items():
        suffix = "".join(path.suffixes[-1:]).lower()
        if suffix == ".gz" and len(path.suffixes) > 1:
            suffix = path.suffixes[-2].lower()
        reader = _READERS.get(suffix)
        if reader is None:
            known = ", ".join(sorted(_READERS))
            raise ConfigError(
                f"--data {path}: agentnb cannot tell how to read a {path.suffix or 'suffix-less'} "
                f"file (it reads {known}); load it in a notebook and pass the DataFrame instead"
            )
        lines.append(f"{name} = {reader.format(path=str(path))}")
    return "\n".join(lines)


# What the data summary shows of one cell, label or value. Data is untrusted and
# goes into every prompt, so these bound what any string of it can say there.
CELL_CHARS = 100
"""A cell of the head, at most (pandas cuts it, ending in ``...``). Enough for a
sentence of free text, an address or a URL, so the agents can tell what a column
holds; five rows of a text column then cost at most 500 of the summary's
characters."""
NAME_CHARS = 60
"""A column or index label, or a dtype, at most (cut to end in ``…``). A column's
name appears up to four times (dtypes, head, numeric summary, missing values);
60 keeps even verbose names apart."""
VALUE_CHARS = 600
"""The repr of a value that is not a DataFrame or a Series, at most."""

# Runs in the managed kernel; prints one block per name. Kept short for the
# model: dtypes, a head as text, numeric stats, missing values. Every label and
# cell is cut, and control characters in labels are escaped, so a hostile name
# cannot start a line of its own.
_SUMMARY = """
def _agentnb_summary(_names, _cell, _label_max, _value):
    import re as _re
    import pandas as _pd
    _control = _re.compile("[\\x00-\\x1f\\x7f]")
    _cuts = []

    def _cut(_x, _n):
        _s = _control.sub(lambda _m: repr(_m.group())[1:-1], str(_x))
        if len(_s) <= _n:
            return _s
        _cuts.append(_s)
        return _s[: _n - 1] + "\u2026"

    def _label(_x):
        return _cut(_x, _label_max) if isinstance(_x, str) or len(str(_x)) > _label_max else _x

    _pd_opts = ("display.width", 120, "display.max_columns", 30)
    with _pd.option_context(*_pd_opts):
        for _name in _names:
            _cuts.clear()
            _v = globals().get(_name)
            if isinstance(_v, _pd.Series):
                _v = _v.to_frame()
            if not isinstance(_v, _pd.DataFrame):
                _r = repr(_v)
                _r = _r if len(_r) <= _value else _r[: _value - 1] + "\u2026"
                print(f"### {_name}: {type(_v).__name__}\\n{_r}\\n")
                continue
            _rows, _cols = _v.shape
            print(f"### {_name}: DataFrame, {_rows:,} rows x {_cols} columns")
            _types = _v.dtypes.astype(str).items()
            _types = [f"{_label(_c)} {_cut(_t, _label_max)}" for _c, _t in _types]
            print("dtypes: " + ", ".join(_types))
            print("head:")
            _head = _v.head(5).rename(columns=_label, index=_label)
            print(_head.to_string(max_cols=30, max_colwidth=_cell))
            _long = any(len(str(_x)) > _cell for _x in _head.to_numpy().ravel())
            _num = _v.select_dtypes("number")
            if _num.shape[1]:
                print("numeric summary:")
                _stats = _num.describe().T[["mean", "std", "min", "max"]].round(3)
                print(_stats.rename(index=_label).to_string())
            _na = _v.isna().sum()
            _na = _na[_na > 0]
            _missing = ", ".join(f"{_label(_c)} {_n}" for _c, _n in _na.items())
            print("missing values: " + (_missing or "none"))
            if _cuts or _long:
                print(f"(labels over {_label_max} and cells over {_cell} characters are cut)")
            print()
_agentnb_summary(@NAMES@, @CELL@, @NAME@, @VALUE@)
del _agentnb_summary
"""


def summary_code(names: list[str]) -> str:
    """Code that prints a compact summary of each named value in the kernel."""
    return (
        _SUMMARY.replace("@NAMES@", repr(list(names)))
        .replace("@CELL@", str(CELL_CHARS))
        .replace("@NAME@", str(NAME_CHARS))
        .replace("@VALUE@", str(VALUE_CHARS))
        .strip()
    )
