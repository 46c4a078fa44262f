"""The offline demo's files, shipped with agentnb: sales data and scripted replies.

``agentnb demo`` and the example notebooks use them; so can you, to try agentnb
without a model or a key::

    import pandas as pd
    from agentnb import demo

    sales = pd.read_csv(demo.SALES)
    # %%agents --data sales --model "scripted:{demo.REPLIES}" --approve never
    # <demo.TASK as the cell's body>

The replies are scripted for :data:`TASK` on this data: another question gets
the same replies, which then make no sense.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDER", "REPLIES", "SALES", "TASK", "path"]

FOLDER = Path(__file__).resolve().parent
"""Where the demo's files are."""

TASK = "Which region grew fastest in 2024? Plot monthly revenue per region."
"""The question the scripted replies answer."""


def path(name: str) -> Path:
    """The shipped demo file ``name`` (``"sales.csv"``, ``"replies.yaml"``).

    Raises:
        FileNotFoundError: there is no such demo file (the message lists those there are).
    """
    files = sorted(p.name for p in FOLDER.iterdir() if p.is_file() and p.suffix != ".py")
    if name not in files:
        raise FileNotFoundError(
            f"agentnb ships no demo file {name!r}; there are: {', '.join(files)}"
        )
    return FOLDER / name


SALES = path("sales.csv")
"""A year of orders (2024): date, region, product, units, unit_price, discount."""

REPLIES = path("replies.yaml")
"""The analyst's and the critic's scripted replies to :data:`TASK` (``scripted:PATH``)."""
