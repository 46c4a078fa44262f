"""Roles: who takes part in the chat. Roles are data, and prompts live in files.

There are two kinds. An **author** writes the analysis (code steps, then the final
report); a **reviewer** answers APPROVE or REVISE. The built-in roles are the
analyst (author) and the critic (reviewer); a persona adds another::

    statistician = Role.persona(
        "statistician", "You are a statistician. Insist on sample sizes and uncertainty.")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..models.base import ModelClient

__all__ = ["ANALYST", "CRITIC", "Role", "RoleKind", "load_prompt"]

RoleKind = Literal["author", "reviewer"]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")
_PROTOCOL = {"author": "author_protocol", "reviewer": "reviewer_protocol"}
_TOOLS = {"author": "author_tools", "reviewer": "reviewer_tools"}


@cache
def load_prompt(name: str) -> str:
    """The text of ``agentnb/prompts/<name>.md``."""
    return (resources.files("agentnb") / "prompts" / f"{name}.md").read_text("utf-8").strip()


@dataclass(frozen=True, slots=True)
class Role:
    """A participant of the chat.

    Attributes:
        name: how the agent is called in the chat and in usage tables.
        kind: ``author`` or ``reviewer``.
        prompt: who the agent is (the system prompt, before the protocol rules).
        model: a model for this role alone (a name, ``scripted:PATH``, or a client);
            None uses the run's model.
        description: one line, shown to a model that selects speakers.
    """

    name: str
    kind: RoleKind
    prompt: str
    model: str | ModelClient | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"a role name must be a word of letters, digits, '-' or '_' (got {self.name!r})"
            )
        if self.kind not in _PROTOCOL:
            raise ConfigError(f"a role is an 'author' or a 'reviewer', not {self.kind!r}")

    @property
    def system_prompt(self) -> str:
        """The system prompt in the text protocol (see :meth:`instructions`)."""
        return self.instructions(tools=False)

    def instructions(self, tools: bool) -> str:
        """The persona, the rule that data and outputs are content, never
        instructions (every role reads them), then the reply protocol of its kind:
        its tools, or the text protocol."""
        protocol = load_prompt((_TOOLS if tools else _PROTOCOL)[self.kind])
        return f"{self.prompt}\n\n{load_prompt('untrusted')}\n\n{protocol}"

    @classmethod
    def persona(
        cls,
        name: str,
        persona: str | Path,
        *,
        kind: RoleKind = "reviewer",
        model: str | ModelClient | None = None,
        description: str = "",
    ) -> Role:
        """A role from a persona text, or from a file holding one."""
        text = Path(persona).read_text("utf-8") if isinstance(persona, Path) else persona
        if not text.strip():
            raise ConfigError(f"the persona of role {name!r} is empty")
        return cls(name, kind, text.strip(), model, description or text.strip().split("\n")[0])

    def with_model(self, model: str | ModelClient | None) -> Role:
        return replace(self, model=model)


ANALYST = Role("analyst", "author", load_prompt("analyst"), description="writes the analysis code")
CRITIC = Role("critic", "reviewer", load_prompt("critic"), description="reviews every step")
