"""One exception type per kind of failure, the same for both transports."""

from __future__ import annotations

__all__ = [
    "AlbertError",
    "DeadlineExceeded",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "Unauthenticated",
    "Unavailable",
]


class AlbertError(Exception):
    """``code``: the server's stable error code (e.g. ``empty_query``), or the transport's status name;
    ``retry_after_s``: the seconds the server asked to wait before retrying (``Retry-After``), if it said."""

    def __init__(self, message: str, *, code: str, status: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after_s = retry_after_s


class InvalidRequest(AlbertError):
    """HTTP 400/422, gRPC INVALID_ARGUMENT: fix the request."""


class NotFound(AlbertError):
    pass


class Overloaded(AlbertError):
    """HTTP 429, gRPC RESOURCE_EXHAUSTED: retry later."""


class Unavailable(AlbertError):
    """HTTP 503, gRPC UNAVAILABLE, or the server cannot be reached."""


class DeadlineExceeded(AlbertError):
    """HTTP 504, gRPC DEADLINE_EXCEEDED: the server or the client's deadline ran out."""


class Unauthenticated(AlbertError):
    pass


BY_GRPC_STATUS: dict[str, type[AlbertError]] = {
    "INVALID_ARGUMENT": InvalidRequest,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": Overloaded,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
    "UNAUTHENTICATED": Unauthenticated,
}
BY_HTTP_STATUS: dict[int, type[AlbertError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    404: NotFound,
    422: InvalidRequest,
    429: Overloaded,
    503: Unavailable,
    504: DeadlineExceeded,
}
