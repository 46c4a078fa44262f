"""The managed kernel: a separate Jupyter kernel that runs the agents' code, on this
machine (:class:`LocalBackend`) or on a Kernel Gateway (:class:`GatewayBackend`)."""

from .backend import KernelBackend
from .config import KernelConfig
from .gateway import GatewayBackend
from .local import LocalBackend
from .managed import ManagedKernel

__all__ = ["GatewayBackend", "KernelBackend", "KernelConfig", "LocalBackend", "ManagedKernel"]
