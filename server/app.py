"""``create_app(settings)``: the only place where routes, exception handlers and the lifespan are wired."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from corpus.index import load_index
from corpus.records import Fiche
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
from server.schemas import HealthStatus, SearchRequest, SearchResponse
from server.service import Embedder, SearchService
from server.settings import Settings
from server.triton_client import TritonEmbedder

__all__ = ["create_app"]

log = logging.getLogger("albert.gateway")


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error responses a route can give (all share the one error body)."""
    described = {
        400: "The request cannot be read: malformed JSON, wrong types, unknown fields, missing parameters.",
        404: "No such fiche.",
        422: "A value is not acceptable: empty or too long question, unknown audience, k out of range.",
        503: "Triton or the embedding model is not available.",
        504: "Triton did not answer in time.",
    }
    return {s: ResponseSpec(data_container=ErrorBody, description=described[s]) for s in statuses}


def _service(request: Request[Any, Any, Any]) -> SearchService:
    service: SearchService | None = request.app.state.get("service")
    if service is None:
        raise BackendUnavailable("the search index is not loaded yet", code="not_ready")
    return service


@get("/v1/search", summary="Search the fiches (query string)", tags=["search"], responses=_errors(400, 422, 503, 504))
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
    responses=_errors(400, 422, 503, 504),
)
async def search_post(request: Request[Any, Any, Any], data: JSONBody[SearchRequest]) -> SearchResponse:
    return await _service(request).search(data)


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
    summary="Triton, the embedding model and the index are ready",
    tags=["health"],
    responses={503: ResponseSpec(data_container=HealthStatus, description="Not ready: per-check status.")},
)
async def ready(request: Request[Any, Any, Any]) -> Response[HealthStatus]:
    embedder = request.app.state.get("embedder")
    checks = {"index": "ok" if request.app.state.get("service") is not None else "not loaded"}
    if isinstance(embedder, TritonEmbedder):
        checks.update(await embedder.readiness())
    ok = all(v == "ok" for v in checks.values())
    return Response(
        HealthStatus(status="ready" if ok else "not ready", checks=checks),
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


def _error_response(exc: ApiError) -> Response[Any]:
    return Response(error_body(exc), status_code=exc.http_status, media_type=MediaType.JSON)


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


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return _error_response(InternalError("internal error; the gateway log has the details"))


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    index_dir: Path | None = None,
) -> Litestar:
    """The gateway. Tests may pass an ``embedder``; otherwise a Triton client is created at start-up."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        owned: TritonEmbedder | None = None
        active: Embedder
        if embedder is None:
            owned = TritonEmbedder(
                settings.triton_grpc_url, settings.embedding_model, timeout_s=settings.triton_timeout_s
            )
            active = owned
        else:
            active = embedder
        app.state.embedder = active
        try:
            loaded = load_index(index_dir or settings.resolved_index_dir)
            app.state.service = SearchService(settings, loaded, active)
            log.info("index loaded: %s", loaded.manifest.corpus_version)
            yield
        finally:
            app.state.service = None
            if owned is not None:
                await owned.close()

    return Litestar(
        route_handlers=[
            search_get,
            search_post,
            get_fiche,
            live,
            ready,
            _page_route((_STATIC / "index.html").read_text()),
        ],
        lifespan=[lifespan],
        exception_handlers={
            ApiError: _api_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="Albert France Services",
            version="1.0.0",
            description="Search over the service-public.fr fiches, for France Services advisors.",
        ),
        request_max_body_size=64 * 1024,
    )
