"""The engine: a group chat of an analyst, a critic and an executor.

:class:`GroupChat` runs the conversation; the modules beside it hold what it is
made of: the roles and their prompts, what each role sees (``context``), how a
reply is read (``protocol``), who speaks next (``speakers``), when a run ends
(``termination``), who approves (``approval``), what it costs (``usage``), and
the typed ``messages`` and ``events`` it produces, written first to the
``transcript``. Nothing here imports IPython or ipywidgets.
"""

from .group import GroupChat
from .result import Executor, Guards, RunResult, check_task

__all__ = ["Executor", "GroupChat", "Guards", "RunResult", "check_task"]
