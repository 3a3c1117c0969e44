"""The gateway's access log: one line per HTTP request that keeps the person's privacy.

Advisors type what the person in front of them says — names, e-mail addresses, phone numbers, social
security numbers. The line holds the method, the path without its query string, the status, the duration,
the sizes of the request and response bodies and a request id; never the query string or a body. The
request id is the caller's ``X-Request-ID`` when it is a plain token (letters, digits, ``._-``, at most 64),
otherwise a new one; it is sent back in the response's ``X-Request-ID`` so that a caller's report can be
matched with the log. ``ALBERT_LOG_QUESTIONS`` (off by default) is the one way to log questions
(``server.search.service``), for an operator who chooses to.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["AccessLog"]

log = logging.getLogger("albert.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Any, Any, Any], Awaitable[None]]  # any ASGI app (Litestar's types are its own)

_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AccessLog:
    """ASGI middleware around the whole app (unknown routes and errors included)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex[:16]
        started = time.perf_counter()
        sizes = {"in": 0, "out": 0}
        status = 0

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                sizes["in"] += len(message.get("body", b""))
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                sizes["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, tagged_send)
        finally:
            log.info(
                "%s %s %s %d %.1fms in=%d out=%d",
                request_id,
                scope.get("method", "-"),
                scope.get("path", "-"),
                status,
                (time.perf_counter() - started) * 1000,
                sizes["in"],
                sizes["out"],
            )
