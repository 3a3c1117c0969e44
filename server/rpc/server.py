"""``albert.v1.AnswerService`` on grpc.aio, in the gateway process, over the same services as HTTP.

- Requests are decoded here (handlers receive raw bytes): a message that does not parse is answered
  INVALID_ARGUMENT, never INTERNAL; values are checked by the service layer, like HTTP's.
- Errors: one table from the error tree (``ApiError.grpc_status``) to ``grpc.StatusCode``; the message
  goes in ``details``, the stable code in the ``error-code`` trailing metadata and, when a retry may succeed
  (RESOURCE_EXHAUSTED, UNAVAILABLE), the seconds to wait in ``retry-after``. Anything else is
  INTERNAL with a generic message (the log has the details).
- The client's deadline bounds the Triton calls (embedding and generation); when it passes, or when the
  client cancels, the handler is cancelled and so is the generation in Triton.
- Standard health checking (``grpc.health.v1``: SERVING while search works, following Triton's readiness;
  NOT_SERVING during shutdown) and server reflection are on; TLS, or mutual TLS when a client CA is
  configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
from albert_proto.v1 import answers_pb2 as pb
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from config.settings import Settings
from server.answers.service import AnswerPreview, AnswerService, Delta
from server.errors import ApiError, InvalidRequest
from server.rpc import convert
from server.runtime import Services
from server.schemas import AnswerResponse
from server.search.service import SearchService

__all__ = ["SERVICE_NAME", "RunningServer", "start_grpc_server"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AnswerService"].full_name
log = logging.getLogger("albert.grpc")

M = TypeVar("M", bound=Message)
Readiness = Callable[[], Awaitable[bool]]
UnaryHandler = Callable[[bytes, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[bytes]]
StreamHandler = Callable[[bytes, "grpc.aio.ServicerContext[Any, Any]"], AsyncIterator[bytes]]


def _parse(message_type: type[M], data: bytes) -> M:
    try:
        message: M = message_type.FromString(data)
    except (DecodeError, ValueError) as exc:  # ValueError: invalid UTF-8 in a string field
        raise InvalidRequest(f"the {message_type.DESCRIPTOR.name} message cannot be decoded: {exc}") from exc
    return message


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    if isinstance(exc, ApiError):
        metadata = [("error-code", exc.code)]
        if (retry := exc.retry_after_header()) is not None:
            metadata.append(("retry-after", retry))  # seconds, as HTTP's Retry-After
        context.set_trailing_metadata(tuple(metadata))
        await context.abort(grpc.StatusCode[exc.grpc_status], exc.message)
    log.exception("unhandled error in a gRPC call", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; the gateway log has the details")


def _timeout(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(remaining, 0.0)


def _code(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


class AnswerServicer:
    def __init__(self, search: SearchService, answers: AnswerService) -> None:
        self.search = search
        self.answers = answers
        self.metrics = search.metrics

    @contextlib.contextmanager
    def _measured(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Iterator[None]:
        """Count and time one call by method and final status code."""
        started, code = time.perf_counter(), "OK"
        try:
            yield
        except BaseException as exc:
            code = _code(context, exc)
            raise
        finally:
            self.metrics.grpc_requests.labels(method, code).inc()
            self.metrics.grpc_duration.labels(method).observe(time.perf_counter() - started)

    def _unary_measured(self, method: str, handler: UnaryHandler) -> UnaryHandler:
        async def measured(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            with self._measured(method, context):
                return await handler(data, context)

        return measured

    def _stream_measured(self, method: str, handler: StreamHandler) -> StreamHandler:
        async def measured(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
            with self._measured(method, context):
                async for message in handler(data, context):
                    yield message

        return measured

    async def _unary(
        self, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[Message]]
    ) -> bytes:
        try:
            payload: bytes = (await call()).SerializeToString()
        except Exception as exc:
            await _abort(context, exc)
            raise  # abort raises; this keeps type checkers informed
        return payload

    async def answer(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async def call() -> Message:
            request = convert.answer_request(_parse(pb.AnswerRequest, data))
            return convert.response_to_proto(await self.answers.answer(request, timeout_s=_timeout(context)))

        return await self._unary(context, call)

    async def stream_answer(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        try:
            request = convert.answer_request(_parse(pb.AnswerRequest, data))
            prepared = await self.answers.prepare(request, timeout_s=_timeout(context))
            async with contextlib.aclosing(self.answers.events(prepared)) as events:  # frees the slot at once
                async for event in events:
                    if isinstance(event, AnswerPreview):
                        message = pb.AnswerEvent(sources=convert.bundle_to_proto(event))
                    elif isinstance(event, Delta):
                        message = pb.AnswerEvent(delta=pb.TextDelta(text=event.text))
                    elif isinstance(event, AnswerResponse):
                        message = pb.AnswerEvent(answer=convert.response_to_proto(event))
                    yield message.SerializeToString()
        except Exception as exc:
            await _abort(context, exc)

    async def search_fiches(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async def call() -> Message:
            request = convert.search_request(_parse(pb.SearchRequest, data))
            return convert.search_to_proto(await self.search.search(request, timeout_s=_timeout(context)))

        return await self._unary(context, call)

    async def get_fiche(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        async def call() -> Message:
            return convert.fiche_to_proto(self.search.fiche(_parse(pb.GetFicheRequest, data).id))

        return await self._unary(context, call)

    def handler(self) -> grpc.GenericRpcHandler:
        identity = bytes  # responses are serialised by the handlers themselves
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Answer": grpc.unary_unary_rpc_method_handler(
                    self._unary_measured("Answer", self.answer), response_serializer=identity
                ),
                "StreamAnswer": grpc.unary_stream_rpc_method_handler(
                    self._stream_measured("StreamAnswer", self.stream_answer), response_serializer=identity
                ),
                "Search": grpc.unary_unary_rpc_method_handler(
                    self._unary_measured("Search", self.search_fiches), response_serializer=identity
                ),
                "GetFiche": grpc.unary_unary_rpc_method_handler(
                    self._unary_measured("GetFiche", self.get_fiche), response_serializer=identity
                ),
            },
        )


def _options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_receive_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_send_bytes),
        ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(settings.grpc_keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.grpc_tls_cert is None and settings.grpc_tls_key is None:
        if settings.grpc_tls_client_ca is not None:
            raise ValueError("ALBERT_GRPC_TLS_CLIENT_CA needs ALBERT_GRPC_TLS_CERT and ALBERT_GRPC_TLS_KEY")
        return None
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        raise ValueError("TLS needs both ALBERT_GRPC_TLS_CERT and ALBERT_GRPC_TLS_KEY")
    client_ca = settings.grpc_tls_client_ca.read_bytes() if settings.grpc_tls_client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(settings.grpc_tls_key.read_bytes(), settings.grpc_tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class RunningServer:
    """The started server, its health status kept in step with the search path's readiness."""

    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, ready: Readiness) -> None:
        self.server = server
        self.health = health_servicer
        self._watch = asyncio.ensure_future(self._follow(ready))

    async def _follow(self, ready: Readiness, interval_s: float = 5.0) -> None:
        serving = True
        while True:
            await asyncio.sleep(interval_s)
            now = await ready()
            if now != serving:
                serving = now
                status = health_pb2.HealthCheckResponse.SERVING if now else health_pb2.HealthCheckResponse.NOT_SERVING
                for name in ("", SERVICE_NAME):
                    await self.health.set(name, status)
                log.warning("gRPC health: %s", "SERVING" if now else "NOT_SERVING (Triton or the embedding model)")

    async def stop(self, grace_s: float = 2.0) -> None:
        self._watch.cancel()
        await self.health.enter_graceful_shutdown()  # NOT_SERVING while in-flight calls finish
        await self.server.stop(grace=grace_s)


async def start_grpc_server(services: Services) -> RunningServer:
    """The API on ``grpc_host:grpc_port`` over ``services``; its health follows the search path's readiness
    (Triton and the embedding model), polled every 5 s."""
    settings = services.settings
    server = grpc.aio.server(options=_options(settings))
    server.add_generic_rpc_handlers((AnswerServicer(services.search, services.answers).handler(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    credentials = _credentials(settings)
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC API on %s (%s)", address, "TLS" if credentials is not None else "plaintext")
    return RunningServer(server, health_servicer, services.search_ready)
