"""The environment a managed kernel starts with: the caller's, minus its secrets.

This keeps credentials out of reach of code that only reads ``os.environ`` (and
out of transcripts sent to a model provider). It is not a sandbox: the kernel
runs as the same user, on the same files. See the README, "Isolation".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["SECRET_NAME_PARTS", "SECRET_PREFIXES", "is_secret", "scrubbed_environ"]

SECRET_PREFIXES = ("OPENAI_", "AZURE_", "AGENTNB_")
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
# AUTH catches SSH_AUTH_SOCK and *_AUTH_*, but not GIT_AUTHOR_NAME
_SECRET_NAME = re.compile("|".join(SECRET_NAME_PARTS).replace("AUTH", "AUTH(?!OR)"))

# user:password@ in a URL (DATABASE_URL=postgres://me:hunter2@db/x)
_URL_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:[^/@\s]+@")

# Variables that describe the process starting the kernel, not the kernel.
# (PYTEST_CURRENT_TEST makes ipykernel stop forwarding fd-level output, as if the
# kernel itself were under pytest's capture; a caller's test suite is not.)
_KERNEL_OWNED = (
    "JPY_PARENT_PID",
    "JPY_INTERRUPT_EVENT",
    "IPY_INTERRUPT_EVENT",
    "JPY_SESSION_NAME",
    "PYTEST_CURRENT_TEST",
)


def is_secret(name: str, value: str) -> bool:
    """Whether a variable looks like a credential, by its name or its value."""
    upper = name.upper()
    return (
        upper.startswith(SECRET_PREFIXES)
        or bool(_SECRET_NAME.search(upper))
        or bool(_URL_PASSWORD.match(value))
    )


def scrubbed_environ(
    environ: Mapping[str, str],
    *,
    allow: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``environ`` without secrets (except the names in ``allow``), then ``extra``."""
    allowed = set(allow)
    env = {
        name: value
        for name, value in environ.items()
        if name not in _KERNEL_OWNED and (name in allowed or not is_secret(name, value))
    }
    env.update(extra or {})
    return env
