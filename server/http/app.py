"""``create_app(services)``: the HTTP app, and nothing else. Routes by domain (search, answers, health), the
exception handlers and the OpenAPI document; the services come from ``services`` (server/runtime.py), entered
at start-up and left at shutdown, and reach the routes by dependency injection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.types import Scope

from server.errors import BackendUnavailable
from server.http import answers, health, search
from server.http.errors import EXCEPTION_HANDLERS
from server.metrics import GatewayMetrics, metrics_middleware
from server.runtime import Services

__all__ = ["ServicesSource", "create_app"]

ServicesSource = Callable[[], AbstractAsyncContextManager[Services]]


def _services(state: State) -> Services:
    services: Services | None = state.get("services")
    if services is None:  # before start-up or after shutdown
        raise BackendUnavailable("the search index is not loaded yet", code="not_ready")
    return services


def _metrics(scope: Scope) -> GatewayMetrics | None:
    services: Services | None = scope["litestar_app"].state.get("services")
    return None if services is None else services.metrics


def create_app(services: ServicesSource) -> Litestar:
    """The gateway's HTTP API over what ``services()`` opens: ``partial(serving, settings)`` in the process,
    the same with an injected embedder and generator in tests."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with services() as opened:
            app.state.services = opened
            try:
                yield
            finally:
                app.state.services = None

    return Litestar(
        route_handlers=[*search.ROUTES, *answers.ROUTES, *health.ROUTES],
        dependencies={"services": Provide(_services, sync_to_thread=False)},
        lifespan=[lifespan],
        middleware=[metrics_middleware(_metrics)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Albert France Services",
            version="1.0.0",
            description=(
                "Search over the service-public.fr fiches and answers grounded in them (quoted or drafted), "
                "for France Services advisors."
            ),
        ),
        request_max_body_size=64 * 1024,
    )
