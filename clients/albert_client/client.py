"""``AnswerClient`` (blocking) and ``AsyncAnswerClient`` (asyncio), over gRPC or HTTP.

The transport follows the target: ``host:port`` is gRPC (``albert.v1.AnswerService``),
``http://…``/``https://…`` is the HTTP API. Every call takes a deadline (``timeout_s``, default the
client's). Search and GetFiche are idempotent and retried with exponential backoff (or after the server's
``Retry-After``, when longer) when the server is unavailable or overloaded; answers are not retried (they
are expensive and the caller decides). Leaving a streaming loop early cancels the call, and the server stops
generating.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import msgspec
from albert_proto.v1 import answers_pb2 as pb
from albert_proto.v1 import answers_pb2_grpc as pb_grpc

from albert_client import _convert as cv
from albert_client.errors import AlbertError, Overloaded, Unavailable
from albert_client.types import Answer, Fiche, SearchResults

__all__ = ["TLS", "AnswerClient", "AsyncAnswerClient", "Event"]

Event = cv.Event
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TLS:
    """``ca``: CA bundle that signed the server (None: the system's); ``cert``/``key``: the client's own
    certificate for mutual TLS; ``server_name``: the name to check in the server certificate when it
    differs from the target host."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca), private_key=_read(self.key), certificate_chain=_read(self.cert)
        )

    def httpx_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"verify": str(self.ca) if self.ca is not None else True}
        if self.cert is not None:
            options["cert"] = (str(self.cert), str(self.key)) if self.key is not None else str(self.cert)
        return options


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def _is_http(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def _channel_options(tls: TLS | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 60_000),
    ]
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return options


def _retry_wait(exc: AlbertError, backoff_s: float, cap_s: float) -> float:
    """Seconds before the next try: the backoff, or the server's ``Retry-After`` when longer, at most ``cap_s``."""
    return min(max(backoff_s, exc.retry_after_s or 0.0), cap_s)


def _search_params(query: str, audience: str | None, k: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"q": query}
    if audience is not None:
        params["audience"] = audience
    if k is not None:
        params["k"] = k
    return params


class AnswerClient:
    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 120.0,
        tls: TLS | None = None,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_retry_wait_s: float = 10.0,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_retry_wait_s = max_retry_wait_s
        self._http: httpx.Client | None = None
        self._channel: grpc.Channel | None = None
        if _is_http(target):
            self._http = httpx.Client(base_url=target, timeout=timeout_s, **(tls.httpx_options() if tls else {}))
        else:
            options = _channel_options(tls)
            self._channel = (
                grpc.secure_channel(target, tls.grpc_credentials(), options=options)
                if tls is not None
                else grpc.insecure_channel(target, options=options)
            )
            self._stub = pb_grpc.AnswerServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> AnswerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._channel is not None:
            self._channel.close()

    def _retrying(self, call: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (Unavailable, Overloaded) as exc:
                if attempt == self.retries:
                    raise
                time.sleep(_retry_wait(exc, self.backoff_s * 2**attempt, self.max_retry_wait_s))
        raise AssertionError("unreachable")

    def _grpc(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as exc:
            raise cv.grpc_error(exc) from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self._http is not None
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise cv.connection_error(exc) from exc
        if response.status_code != 200:
            raise cv.http_error(response)
        return response

    def answer(
        self,
        question: str,
        *,
        audience: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        request = cv.answer_request(question, audience, k, max_tokens, temperature)
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            body = cv.http_answer_body(request, stream=False)
            return msgspec.json.decode(
                self._request("POST", "/v1/answers", json=body, timeout=timeout).content, type=Answer
            )
        return cv.answer(self._grpc(lambda: self._stub.Answer(request, timeout=timeout)))

    def stream_answer(
        self,
        question: str,
        *,
        audience: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[Event]:
        """AnswerBundle first, then Delta pieces, then the Answer. Closing the iterator cancels the call."""
        request = cv.answer_request(question, audience, k, max_tokens, temperature)
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            body = cv.http_answer_body(request, stream=True)
            try:
                with self._http.stream("POST", "/v1/answers", json=body, timeout=timeout) as response:
                    if response.status_code != 200:
                        response.read()
                        raise cv.http_error(response)
                    parser = cv.SseParser()
                    for line in response.iter_lines():
                        if (event := parser.feed(line)) is not None:
                            yield event
            except httpx.TransportError as exc:
                raise cv.connection_error(exc) from exc
            return
        call = self._stub.StreamAnswer(request, timeout=timeout)
        try:
            for message in call:
                yield cv.event(message)
        except grpc.RpcError as exc:
            raise cv.grpc_error(exc) from exc
        finally:
            call.cancel()

    def search(
        self, query: str, *, audience: str | None = None, k: int | None = None, timeout_s: float | None = None
    ) -> SearchResults:
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            params = _search_params(query, audience, k)
            return self._retrying(
                lambda: msgspec.json.decode(
                    self._request("GET", "/v1/search", params=params, timeout=timeout).content, type=SearchResults
                )
            )
        request = pb.SearchRequest(query=query, audience=audience, k=k)
        return cv.search(self._retrying(lambda: self._grpc(lambda: self._stub.Search(request, timeout=timeout))))

    def get_fiche(self, fiche_id: str, *, timeout_s: float | None = None) -> Fiche:
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            return self._retrying(
                lambda: msgspec.json.decode(
                    self._request("GET", f"/v1/fiches/{fiche_id}", timeout=timeout).content, type=Fiche
                )
            )
        request = pb.GetFicheRequest(id=fiche_id)
        return cv.fiche(self._retrying(lambda: self._grpc(lambda: self._stub.GetFiche(request, timeout=timeout))))


class AsyncAnswerClient:
    """The same calls as ``AnswerClient``, as coroutines and an async iterator."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 120.0,
        tls: TLS | None = None,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_retry_wait_s: float = 10.0,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_retry_wait_s = max_retry_wait_s
        self._http: httpx.AsyncClient | None = None
        self._channel: grpc.aio.Channel | None = None
        if _is_http(target):
            self._http = httpx.AsyncClient(base_url=target, timeout=timeout_s, **(tls.httpx_options() if tls else {}))
        else:
            options = _channel_options(tls)
            self._channel = (
                grpc.aio.secure_channel(target, tls.grpc_credentials(), options=options)
                if tls is not None
                else grpc.aio.insecure_channel(target, options=options)
            )
            self._stub = pb_grpc.AnswerServiceStub(self._channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AsyncAnswerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._channel is not None:
            await self._channel.close()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except (Unavailable, Overloaded) as exc:
                if attempt == self.retries:
                    raise
                await asyncio.sleep(_retry_wait(exc, self.backoff_s * 2**attempt, self.max_retry_wait_s))
        raise AssertionError("unreachable")

    async def _grpc(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except grpc.RpcError as exc:
            raise cv.grpc_error(exc) from exc

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self._http is not None
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise cv.connection_error(exc) from exc
        if response.status_code != 200:
            raise cv.http_error(response)
        return response

    async def answer(
        self,
        question: str,
        *,
        audience: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        request = cv.answer_request(question, audience, k, max_tokens, temperature)
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            body = cv.http_answer_body(request, stream=False)
            response = await self._request("POST", "/v1/answers", json=body, timeout=timeout)
            return msgspec.json.decode(response.content, type=Answer)
        return cv.answer(await self._grpc(lambda: self._stub.Answer(request, timeout=timeout)))

    async def stream_answer(
        self,
        question: str,
        *,
        audience: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[Event]:
        request = cv.answer_request(question, audience, k, max_tokens, temperature)
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            body = cv.http_answer_body(request, stream=True)
            try:
                async with self._http.stream("POST", "/v1/answers", json=body, timeout=timeout) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise cv.http_error(response)
                    parser = cv.SseParser()
                    async for line in response.aiter_lines():
                        if (event := parser.feed(line)) is not None:
                            yield event
            except httpx.TransportError as exc:
                raise cv.connection_error(exc) from exc
            return
        call = self._stub.StreamAnswer(request, timeout=timeout)
        try:
            async for message in call:
                yield cv.event(message)
        except grpc.RpcError as exc:
            raise cv.grpc_error(exc) from exc
        finally:
            call.cancel()

    async def search(
        self, query: str, *, audience: str | None = None, k: int | None = None, timeout_s: float | None = None
    ) -> SearchResults:
        timeout = timeout_s or self.timeout_s
        if self._http is not None:
            params = _search_params(query, audience, k)

            async def over_http() -> SearchResults:
                response = await self._request("GET", "/v1/search", params=params, timeout=timeout)
                return msgspec.json.decode(response.content, type=SearchResults)

            return await self._retrying(over_http)
        request = pb.SearchRequest(query=query, audience=audience, k=k)
        return cv.search(await self._retrying(lambda: self._grpc(lambda: self._stub.Search(request, timeout=timeout))))

    async def get_fiche(self, fiche_id: str, *, timeout_s: float | None = None) -> Fiche:
        timeout = timeout_s or self.timeout_s
        if self._http is not None:

            async def over_http() -> Fiche:
                response = await self._request("GET", f"/v1/fiches/{fiche_id}", timeout=timeout)
                return msgspec.json.decode(response.content, type=Fiche)

            return await self._retrying(over_http)
        request = pb.GetFicheRequest(id=fiche_id)
        return cv.fiche(await self._retrying(lambda: self._grpc(lambda: self._stub.GetFiche(request, timeout=timeout))))
