"""The generator model's serving glue without Triton: request parsing and the worker pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from inference.generation import GenerationPool, GenerationRequest, Limits, Reply, parse_request
from inference.generator import Finished


def _inputs(**values: Any) -> Callable[[str], np.ndarray | None]:
    arrays = {k: np.asarray(v) for k, v in values.items()}
    return arrays.get


def test_parse_request_reads_trtllm_inputs() -> None:
    request = parse_request(
        _inputs(
            text_input=np.array([b"bonjour"], dtype=np.object_),
            max_tokens=np.array([12], dtype=np.int32),
            temperature=np.array([0.5], dtype=np.float32),
            stop_words=np.array([b"\n\n", b""], dtype=np.object_),
            stream=np.array([True]),
        ),
        Limits(),
    )
    assert request == GenerationRequest(
        prompt="bonjour", max_tokens=12, temperature=0.5, top_p=1.0, stop_words=("\n\n",), stream=True
    )
    defaults = parse_request(_inputs(text_input=np.array([b"x"], dtype=np.object_), max_tokens=np.array([1])), Limits())
    assert (defaults.temperature, defaults.top_p, defaults.stream, defaults.stop_words) == (0.0, 1.0, False, ())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_tokens": [5]}, "'text_input' is required"),
        ({"text_input": [b"  "], "max_tokens": [5]}, "'text_input' is empty"),
        ({"text_input": [b"\xff"], "max_tokens": [5]}, "not valid UTF-8"),
        ({"text_input": [b"x"]}, "'max_tokens' is required"),
        ({"text_input": [b"x"], "max_tokens": [0]}, "between 1 and 64"),
        ({"text_input": [b"x"], "max_tokens": [65]}, "between 1 and 64"),
        ({"text_input": [b"x", b"y"], "max_tokens": [5]}, "one value, got 2"),
        ({"text_input": [b"x"], "max_tokens": [5], "temperature": [-1.0]}, "temperature"),
        ({"text_input": [b"x"], "max_tokens": [5], "top_p": [0.0]}, "top_p"),
    ],
)
def test_parse_request_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    arrays = {k: np.array(v, dtype=np.object_ if isinstance(v[0], bytes) else None) for k, v in values.items()}
    with pytest.raises(ValueError, match=message):
        parse_request(arrays.get, Limits(max_output_tokens=64))


class Recorder:
    def __init__(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.pieces: list[str] = []
        self.final: tuple[str, Finished] | None = None
        self.errors: list[tuple[str, bool]] = []
        self.done = threading.Event()
        self.reply = Reply(piece=self.pieces.append, final=self._final, error=self._error, cancelled=cancelled)

    def _final(self, text: str, finished: Finished) -> None:
        self.final = (text, finished)
        self.done.set()

    def _error(self, message: str, cancelled: bool) -> None:
        self.errors.append((message, cancelled))
        self.done.set()


def fake_stream(
    prompt: Sequence[int],
    *,
    max_tokens: int,
    temperature: float,
    top_p: float,
    stop: Sequence[str],
    finished: Finished,
    should_stop: Callable[[], bool],
) -> Iterator[str]:
    """One word per token; the word "boom" raises; "slow" sleeps between tokens."""
    finished.prompt_tokens = len(prompt)
    words = ["mot"] * max_tokens
    for word in words:
        if should_stop():
            finished.reason = "cancelled"
            return
        finished.completion_tokens += 1
        if 99 in prompt:
            raise RuntimeError("boom")
        if 98 in prompt:
            time.sleep(0.02)
        yield word + " "
    finished.reason = "length"


def _encode(text: str) -> list[int]:
    return [{"boom": 99, "slow": 98}.get(w, 1) for w in text.split()]


def test_pool_streams_or_returns_whole_text() -> None:
    pool = GenerationPool(fake_stream, _encode, workers=2, max_queue=4)
    try:
        streamed, whole = Recorder(), Recorder()
        pool.submit(GenerationRequest(prompt="a b c", max_tokens=3, stream=True), streamed.reply)
        pool.submit(GenerationRequest(prompt="a b", max_tokens=2), whole.reply)
        assert streamed.done.wait(5) and whole.done.wait(5)
        assert streamed.pieces == ["mot "] * 3 and streamed.final is not None and streamed.final[0] == ""
        assert streamed.final[1] == Finished(reason="length", prompt_tokens=3, completion_tokens=3)
        assert whole.pieces == [] and whole.final is not None and whole.final[0] == "mot mot "
        assert pool.stats.completed == 2 and pool.stats.completion_tokens == 5
    finally:
        pool.close()


def test_pool_refuses_when_full_and_survives_failures() -> None:
    pool = GenerationPool(fake_stream, _encode, workers=1, max_queue=1, limits=Limits(max_input_tokens=5))
    try:
        slow, queued, refused = Recorder(), Recorder(), Recorder()
        pool.submit(GenerationRequest(prompt="slow", max_tokens=20), slow.reply)
        time.sleep(0.05)  # the worker has taken the slow one; the queue holds one more
        pool.submit(GenerationRequest(prompt="a", max_tokens=1), queued.reply)
        pool.submit(GenerationRequest(prompt="a", max_tokens=1), refused.reply)
        assert refused.errors and refused.errors[0][0].startswith("generator overloaded")
        assert slow.done.wait(5) and queued.done.wait(5) and queued.final is not None

        boom, too_long, after = Recorder(), Recorder(), Recorder()
        for prompt, recorder in (("boom", boom), ("a b c d e f", too_long), ("a", after)):
            pool.submit(GenerationRequest(prompt=prompt, max_tokens=3), recorder.reply)
            assert recorder.done.wait(5)
        assert after.done.wait(5) and after.final is not None  # the worker lived on
        assert boom.errors == [("generation failed: boom", False)]
        assert too_long.errors == [("the prompt has 6 tokens; the limit is 5", False)]
        assert (pool.stats.rejected, pool.stats.failed) == (1, 2)
    finally:
        pool.close()


def test_pool_stops_cancelled_requests() -> None:
    pool = GenerationPool(fake_stream, _encode, workers=1, max_queue=4)
    try:
        flag = threading.Event()
        running = Recorder(cancelled=flag.is_set)
        waiting = Recorder(cancelled=lambda: True)  # its client is gone before a worker takes it
        pool.submit(GenerationRequest(prompt="slow", max_tokens=500, stream=True), running.reply)
        pool.submit(GenerationRequest(prompt="a", max_tokens=5), waiting.reply)
        deadline = time.monotonic() + 5
        while len(running.pieces) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        flag.set()
        assert running.done.wait(5) and waiting.done.wait(5)
        assert running.errors == [("request cancelled", True)]
        assert len(running.pieces) < 20  # stopped within a token of the cancellation, far from 500
        assert waiting.errors == [("request cancelled before generation started", True)]
        assert pool.stats.cancelled == 2
    finally:
        pool.close()
