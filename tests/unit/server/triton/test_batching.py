"""The gateway's micro-batcher of query embeddings: shared calls, bounded waits, failures and timeouts
kept to their callers, cancelled and late callers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from server.errors import BackendTimeout, BackendUnavailable
from server.triton.batching import MicroBatcher


class Backend:
    """An embedding call that records its batches; a text's vector is [hash-ish, length]."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.started: list[float] = []

    async def __call__(self, texts: list[str], kind: str, timeout_s: float | None) -> NDArray[np.float32]:
        self.batches.append(list(texts))
        self.started.append(time.monotonic())
        await asyncio.sleep(self.delay_s)
        if any(t.startswith("bad") for t in texts):
            raise BackendUnavailable(f"embedding: Triton returned an error ({texts})")
        return np.array([[sum(map(ord, t)), len(t)] for t in texts], dtype=np.float32)


def _expected(texts: list[str]) -> NDArray[np.float32]:
    return np.array([[sum(map(ord, t)), len(t)] for t in texts], dtype=np.float32)


def test_concurrent_callers_share_calls_and_get_their_own_rows() -> None:
    backend = Backend()
    sizes: list[int] = []
    batcher = MicroBatcher(backend, max_batch=16, max_wait_s=0.005, on_batch=sizes.append)

    async def main() -> list[NDArray[np.float32]]:
        calls = [batcher.embed([f"question {i}", f"autre {i}"] if i % 7 == 0 else [f"question {i}"]) for i in range(64)]
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    for i, rows in enumerate(results):
        texts = [f"question {i}", f"autre {i}"] if i % 7 == 0 else [f"question {i}"]
        np.testing.assert_array_equal(rows, _expected(texts))
    assert batcher.calls == len(backend.batches) < 64 / 4  # most calls carry many callers
    assert max(sizes) <= 16 and sum(sizes) == 64 + 10  # 10 callers sent two texts
    # Callers that arrive together leave together, in their order, up to max_batch texts.
    assert backend.batches[0][:3] == ["question 0", "autre 0", "question 1"] and len(backend.batches[0]) == 16


def test_wait_is_bounded_and_only_while_a_call_is_in_flight() -> None:
    backend = Backend(delay_s=0.2)
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=0.02)

    async def main() -> None:
        first = asyncio.create_task(batcher.embed(["a"]))
        await asyncio.sleep(0.01)  # "a" is in Triton now
        second_sent = time.monotonic()
        second = asyncio.create_task(batcher.embed(["b"]))
        await asyncio.gather(first, second)
        # "b" waited for company at most max_wait_s, not for "a" to come back (0.2 s).
        assert backend.started[1] - second_sent < 0.1

    asyncio.run(main())
    assert backend.batches == [["a"], ["b"]]


def test_a_failing_text_fails_only_its_caller() -> None:
    backend = Backend()
    batcher = MicroBatcher(backend, max_batch=32, max_wait_s=0.01)

    async def main() -> list[Any]:
        warm = asyncio.create_task(batcher.embed(["warm-up"]))  # keeps a call in flight so the rest batch up
        await asyncio.sleep(0)
        calls = [batcher.embed([text]) for text in ("ok 1", "bad one", "ok 2", "ok 3")]
        return [await warm, *await asyncio.gather(*calls, return_exceptions=True)]

    results = asyncio.run(main())
    assert isinstance(results[2], BackendUnavailable)
    for i, text in ((1, "ok 1"), (3, "ok 2"), (4, "ok 3")):
        np.testing.assert_array_equal(results[i], _expected([text]))
    assert ["ok 1", "bad one", "ok 2", "ok 3"] in backend.batches  # tried together first, then one by one
    assert ["bad one"] in backend.batches and ["ok 1"] in backend.batches


def test_a_timeout_is_not_retried_caller_by_caller() -> None:
    calls: list[list[str]] = []

    async def slow(texts: list[str], kind: str, timeout_s: float | None) -> NDArray[np.float32]:
        calls.append(list(texts))
        await asyncio.sleep(0.01)
        raise BackendTimeout("embedding: Triton did not answer in time")

    batcher = MicroBatcher(slow, max_batch=32, max_wait_s=0.01)

    async def main() -> list[Any]:
        warm = asyncio.create_task(batcher.embed(["warm-up"]))
        await asyncio.sleep(0)
        rest = await asyncio.gather(*(batcher.embed([f"q{i}"]) for i in range(5)), return_exceptions=True)
        return [*await asyncio.gather(warm, return_exceptions=True), *rest]

    results = asyncio.run(main())
    assert all(isinstance(r, BackendTimeout) for r in results)
    assert calls == [["warm-up"], ["q0", "q1", "q2", "q3", "q4"]]


def test_cancelled_and_late_callers() -> None:
    backend = Backend(delay_s=0.05)
    batcher = MicroBatcher(backend, max_batch=32, max_wait_s=0.02)

    async def main() -> None:
        warm = asyncio.create_task(batcher.embed(["warm-up"]))
        await asyncio.sleep(0)
        gone = asyncio.create_task(batcher.embed(["gone"]))
        stays = asyncio.create_task(batcher.embed(["stays"]))
        await asyncio.sleep(0.001)
        gone.cancel()  # before its batch leaves: it is not sent
        np.testing.assert_array_equal(await stays, _expected(["stays"]))
        with pytest.raises(asyncio.CancelledError):
            await gone
        await warm
        # A deadline shorter than the call: that caller times out, the call and the others go on.
        slow = asyncio.create_task(batcher.embed(["patient"]))
        with pytest.raises(BackendTimeout):
            await batcher.embed(["hurried"], timeout_s=0.01)
        np.testing.assert_array_equal(await slow, _expected(["patient"]))

    asyncio.run(main())
    assert not any("gone" in batch for batch in backend.batches)
