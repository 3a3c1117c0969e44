"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on every request head.

uvicorn closes a keep-alive connection that stays idle after a response, but a connection that sends
nothing, or its request line and headers one byte at a time (each byte restarts uvicorn's idle timer), is
kept for ever: enough of them exhaust the process's file descriptors. Here, a connection that has not sent
a complete request head within ``head_timeout_s`` of connecting, or of its previous response, is closed.
Bodies are bounded in size (64 KB) by the app; handlers start only once the body is read, so a slow body
holds no admission slot.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["with_head_timeout"]


class _HeadTimeoutH11(H11Protocol):
    head_timeout_s = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # before the next request's head, which a pipelined client may have sent already
        super().on_response_complete()
        if self.transport.is_closing():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def with_head_timeout(seconds: float) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    return type("HeadTimeoutH11", (_HeadTimeoutH11,), {"head_timeout_s": seconds})
