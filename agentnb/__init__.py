"""agentnb: a Jupyter-native, multi-agent data-analysis kernel extension."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ._sync import SyncBridge
from .chat.approval import ApprovalRequest, Approver, AutoApprover, CallbackApprover, Decision
from .chat.group import GroupChat, Guards, RunResult
from .chat.messages import Execution, ExecutionStatus, Step
from .chat.roles import ANALYST, CRITIC, Role
from .chat.termination import (
    CostBudget,
    MaxTurns,
    StopReason,
    TerminationCondition,
    TextMention,
    TimeLimit,
    TokenBudget,
)
from .errors import (
    AgentnbError,
    ConfigError,
    DataTransferError,
    KernelError,
    KernelStartError,
    ModelError,
)
from .evaluate import evaluate
from .kernel import KernelConfig, ManagedKernel
from .kernel.outputs import OutputLimits
from .run import aresume, arun, resume, run

try:
    __version__ = version("agentnb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext agentnb``: the ``%%agents`` cell and ``%agents`` line magics."""
    from .jupyter.magics import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    from .jupyter.magics import unload_ipython_extension as unload

    unload(shell)


__all__ = [
    "ANALYST",
    "CRITIC",
    "AgentnbError",
    "ApprovalRequest",
    "Approver",
    "AutoApprover",
    "CallbackApprover",
    "ConfigError",
    "CostBudget",
    "DataTransferError",
    "Decision",
    "Execution",
    "ExecutionStatus",
    "GroupChat",
    "Guards",
    "KernelConfig",
    "KernelError",
    "KernelStartError",
    "ManagedKernel",
    "MaxTurns",
    "ModelError",
    "OutputLimits",
    "Role",
    "RunResult",
    "Step",
    "StopReason",
    "SyncBridge",
    "TerminationCondition",
    "TextMention",
    "TimeLimit",
    "TokenBudget",
    "__version__",
    "aresume",
    "arun",
    "evaluate",
    "load_ipython_extension",
    "resume",
    "run",
    "unload_ipython_extension",
]
