"""``create_app(settings)``: the only place where routes, exception handlers and the lifespan are wired."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, JSONBody, Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from numpy.typing import NDArray

from corpus.index import Manifest, load_index
from corpus.records import Fiche
from server.answers.chat import ChatFormat
from server.answers.service import AnswerPreview, AnswerService, Delta, Generator, Prepared
from server.answers.sse import sse_event
from server.batching import MicroBatcher
from server.errors import (
    ApiError,
    BackendUnavailable,
    ErrorBody,
    ErrorDetail,
    InternalError,
    InvalidRequest,
    NotFound,
    error_body,
)
from server.generation import TritonGenerator
from server.metrics import CONTENT_TYPE_LATEST, GatewayMetrics, metrics_middleware
from server.model_interface import GeneratorInterface, ModelInterface, load_interface
from server.rpc.server import RunningServer, start_grpc_server
from server.schemas import AnswerRequest, AnswerResponse, HealthStatus, SearchRequest, SearchResponse
from server.service import Embedder, SearchService
from server.settings import Settings
from server.triton_client import TritonEmbedder

__all__ = ["create_app"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """Nobody is left to answer; the response is never sent."""


log = logging.getLogger("albert.gateway")


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error responses a route can give (all share the one error body)."""
    described = {
        400: "The request cannot be read: malformed JSON, wrong types, unknown fields, missing parameters.",
        404: "No such fiche.",
        422: "A value is not acceptable: empty or too long question, unknown audience, k out of range.",
        429: "The gateway admits no more of this work now (or the generator's queue is full): retry after the "
        "`Retry-After` header's seconds.",
        503: "Triton, the embedding model or (for answers) the generator is not available.",
        504: "Triton did not answer in time (for answers: the generator timeout).",
    }
    return {s: ResponseSpec(data_container=ErrorBody, description=described[s]) for s in statuses}


def _service(request: Request[Any, Any, Any]) -> SearchService:
    service: SearchService | None = request.app.state.get("service")
    if service is None:
        raise BackendUnavailable("the search index is not loaded yet", code="not_ready")
    return service


@get(
    "/v1/search",
    summary="Search the fiches (query string)",
    tags=["search"],
    responses=_errors(400, 422, 429, 503, 504),
)
async def search_get(
    request: Request[Any, Any, Any],
    q: str = Parameter(description="The advisor's question or the person's situation, 1-2,000 characters."),
    audience: str | None = Parameter(default=None, description="particuliers, professionnels or associations."),
    k: int | None = Parameter(default=None, description="Number of fiches to return, 1-50 (default 5)."),
) -> SearchResponse:
    return await _service(request).search(SearchRequest(q=q, audience=audience, k=k))


@post(
    "/v1/search",
    summary="Search the fiches (JSON body)",
    tags=["search"],
    status_code=HTTP_200_OK,
    responses=_errors(400, 422, 429, 503, 504),
)
async def search_post(request: Request[Any, Any, Any], data: JSONBody[SearchRequest]) -> SearchResponse:
    return await _service(request).search(data)


def _answers(request: Request[Any, Any, Any]) -> AnswerService:
    _service(request)
    answers: AnswerService = request.app.state.answers
    return answers


_event_encoder = msgspec.json.Encoder()


async def _sse(answers: AnswerService, prepared: Prepared) -> AsyncIterator[bytes]:
    """sources (the bundle without the answer), delta* (text pieces), then answer (the whole response).
    A failure after the first event is sent as an ``error`` event with the usual error body."""
    names = {AnswerPreview: "sources", Delta: "delta", AnswerResponse: "answer"}
    try:
        async with aclosing(answers.events(prepared)) as events:  # a client that leaves frees the slot at once
            async for event in events:
                yield sse_event(names[type(event)], _event_encoder.encode(event))
    except ApiError as exc:
        log.warning("answer %s failed while streaming: %s", prepared.id, exc.message)
        yield sse_event("error", _event_encoder.encode(error_body(exc)))
    except Exception:
        log.exception("answer %s failed while streaming", prepared.id)
        failure = InternalError("internal error; the gateway log has the details")
        yield sse_event("error", _event_encoder.encode(error_body(failure)))


async def _unless_disconnected(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """Run ``work`` but cancel it if the client goes away first (generation then stops in Triton).

    The body has been read, so the next ASGI message can only be ``http.disconnect``."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler is cancelled (shutdown): so is the work
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        log.info("client left before its answer was ready; generation cancelled")
        raise ClientDisconnected("the client closed the connection")
    return task.result()


@dataclass
class _AnswersOperation(Operation):
    """Documents the Server-Sent Events alternative of the 200 response (``stream: true``)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["text/event-stream"] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    description="One event: `sources`, then `delta`*, then `answer` (or `error`); `data` is JSON.",
                    properties={
                        "event": Schema(type=OpenAPIType.STRING, enum=["sources", "delta", "answer", "error"]),
                        "data": Schema(type=OpenAPIType.STRING),
                    },
                    required=["event", "data"],
                )
            )


@post(
    "/v1/answers",
    operation_class=_AnswersOperation,
    summary="A French answer checked sentence by sentence, with its sources, related questions, links and fiches",
    description=(
        "The answer quotes the fiches (`answer_kind: quoted`) or is drafted by the generator (`drafted`), as "
        "the deployment sets; either way every sentence is checked against the source it cites (`grounding`). "
        "With `stream: true` the response is `text/event-stream`: a `sources` event (the bundle without the "
        "answer), `delta` events (the raw draft as generated, or the quoted answer in one piece), then an "
        "`answer` event holding the complete, checked response, identical to the non-streaming body. Errors "
        "after the first event arrive as an `error` event."
    ),
    tags=["answers"],
    status_code=HTTP_200_OK,
    responses=_errors(400, 422, 429, 503, 504),
)
async def answers_post(request: Request[Any, Any, Any], data: JSONBody[AnswerRequest]) -> Response[Any]:
    answers = _answers(request)
    if not data.stream:
        return Response(await _unless_disconnected(request, answers.answer(data)))
    prepared = await answers.prepare(data)
    return Stream(
        _sse(answers, prepared),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@get("/v1/fiches/{fiche_id:str}", summary="One parsed fiche", tags=["fiches"], responses=_errors(404, 503))
async def get_fiche(request: Request[Any, Any, Any], fiche_id: FromPath[str]) -> Fiche:
    return _service(request).fiche(fiche_id)


_STATIC = Path(__file__).resolve().parent / "static"


def _page_route(html: str) -> Any:
    @get("/", include_in_schema=False, media_type=MediaType.HTML)
    async def page() -> str:
        """The advisors' search page (French); it calls /v1/search from the browser."""
        return html

    return page


@get("/health/live", summary="The process is up", tags=["health"])
async def live() -> HealthStatus:
    return HealthStatus(status="live", checks={})


@get(
    "/health/ready",
    summary="Search is ready (index, Triton, embedding model); answers need the generator too",
    description=(
        "200 when search works. `status` is `degraded` when only answers are unavailable "
        "(the generator model or its tokenizer): the gateway should stay in rotation for search."
    ),
    tags=["health"],
    responses={503: ResponseSpec(data_container=HealthStatus, description="Not ready: per-check status.")},
)
async def ready(request: Request[Any, Any, Any]) -> Response[HealthStatus]:
    state = request.app.state
    embedder, generator = state.get("embedder"), state.get("generator")
    checks = {"index": "ok" if state.get("service") is not None else "not loaded"}
    if isinstance(embedder, TritonEmbedder):
        checks.update(await embedder.readiness())
    ok = all(v == "ok" for v in checks.values())
    answers = state.get("answers")
    generator_checks = {"generator_tokenizer": "ok" if answers is not None and answers.chat is not None else "missing"}
    if isinstance(generator, TritonGenerator) and checks.get("triton") == "ok":
        try:
            await generator.ensure_ready()
            generator_checks["generator_model"] = "ok"
        except ApiError as exc:
            generator_checks["generator_model"] = "not ready" if exc.code == "generator_unavailable" else exc.message
    checks.update(generator_checks)
    status = "ready" if all(v == "ok" for v in checks.values()) else "degraded" if ok else "not ready"
    return Response(
        HealthStatus(status=status, checks=checks), status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE
    )


@get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
async def prometheus(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text exposition of the gateway's metrics (server/metrics.py)."""
    metrics: GatewayMetrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _error_response(exc: ApiError) -> Response[Any]:
    retry = exc.retry_after_header()
    return Response(
        error_body(exc),
        status_code=exc.http_status,
        media_type=MediaType.JSON,
        headers={"Retry-After": retry} if retry is not None else None,
    )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _error_response(exc)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    details = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in details:
        if isinstance(item, dict):
            key = item.get("key")
            parts.append(f"{key}: {item.get('message')}" if key else str(item.get("message")))
    message = "; ".join(parts) or exc.detail
    return _error_response(InvalidRequest(message))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return _error_response(NotFound(exc.detail))
    kind = {400: "invalid_request", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    body = ErrorBody(error=ErrorDetail(type=kind, message=exc.detail, code=kind))
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON, headers=exc.headers)


def _too_deep(_: Request[Any, Any, Any], _exc: RecursionError) -> Response[Any]:
    # msgspec decodes nested JSON recursively: a body of 60,000 "[" exhausts Python's recursion limit.
    return _error_response(InvalidRequest("the JSON body is nested too deeply", code="body_too_deep"))


def _client_left(_: Request[Any, Any, Any], _exc: ClientDisconnected) -> Response[Any]:
    return Response(b"", status_code=499)  # nginx's "client closed request"; nobody reads it


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return _error_response(InternalError("internal error; the gateway log has the details"))


def _chat_format(tokenizer_dir: Path | None) -> ChatFormat | None:
    if tokenizer_dir is None:
        log.warning("answers are unavailable (search works): no generator tokenizer (ALBERT_GENERATOR_TOKENIZER_DIR)")
        return None
    try:
        return ChatFormat(tokenizer_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        log.warning("answers are unavailable (search works): %s", exc)
        return None


def _micro_batched(embedder: Embedder, settings: Settings, metrics: GatewayMetrics, model_limit: int) -> Embedder:
    max_batch = min(settings.embed_batch_max, model_limit)
    if max_batch <= 1:
        return embedder

    async def call(texts: list[str], kind: str, timeout_s: float | None) -> NDArray[np.float32]:
        return await embedder.embed(texts, kind, timeout_s=timeout_s)

    return MicroBatcher(
        call,
        max_batch=max_batch,
        max_wait_s=settings.embed_batch_wait_ms / 1000,
        on_batch=metrics.embed_batch.observe,
        on_queue=metrics.embed_queue.set,
    )


def _answers_at_once(settings: Settings, interface: ModelInterface | None) -> int:
    """The default of ``answers_max_active``: the embedding model's instances for quoted answers (embedding
    their candidate sentences is their cost: on the CPU default, one at a time gave admitted answers a p50 of
    5.0 s under a burst, two at a time 11.4 s; benchmarks/README.md), the generator's concurrent sequences
    when answers are drafted."""
    if interface is None:
        return 1
    if settings.answer_mode == "quoted":
        return interface.embedder.instances
    return interface.generator.max_concurrency


def _check_limits(settings: Settings, generator: GeneratorInterface) -> None:
    """Warn when the answer settings exceed what the rendered generator accepts (its requests would fail)."""
    if settings.answer_max_tokens > generator.max_output_tokens:
        log.warning(
            "ALBERT_ANSWER_MAX_TOKENS=%d exceeds the generator's max output length %d: longer answers will fail",
            settings.answer_max_tokens,
            generator.max_output_tokens,
        )
    if settings.answer_prompt_tokens > generator.max_input_tokens:
        log.warning(
            "ALBERT_ANSWER_PROMPT_TOKENS=%d exceeds the generator's max input length %d: answers will fail",
            settings.answer_prompt_tokens,
            generator.max_input_tokens,
        )


def _check_index(settings: Settings, manifest: Manifest, interface: ModelInterface | None) -> None:
    """Refuse an index whose vectors the served embedder cannot be compared with (every search would fail), and
    warn when it was built with another model of the same width (searches would run, ranked wrongly)."""
    if interface is not None and interface.embedder.dim != manifest.dim:
        raise RuntimeError(
            f"the index was built with {manifest.embedding_model} ({manifest.dim}-d vectors) but the served embedder "
            f"'{interface.embedder.model}' gives {interface.embedder.dim}-d vectors: rebuild the index with the served "
            "embedder (python -m build_engines setup with the same ALBERT_EMBEDDER settings)"
        )
    try:
        meta = json.loads((settings.embedding_dir / "embedder.json").read_text())
        expected = settings.embedding_model_id(meta)
    except (OSError, ValueError, KeyError):
        return  # the model directory lives elsewhere (a GPU host's): nothing to compare with here
    if expected != manifest.embedding_model:
        log.warning(
            "the index was built with %s, the settings name %s: rankings will be wrong until the index is rebuilt",
            manifest.embedding_model,
            expected,
        )
    tower = settings.query_embedding_dir
    if tower is not None:
        try:
            trained_for = json.loads((tower / "embedder.json").read_text())["query_tower"]["index_model"]
        except (OSError, ValueError, KeyError, TypeError):
            trained_for = None
        if trained_for != manifest.embedding_model:
            log.warning(
                "the query tower %s was trained for the index of %s, not this one (%s): rankings will be wrong until "
                "set-up trains it again",
                tower,
                trained_for,
                manifest.embedding_model,
            )


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    index_dir: Path | None = None,
) -> Litestar:
    """The gateway. Tests may pass an ``embedder`` and a ``generator``; otherwise Triton clients are created
    at start-up."""

    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned: list[TritonEmbedder | TritonGenerator] = []
        interface = None if embedder and generator else load_interface(settings.resolved_model_interface)
        active: Embedder
        if embedder is None:
            assert interface is not None
            active = TritonEmbedder(settings.triton_grpc_url, interface.embedder, timeout_s=settings.triton_timeout_s)
            owned.append(active)
        else:
            active = embedder
        writer: Generator
        if generator is None:
            assert interface is not None
            _check_limits(settings, interface.generator)
            writer = TritonGenerator(
                settings.triton_grpc_url, interface.generator, timeout_s=settings.generator_timeout_s
            )
            owned.append(writer)
        else:
            writer = generator
        tokenizer_dir = settings.generator_tokenizer_dir or (interface.generator.tokenizer_dir if interface else None)
        app.state.embedder = active
        app.state.generator = writer
        rpc: RunningServer | None = None
        try:
            loaded = load_index(index_dir or settings.resolved_index_dir)
            if embedder is None:  # the served embedder (an injected one is the caller's business)
                _check_index(settings, loaded.manifest, interface)
            limit = settings.embed_batch_max if interface is None else interface.embedder.max_batch_size
            service = SearchService(settings, loaded, _micro_batched(active, settings, metrics, limit), metrics)
            at_once = _answers_at_once(settings, interface)
            answers = AnswerService(settings, service, writer, _chat_format(tokenizer_dir), concurrency=at_once)
            app.state.answers = answers
            app.state.service = service
            log.info("index loaded: %s", loaded.manifest.corpus_version)
            if settings.grpc_port:
                ready = None
                if isinstance(active, TritonEmbedder):
                    embedder_checks = active

                    async def search_ready() -> bool:
                        return all(v == "ok" for v in (await embedder_checks.readiness()).values())

                    ready = search_ready
                rpc = await start_grpc_server(settings, service, answers, ready)
            yield
        finally:
            app.state.service = None
            if rpc is not None:
                await rpc.stop(grace_s=settings.drain_s)
            for client in owned:
                await client.close()

    return Litestar(
        route_handlers=[
            search_get,
            search_post,
            answers_post,
            get_fiche,
            live,
            ready,
            prometheus,
            _page_route((_STATIC / "index.html").read_text()),
        ],
        lifespan=[lifespan],
        state=State({"metrics": metrics}),
        middleware=[metrics_middleware(metrics)],
        exception_handlers={
            ApiError: _api_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            ClientDisconnected: _client_left,
            RecursionError: _too_deep,
            Exception: _unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="Albert France Services",
            version="1.0.0",
            description=(
                "Search over the service-public.fr fiches and drafted answers grounded in them, "
                "for France Services advisors."
            ),
        ),
        request_max_body_size=64 * 1024,
    )
