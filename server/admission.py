"""Admission control: how much work the gateway takes on at once, and a clear "come back later" beyond it.

A ``Gate`` admits at most ``max_active`` requests of one kind at a time and lets at most ``max_waiting`` more
wait for a slot, in arrival order. A request beyond that is refused at once with ``Overloaded`` (HTTP 429,
gRPC RESOURCE_EXHAUSTED) carrying a retry time: nothing has been started for it and it holds nothing. The
retry time is the expected wait, from the queue ahead and the gate's measured service time (an exponential
moving average of how long admitted requests held their slot).

The gateway has two gates, one per domain service (``SearchService`` and ``AnswerService`` make them through
``GatewayMetrics.gate``): answers, sized by default from the rendered deployment (the embedding model's
instances for quoted answers, the generator's concurrent sequences for drafted ones: ``server/runtime.py``),
and search, larger, so that advisors can still search while answering is saturated.
Admitted work is never cut by new arrivals: a refusal only ever concerns the arriving request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from server.errors import Overloaded

__all__ = ["Gate", "Ticket"]


class Ticket:
    """One admitted request's slot. ``release()`` is idempotent; a ticket dropped without being released (a
    streamed response whose body was never iterated) gives its slot back when it is garbage-collected."""

    __slots__ = ("_gate", "_started", "released")

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._started = time.monotonic()
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._gate._release(time.monotonic() - self._started)

    def __del__(self) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nothing is waiting any more
            self.release()


class Gate:
    def __init__(
        self,
        name: str,
        what: str,
        *,
        max_active: int,
        max_waiting: int,
        service_s: float,
        on_change: Callable[[int, int], None] | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """``what``: the work in a user's words ("drafting answers"); ``service_s``: the first guess of the time
        one request holds a slot, until measured; ``on_change(active, waiting)`` and ``on_refused()``: for the
        metrics."""
        if max_active < 1 or max_waiting < 0:
            raise ValueError(f"gate {name}: max_active must be at least 1 and max_waiting not negative")
        self.name = name
        self.what = what
        self.max_active = max_active
        self.max_waiting = max_waiting
        self.service_s = service_s
        self.active = 0
        self.refused = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_change = on_change
        self._on_refused = on_refused

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> float:
        """The expected wait of a request arriving now: the queue ahead of it, served ``max_active`` at a time."""
        return (self.waiting + 1) * self.service_s / self.max_active

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.active, self.waiting)

    async def enter(self) -> Ticket:
        """A slot, at once or after waiting in line; ``Overloaded`` at once when the line is full."""
        if self.active < self.max_active and not self._waiters:
            self.active += 1
            self._changed()
            return Ticket(self)
        if self.waiting >= self.max_waiting:
            self.refused += 1
            if self._on_refused is not None:
                self._on_refused()
            wait = self.retry_after_s()
            raise Overloaded(
                f"the gateway is busy {self.what} ({self.active} in progress, {self.waiting} waiting); "
                f"retry in about {math.ceil(wait)} s",
                code=f"{self.name}_overloaded",
                retry_after_s=wait,
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._changed()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(None)  # the slot was handed over just as the caller gave up: pass it on
            elif turn in self._waiters:  # (a release may already have dropped it from the line)
                self._waiters.remove(turn)
                self._changed()
            raise
        return Ticket(self)

    def _release(self, held_s: float | None) -> None:
        if held_s is not None:
            self.service_s += 0.2 * (held_s - self.service_s)
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes to the next in line: ``active`` is unchanged
                self._changed()
                return
        self.active -= 1
        self._changed()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        ticket = await self.enter()
        try:
            yield ticket
        finally:
            ticket.release()
