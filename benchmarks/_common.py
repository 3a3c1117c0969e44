"""Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so importable by name)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from config.settings import Settings
from corpus.index import load_index
from corpus.questions import load_questions

__all__ = ["closed_loop", "corpus_questions", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def corpus_questions(settings: Settings, n: int, *, seed: int) -> list[str]:
    """Real questions from the corpus: titles of the "Fiche Question-réponse" fiches, never the retrieval
    evaluation set (corpus/questions.py), ``n`` of them picked with ``seed``."""
    return load_questions(load_index(settings.resolved_index_dir), n, seed=seed)


async def closed_loop(
    call: Callable[[str], Awaitable[None]], queries: list[str], concurrency: int
) -> tuple[list[float], float]:
    """``concurrency`` callers each sending the next query as soon as their previous one is answered.
    Return the latencies and the wall time."""
    latencies: list[float] = []
    pending = list(reversed(queries))

    async def worker() -> None:
        while pending:
            query = pending.pop()
            started = time.perf_counter()
            await call(query)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started
