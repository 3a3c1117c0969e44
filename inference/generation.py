"""Serving glue of the generator model, kept free of Triton imports so that it is unit-tested alone.

- ``parse_request`` turns the request tensors (TensorRT-LLM names: ``text_input``, ``max_tokens``,
  ``temperature``, ``top_p``, ``stop_words``, ``stream``) into a checked ``GenerationRequest``.
- ``GenerationPool`` runs requests on a fixed number of worker threads behind a bounded queue. Requests are
  answered through callbacks: text pieces while streaming, then exactly one final reply (the finish reason
  and token counts, or an error). A cancelled request is dropped from the queue or stopped at the next
  token.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from inference.generator import Finished

__all__ = ["GenerationPool", "GenerationRequest", "Limits", "Reply", "StreamFn", "parse_request"]

log = logging.getLogger("albert.generator")

GetInput = Callable[[str], "NDArray[Any] | None"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_input_tokens: int = 4096
    max_output_tokens: int = 2048


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop_words: tuple[str, ...] = ()
    stream: bool = False


def _scalar(get: GetInput, name: str) -> object | None:
    array = get(name)
    if array is None:
        return None
    flat = np.asarray(array).reshape(-1)
    if flat.size != 1:
        raise ValueError(f"input '{name}' must hold one value, got {flat.size}")
    value: object = flat[0].item() if isinstance(flat[0], np.generic) else flat[0]
    return value


def _text(value: object, name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"input '{name}' is not valid UTF-8") from exc
    return str(value)


def parse_request(get: GetInput, limits: Limits) -> GenerationRequest:
    """Raise ValueError with a message naming the input when a value is missing or out of range."""
    raw_prompt = _scalar(get, "text_input")
    if raw_prompt is None:
        raise ValueError("input 'text_input' is required")
    prompt = _text(raw_prompt, "text_input")
    if not prompt.strip():
        raise ValueError("input 'text_input' is empty")
    raw_max = _scalar(get, "max_tokens")
    if raw_max is None:
        raise ValueError("input 'max_tokens' is required")
    max_tokens = int(raw_max)  # type: ignore[call-overload]
    if not 1 <= max_tokens <= limits.max_output_tokens:
        raise ValueError(f"max_tokens must be between 1 and {limits.max_output_tokens}, got {max_tokens}")
    raw_temperature = _scalar(get, "temperature")
    temperature = 0.0 if raw_temperature is None else float(raw_temperature)  # type: ignore[arg-type]
    if not 0.0 <= temperature <= 2.0:
        raise ValueError(f"temperature must be between 0 and 2, got {temperature}")
    raw_top_p = _scalar(get, "top_p")
    top_p = 1.0 if raw_top_p is None else float(raw_top_p)  # type: ignore[arg-type]
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    stops = get("stop_words")
    stop_words = (
        tuple(w for w in (_text(v, "stop_words") for v in np.asarray(stops).reshape(-1)) if w)
        if stops is not None
        else ()
    )
    raw_stream = _scalar(get, "stream")
    return GenerationRequest(
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop_words=stop_words,
        stream=bool(raw_stream) if raw_stream is not None else False,
    )


class StreamFn(Protocol):
    def __call__(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: Sequence[str],
        finished: Finished,
        should_stop: Callable[[], bool],
    ) -> Iterator[str]: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """Where one request's results go (Triton's response sender behind these callbacks)."""

    piece: Callable[[str], None]  # one streamed text piece (only when the request streams)
    final: Callable[[str, Finished], None]  # the whole text when not streaming ("" otherwise), then done
    error: Callable[[str, bool], None]  # message, cancelled?; also final
    cancelled: Callable[[], bool]


@dataclass(slots=True)
class _Job:
    request: GenerationRequest
    reply: Reply


@dataclass(slots=True)
class PoolStats:
    """Counters read by the Triton model's metrics (and the unit tests)."""

    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class GenerationPool:
    def __init__(
        self,
        stream: StreamFn,
        encode: Callable[[str], list[int]],
        *,
        workers: int = 1,
        max_queue: int = 16,
        limits: Limits | None = None,
        on_done: Callable[[str, Finished], None] | None = None,
    ) -> None:
        """``on_done(outcome, finished)``: called once per request that reached the model (metrics)."""
        self._stream = stream
        self._encode = encode
        self.limits = limits or Limits()
        self.stats = PoolStats()
        self._on_done = on_done
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._threads = [
            threading.Thread(target=self._work, name=f"generator-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: GenerationRequest, reply: Reply) -> None:
        """Never blocks: a full queue answers the request at once with an error."""
        try:
            self._queue.put_nowait(_Job(request, reply))
        except queue.Full:
            with self.stats.lock:
                self.stats.rejected += 1
            reply.error(f"generator overloaded: {self._queue.maxsize} requests already queued", False)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._run(job)
            except Exception as exc:  # one request's failure must not kill the worker
                with self.stats.lock:
                    self.stats.failed += 1
                try:
                    job.reply.error(f"generation failed: {exc}", False)
                except Exception:  # the client may be gone; the worker goes on
                    log.exception("could not report a failed generation")

    def _run(self, job: _Job) -> None:
        request, reply = job.request, job.reply
        if reply.cancelled():
            with self.stats.lock:
                self.stats.cancelled += 1
            reply.error("request cancelled before generation started", True)
            return
        ids = self._encode(request.prompt)
        if len(ids) > self.limits.max_input_tokens:
            with self.stats.lock:
                self.stats.failed += 1
            reply.error(f"the prompt has {len(ids)} tokens; the limit is {self.limits.max_input_tokens}", False)
            return
        finished = Finished()
        pieces: list[str] = []
        for piece in self._stream(
            ids,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop_words,
            finished=finished,
            should_stop=reply.cancelled,
        ):
            if request.stream:
                reply.piece(piece)
            else:
                pieces.append(piece)
        cancelled = finished.reason == "cancelled"
        with self.stats.lock:
            self.stats.prompt_tokens += finished.prompt_tokens
            self.stats.completion_tokens += finished.completion_tokens
            if cancelled:
                self.stats.cancelled += 1
            else:
                self.stats.completed += 1
        if self._on_done is not None:
            self._on_done("cancelled" if cancelled else "completed", finished)
        if cancelled:
            reply.error("request cancelled", True)
        else:
            reply.final("".join(pieces), finished)
