"""The access log's line and request id, over a minimal ASGI app (the real stack: tests/integration/test_privacy.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from server.http.access_log import AccessLog


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def _call(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/answers", "query_string": b"q=secret", "headers": headers}
    asyncio.run(AccessLog(_app)(scope, receive, send))
    return sent


@pytest.mark.parametrize(
    ("given", "kept"), [(b"advisor-42.a_b", True), (b"x" * 65, False), (b"a b", False), (b"\xc3\xa9", False)]
)
def test_request_ids_are_kept_when_plain_tokens(given: bytes, kept: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="albert.access"):
        sent = _call([(b"x-request-id", given)])
    returned = dict(sent[0]["headers"])[b"x-request-id"]
    assert (returned == given) is kept and len(returned) <= 64
    [line] = caplog.messages
    assert line.startswith(returned.decode() + " POST /v1/answers 201 ")
    assert line.endswith("in=2 out=5") and "secret" not in line
