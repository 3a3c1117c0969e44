"""What the answer pipeline asks of a generator (server/triton/generator.py serves it from Triton; tests script
one): the request's parameters, the text pieces, and how the generation ended."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Generated", "GenerationParams", "Generator"]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop_words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Generated:
    """The end of a generation. ``None``: the model does not report it (the answer service derives it)."""

    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


class Generator(Protocol):
    async def ensure_ready(self) -> None: ...

    async def served_name(self) -> str: ...

    def stream(
        self, prompt: str, params: GenerationParams, *, timeout_s: float | None = None
    ) -> AsyncGenerator[str | Generated, None]: ...
