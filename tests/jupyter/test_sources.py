"""Where a saved analysis gets its data: the session's own code when it stands on
its own, else the values saved beside the notebook; files named relatively."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agentnb.jupyter.sources import recreate, relative_paths, save_values


def test_the_code_that_built_a_frame_comes_with_what_it_used() -> None:
    history = [
        "import numpy as np\nimport pandas as pd",
        "%matplotlib inline",
        "rng = np.random.default_rng(1)\nunused = 3",
        "df = pd.DataFrame({'x': rng.normal(size=5), 'n': [len(str(i)) for i in range(5)]})",
        "df.head()",
    ]
    code = recreate(history, "df")
    assert code == (
        "import numpy as np\nimport pandas as pd\nrng = np.random.default_rng(1)\n"
        "df = pd.DataFrame({'x': rng.normal(size=5), 'n': [len(str(i)) for i in range(5)]})"
    )
    namespace: dict[str, object] = {}
    exec(code, namespace)  # it runs on its own
    assert list(namespace["df"].columns) == ["x", "n"]  # type: ignore[attr-defined]


def test_code_that_would_not_rebuild_the_value_is_not_offered() -> None:
    made = "import pandas as pd\nsales = pd.read_csv('sales.csv')"
    assert recreate([made, "sales['x'] = 1"], "sales") is None  # changed in place later
    assert recreate([made, "sales.drop(columns='x', inplace=True)"], "sales") is None
    assert recreate(["df = load_it()"], "df") is None  # a name the session never bound
    assert recreate([made], "other") is None
    assert recreate([made, "sales.head()"], "sales") == made


def test_files_are_named_from_the_notebooks_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sales.csv").write_text("a\n1\n")
    code = "sales = pd.read_csv('data/sales.csv', sep=',')\nother = pd.read_csv('missing.csv')"
    moved = relative_paths(code, tmp_path / "reports", cwd=tmp_path)
    assert moved == (
        "sales = pd.read_csv('../data/sales.csv', sep=',')\nother = pd.read_csv('missing.csv')"
    )
    absolute = f"sales = pd.read_csv({str(tmp_path / 'data' / 'sales.csv')!r})"
    assert relative_paths(absolute, tmp_path) == "sales = pd.read_csv('data/sales.csv')"


def test_values_are_saved_beside_the_notebook_and_read_back(tmp_path: Path) -> None:
    frame = pd.DataFrame({"region": ["N", "S"], "revenue": [1.5, 2.0]})
    sources = save_values({"frame": frame, "prices": {"N": 1, "S": 2}}, tmp_path / "analysis.ipynb")
    assert sources == {
        "frame": "pd.read_parquet('analysis_data/frame.parquet')",
        "prices": "pd.read_pickle('analysis_data/prices.pkl')",
    }
    import os

    os.chdir(tmp_path)
    namespace: dict[str, object] = {"pd": pd}
    for name, source in sources.items():
        exec(f"{name} = {source}", namespace)
    pd.testing.assert_frame_equal(namespace["frame"], frame)  # type: ignore[arg-type]
    assert namespace["prices"] == {"N": 1, "S": 2}
