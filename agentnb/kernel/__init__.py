"""The managed kernel: a separate Jupyter kernel that runs the agents' code."""

from .backend import KernelBackend
from .config import KernelConfig
from .local import LocalBackend
from .managed import ManagedKernel

__all__ = ["KernelBackend", "KernelConfig", "LocalBackend", "ManagedKernel"]
