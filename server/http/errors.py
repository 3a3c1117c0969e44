"""How the error tree (server/errors.py) and Litestar's own errors become HTTP responses, and the OpenAPI
entries that document them."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec

from server.errors import ApiError, ErrorBody, ErrorDetail, InternalError, InvalidRequest, NotFound, error_body

__all__ = ["EXCEPTION_HANDLERS", "ClientDisconnected", "documented"]

log = logging.getLogger("albert.gateway")


class ClientDisconnected(Exception):
    """Nobody is left to answer; the response is never sent."""


def documented(*statuses: int) -> dict[int, ResponseSpec]:
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


EXCEPTION_HANDLERS: Any = {
    ApiError: _api_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    ClientDisconnected: _client_left,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
