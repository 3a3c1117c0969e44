"""Gateway-side micro-batching of query embeddings: concurrent searches share Triton calls.

Each search needs one query vector. Sent one by one, 64 concurrent searches are 64 gRPC calls, 64 request
conversions in the python backend and as many responses; coalesced, they are a few calls of ``max_batch``
texts (32 by default; and Triton's dynamic batcher still joins calls that arrive together). A call waits at
most ``max_wait_s`` after the first text of a batch arrived (or less: as soon as ``max_batch`` texts are
waiting), and only while an earlier call is still in Triton: a search that arrives when nothing is in flight
leaves at once.

- Order: each caller gets the rows of its own texts, in its order.
- Isolation: when a merged call fails, each caller's texts are retried on their own, so one bad text
  fails only its caller (not after a timeout: that is Triton's, and every caller gets it at once).
- Cancellation: a caller that stops waiting (client gone, deadline) is dropped from the batch if the
  batch has not left yet; otherwise its rows are discarded.
- Deadlines: the merged call gets the longest remaining deadline of its callers; each caller still
  stops waiting at its own.

Calls are sent as soon as their batch is formed, without waiting for the previous call to return.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from server.errors import BackendTimeout

__all__ = ["MicroBatcher"]

EmbedCall = Callable[[list[str], str, float | None], Awaitable[NDArray[np.float32]]]


@dataclass(eq=False)
class _Item:
    texts: list[str]
    future: asyncio.Future[NDArray[np.float32]]
    deadline: float | None  # monotonic
    queued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """``embed`` with the signature of the embedder it wraps (``TritonEmbedder.embed``)."""

    def __init__(
        self,
        call: EmbedCall,
        *,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s not negative")
        self._call = call
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch or (lambda _: None)
        self._on_queue = on_queue or (lambda _: None)
        self._pending: dict[str, list[_Item]] = {}
        self._full: dict[str, asyncio.Event] = {}
        self._collectors: dict[str, asyncio.Task[None]] = {}
        self._calls: set[asyncio.Task[None]] = set()
        self.calls = 0

    def _queued(self) -> int:
        return sum(len(item.texts) for items in self._pending.values() for item in items)

    async def embed(
        self, texts: list[str], kind: str = "query", *, timeout_s: float | None = None
    ) -> NDArray[np.float32]:
        if not texts:
            return await self._call(texts, kind, timeout_s)
        loop = asyncio.get_running_loop()
        item = _Item(list(texts), loop.create_future(), None if timeout_s is None else time.monotonic() + timeout_s)
        pending = self._pending.setdefault(kind, [])
        pending.append(item)
        self._on_queue(self._queued())
        if sum(len(i.texts) for i in pending) >= self.max_batch:
            self._full.setdefault(kind, asyncio.Event()).set()
        if kind not in self._collectors:
            self._collectors[kind] = asyncio.create_task(self._collect(kind))
        try:
            # The shield keeps a caller's cancellation from cancelling the batch others wait on.
            return await asyncio.wait_for(asyncio.shield(item.future), timeout_s)
        except TimeoutError:
            raise BackendTimeout("embedding: no answer within the request's deadline") from None
        finally:
            if not item.future.done():
                item.future.cancel()  # dropped from its batch if that has not left yet

    async def _collect(self, kind: str) -> None:
        full = self._full.setdefault(kind, asyncio.Event())
        try:
            while self._pending.get(kind):
                # Nothing in Triton: send at once (no added latency at low load). Otherwise wait for more
                # texts, at most max_wait_s after the oldest arrived.
                first = self._pending[kind][0].queued
                wait = self.max_wait_s - (time.monotonic() - first) if self._calls else 0.0
                if wait > 0 and not full.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(full.wait(), wait)
                full.clear()
                batch = self._take(kind)
                if batch:
                    # Sent without waiting: the next batch forms (and may leave) while this one is in Triton.
                    task = asyncio.create_task(self._run(batch, kind))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
        finally:
            del self._collectors[kind]

    def _take(self, kind: str) -> list[_Item]:
        pending = [item for item in self._pending.get(kind, []) if not item.future.done()]
        batch: list[_Item] = []
        size = 0
        while pending and (not batch or size + len(pending[0].texts) <= self.max_batch):
            item = pending.pop(0)
            batch.append(item)
            size += len(item.texts)
        self._pending[kind] = pending
        if sum(len(i.texts) for i in pending) >= self.max_batch:
            self._full[kind].set()
        self._on_queue(self._queued())
        return batch

    async def _run(self, batch: list[_Item], kind: str) -> None:
        texts = [text for item in batch for text in item.texts]
        deadlines = [item.deadline for item in batch]
        timeout = None if None in deadlines else max(0.0, max(d for d in deadlines if d) - time.monotonic())
        self.calls += 1
        self._on_batch(len(texts))
        try:
            vectors = await self._call(texts, kind, timeout)
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, BackendTimeout):
                # A timeout is Triton's, not a text's: retrying each caller would only double their wait.
                for item in batch:
                    _settle(item, exc)
                return
            # One caller's text may be what failed: each caller on its own, concurrently.
            await asyncio.gather(*(self._run([item], kind) for item in batch))
            return
        offset = 0
        for item in batch:
            _settle(item, vectors[offset : offset + len(item.texts)])
            offset += len(item.texts)


def _settle(item: _Item, outcome: NDArray[np.float32] | Exception) -> None:
    if item.future.done():  # the caller stopped waiting
        return
    if isinstance(outcome, Exception):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)
