"""One error tree for the whole gateway, with one table to HTTP status and one to gRPC status codes.

Every failure a user can see is an ``ApiError`` subclass; anything else is a bug and becomes a 500 with a
generic message (details stay in the log).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = [
    "ApiError",
    "BackendTimeout",
    "BackendUnavailable",
    "ErrorBody",
    "ErrorDetail",
    "InternalError",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "Unauthorized",
    "ValidationFailed",
    "error_body",
]


class ApiError(Exception):
    type: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.type


class InvalidRequest(ApiError):
    """The request cannot be read: malformed JSON, wrong types, unknown fields."""

    type = "invalid_request"
    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class ValidationFailed(ApiError):
    """The request is well-formed but a value is not acceptable (empty question, k out of range...)."""

    type = "validation_error"
    http_status = 422
    grpc_status = "INVALID_ARGUMENT"


class NotFound(ApiError):
    type = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class Unauthorized(ApiError):
    type = "unauthorized"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class Overloaded(ApiError):
    type = "overloaded"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"


class BackendUnavailable(ApiError):
    """Triton (or one of its models) is down or not ready."""

    type = "backend_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"


class BackendTimeout(ApiError):
    type = "backend_timeout"
    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"


class InternalError(ApiError):
    pass


class ErrorDetail(msgspec.Struct, kw_only=True):
    type: str
    message: str
    code: str


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


def error_body(exc: ApiError) -> ErrorBody:
    return ErrorBody(error=ErrorDetail(type=exc.type, message=exc.message, code=exc.code))
