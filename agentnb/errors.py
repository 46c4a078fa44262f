"""Failures of agentnb itself.

Failures of agent-written code are not exceptions: they come back as data, an
:class:`~agentnb.chat.messages.Execution` whose status is ``error``, ``timeout``, ``died``
or ``interrupted``. What is raised is one small tree, and every message says what
failed and what to do about it::

    AgentnbError
    ├── ConfigError            a flag, option or setting is wrong
    ├── ModelError             a model endpoint failed (key, model name, URL, server)
    └── KernelError            the managed kernel could not do what was asked
        ├── KernelStartError   the kernel process did not start or answer
        └── DataTransferError  a value could not be pushed into or pulled out of it
"""

from __future__ import annotations

__all__ = [
    "AgentnbError",
    "ConfigError",
    "DataTransferError",
    "KernelError",
    "KernelStartError",
    "ModelError",
]


class AgentnbError(Exception):
    """Base class of every error agentnb raises."""


class ConfigError(AgentnbError):
    """A flag, option or setting has a value agentnb cannot use."""


class KernelError(AgentnbError):
    """The managed kernel could not do what was asked."""


class KernelStartError(KernelError):
    """The managed kernel process did not start, or did not answer in time."""


class DataTransferError(KernelError):
    """A value could not be pushed into, or pulled out of, the managed kernel."""


class ModelError(AgentnbError):
    """A model call failed for good: a wrong key, an unknown model, an endpoint that
    cannot be reached or keeps failing. The message names the endpoint and the fix."""
