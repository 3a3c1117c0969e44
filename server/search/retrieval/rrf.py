"""Reciprocal-rank fusion: score(d) = sum over rankings of 1 / (k + rank(d)), ranks starting at 1."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["rrf"]

T = TypeVar("T", bound=Hashable)


def rrf(rankings: Sequence[Sequence[T]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[T, float]]:
    """Fuse rankings (best first; duplicates after the first occurrence are ignored) into (item, score), best first.

    Ties keep the order in which items were first seen, so the result is deterministic.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[T, float] = {}
    for r, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[r]
        seen: set[T] = set()
        rank = 0
        for item in ranking:
            if item in seen:
                continue
            seen.add(item)
            rank += 1
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
