"""One error tree for the whole gateway, with one table to HTTP status and one to gRPC status codes.

Every failure a user can see is an ``ApiError`` subclass; anything else is a bug and becomes a 500 with a
generic message (details stay in the log).
"""

from __future__ import annotations

import math
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
    "Misconfigured",
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
    retry_after: ClassVar[float | None] = None
    """Seconds after which a retry may succeed (the ``Retry-After`` header, gRPC ``retry-after`` metadata)."""

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.type
        self.retry_after_s = self.retry_after if retry_after_s is None else retry_after_s

    def retry_after_header(self) -> str | None:
        """Whole seconds, at least 1, as HTTP's ``Retry-After`` wants them; ``None`` when retrying is pointless."""
        return None if self.retry_after_s is None else str(max(1, math.ceil(self.retry_after_s)))


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
    """More work than the gateway admits (server/admission.py) or than Triton's queue holds."""

    type = "overloaded"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    retry_after: ClassVar[float | None] = 1.0


class BackendUnavailable(ApiError):
    """Triton (or one of its models) is down or not ready."""

    type = "backend_unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"
    # About the time the embedded default's supervisor needs to bring a dead tritonserver back.
    retry_after: ClassVar[float | None] = 5.0


class Misconfigured(BackendUnavailable):
    """A part of the deployment that will not come back by waiting (a missing tokenizer, a model interface
    that does not match what Triton serves): 503 without a retry time."""

    retry_after: ClassVar[float | None] = None


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
