"""agentnb: a Jupyter-native, multi-agent data-analysis kernel extension."""

from importlib.metadata import PackageNotFoundError, version

from ._sync import SyncBridge
from .errors import AgentnbError, ConfigError, DataTransferError, KernelError, KernelStartError
from .kernel import KernelConfig, ManagedKernel
from .messages import Execution, ExecutionStatus
from .outputs import OutputLimits

try:
    __version__ = version("agentnb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AgentnbError",
    "ConfigError",
    "DataTransferError",
    "Execution",
    "ExecutionStatus",
    "KernelConfig",
    "KernelError",
    "KernelStartError",
    "ManagedKernel",
    "OutputLimits",
    "SyncBridge",
    "__version__",
]
