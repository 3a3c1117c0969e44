"""Health (liveness, readiness), Prometheus metrics and the advisors' page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from server.metrics import CONTENT_TYPE_LATEST
from server.runtime import Services
from server.schemas import HealthStatus

__all__ = ["ROUTES"]

_PAGE = (Path(__file__).resolve().parent / "static" / "index.html").read_text()


@get("/", include_in_schema=False, media_type=MediaType.HTML)
async def page() -> str:
    """The advisors' page (French); it calls /v1/search and /v1/answers from the browser."""
    return _PAGE


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
async def ready(state: State) -> Response[HealthStatus]:
    services: Services | None = state.get("services")
    health = (
        HealthStatus(status="not ready", checks={"index": "not loaded"})
        if services is None
        else await services.readiness()
    )
    ok = health.status != "not ready"
    return Response(health, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)


@get("/metrics", include_in_schema=False, media_type=CONTENT_TYPE_LATEST)
async def prometheus(services: NamedDependency[Services]) -> Response[bytes]:
    """Prometheus text exposition of the gateway's metrics (server/metrics.py)."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


ROUTES: list[Any] = [page, live, ready, prometheus]
