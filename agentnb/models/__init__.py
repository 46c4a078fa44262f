"""Model clients: OpenAI-compatible endpoints, scripted replies, cache and replay."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import ChatMessage, ModelClient, ModelReply, Usage
from .cache import CachedModel, ReplayModel
from .scripted import ScriptedModel

__all__ = [
    "CachedModel",
    "ChatMessage",
    "ModelClient",
    "ModelReply",
    "ReplayModel",
    "ScriptedModel",
    "Usage",
    "resolve_model",
]

_NO_MODEL = (
    "no model given: pass --model NAME (for example gpt-4o-mini with OPENAI_API_KEY set, or a "
    "local model with OPENAI_BASE_URL=http://localhost:11434/v1), set AGENTNB_MODEL, or try it "
    "offline with --model scripted:REPLIES.yaml"
)


def resolve_model(
    spec: str | ModelClient | None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    vision: bool | None = None,
    timeout: float = 60.0,
    cache: bool | str | Path | None = None,
    max_tokens: int | None = None,
    retries: int = 4,
    retry_backoff: float = 1.0,
    first_token_timeout: float | None = None,
) -> ModelClient:
    """A client for ``spec``: ``scripted:PATH``, ``replay:TRANSCRIPT``, a model name
    for an OpenAI-compatible endpoint, or a client (returned as is). Names joined by
    commas (``gpt-4o,gpt-4o-mini``) fall back from one to the next
    (:class:`~agentnb.models.fallback.FallbackModel`).

    ``cache`` wraps endpoint models in the on-disk response cache (True: the default
    folder; a path: that folder). ``max_tokens`` bounds each reply of an endpoint model
    (default :data:`~agentnb.models.openai_compat.DEFAULT_MAX_TOKENS`); ``retries``
    and ``retry_backoff`` are its retry policy.
    """
    if spec is None:
        raise ConfigError(_NO_MODEL)
    if not isinstance(spec, str):
        return spec
    if "," in spec:  # a, b: the next when one fails for good
        from .fallback import FallbackModel

        names = [part.strip() for part in spec.split(",") if part.strip()]
        if len(names) > 1:
            return FallbackModel(
                [
                    resolve_model(
                        name,
                        base_url=base_url,
                        api_key=api_key,
                        vision=vision,
                        timeout=timeout,
                        cache=cache,
                        max_tokens=max_tokens,
                        retries=retries,
                        retry_backoff=retry_backoff,
                        first_token_timeout=first_token_timeout,
                    )
                    for name in names
                ]
            )
        spec = names[0] if names else ""
    spec = spec.strip()
    if not spec:
        raise ConfigError(_NO_MODEL)
    kind, _, rest = spec.partition(":")
    if kind == "scripted" and rest:
        return ScriptedModel(rest, vision=bool(vision))
    if kind == "replay" and rest:
        return ReplayModel(rest)
    from .openai_compat import DEFAULT_FIRST_TOKEN_TIMEOUT, DEFAULT_MAX_TOKENS, OpenAIModel

    client: ModelClient = OpenAIModel(
        spec,
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        first_token_timeout=first_token_timeout or DEFAULT_FIRST_TOKEN_TIMEOUT,
        vision=vision,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        max_retries=retries,
        backoff_base=retry_backoff,
    )
    if cache:
        client = CachedModel(client, None if cache is True else Path(cache))
    return client
