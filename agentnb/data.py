"""Data for the agents: loading files in the managed kernel, and summaries of it.

Both run as code in the managed kernel, so they work the same for pushed
DataFrames, files and remote kernels, and the loading code is exactly what the
saved notebook will need to run from a fresh kernel.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from .errors import ConfigError

__all__ = ["loader_code", "summary_code", "variable_name"]

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


# Runs in the managed kernel; prints one block per name. Kept short for the
# model: dtypes, a head as text, numeric stats, missing values.
_SUMMARY = """
def _agentnb_summary(_names):
    import pandas as _pd
    _pd_opts = ("display.width", 120, "display.max_columns", 30, "display.max_colwidth", 40)
    with _pd.option_context(*_pd_opts):
        for _name in _names:
            _v = globals().get(_name)
            if isinstance(_v, _pd.Series):
                _v = _v.to_frame()
            if not isinstance(_v, _pd.DataFrame):
                _r = repr(_v)
                print(f"### {_name}: {type(_v).__name__}\\n{_r[:600]}\\n")
                continue
            _rows, _cols = _v.shape
            print(f"### {_name}: DataFrame, {_rows:,} rows x {_cols} columns")
            print("dtypes: " + ", ".join(f"{_c} {_t}" for _c, _t in _v.dtypes.astype(str).items()))
            print("head:")
            print(_v.head(5).to_string(max_cols=30))
            _num = _v.select_dtypes("number")
            if _num.shape[1]:
                print("numeric summary:")
                print(_num.describe().T[["mean", "std", "min", "max"]].round(3).to_string())
            _na = _v.isna().sum()
            _na = _na[_na > 0]
            _missing = ", ".join(f"{_c} {_n}" for _c, _n in _na.items())
            print("missing values: " + (_missing or "none"))
            print()
_agentnb_summary(@NAMES@)
del _agentnb_summary
"""


def summary_code(names: list[str]) -> str:
    """Code that prints a compact summary of each named value in the kernel."""
    return _SUMMARY.replace("@NAMES@", repr(list(names))).strip()
