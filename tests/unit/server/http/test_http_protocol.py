"""The request-head deadline (server/http/protocol.py) under a real uvicorn: silent and trickling
connections are closed, a normal client and a keep-alive client that asks again in time are served."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import uvicorn

from server.http.protocol import with_head_timeout
from server.triton.process import free_port

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _closed_after(reader: asyncio.StreamReader, limit_s: float) -> float | None:
    """Seconds until the server closed the connection, or None if it was still open after ``limit_s``."""
    started = time.perf_counter()
    try:
        while await asyncio.wait_for(reader.read(1024), limit_s):
            pass
    except TimeoutError:
        return None
    return time.perf_counter() - started


def testsilent_and_trickling_connections_are_closed_and_others_served() -> None:
    async def run() -> None:
        port = free_port()
        config = uvicorn.Config(_app, host="127.0.0.1", port=port, log_level="warning", http=with_head_timeout(0.5))
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
            trickle_reader, trickle = await asyncio.open_connection("127.0.0.1", port)

            async def trickling() -> None:
                for byte in REQUEST:
                    trickle.write(bytes([byte]))
                    await asyncio.sleep(0.1)  # the whole head takes 2.7 s

            sending = asyncio.ensure_future(trickling())
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.3)
            writer.write(REQUEST)  # the same keep-alive connection, in time
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")

            silent_closed = await _closed_after(silent_reader, 3)
            trickle_closed = await _closed_after(trickle_reader, 3)
            sending.cancel()
            assert silent_closed is not None, "a silent connection stayed open"
            assert trickle_closed is not None, "a trickling connection stayed open"
            assert await _closed_after(reader, 3) is not None  # idle after its response: closed too
            for stream in (silent, trickle, writer):
                stream.close()
        finally:
            server.should_exit = True
            await serving

    asyncio.run(run())
