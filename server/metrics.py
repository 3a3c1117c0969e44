"""Prometheus metrics of the gateway, served at ``GET /metrics`` (text exposition format).

One registry per process's services (server/runtime.py; tests build many). Names follow Prometheus
conventions: ``albert_`` prefix, base units (seconds), ``_total`` for counters; labels have a small, fixed
set of values (route templates, not paths; status codes; stage names).

| metric | type | labels |
| --- | --- | --- |
| albert_http_requests_total | counter | route, method, status |
| albert_http_request_duration_seconds | histogram | route, method |
| albert_grpc_requests_total | counter | method, code |
| albert_grpc_request_duration_seconds | histogram | method |
| albert_stage_duration_seconds | histogram | stage (embed, retrieve, generate) |
| albert_answer_time_to_first_token_seconds | histogram | — |
| albert_answers_total | counter | finish_reason |
| albert_generated_tokens_total | counter | kind (prompt, completion) |
| albert_embed_batch_size | histogram | texts per embedding call to Triton |
| albert_embed_queue_depth | gauge | texts waiting for the next embedding call |
| albert_cache_requests_total | counter | cache (embedding, retrieval), result (hit, miss) |
| albert_cache_entries | gauge | cache |
| albert_admission_active | gauge | gate (answers, search): requests holding a slot |
| albert_admission_waiting | gauge | gate: requests waiting for a slot |
| albert_admission_refused_total | counter | gate: requests answered 429 at once |
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from server.admission import Gate

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "metrics_middleware"]

# The "<name>_created" timestamp series add nothing to these (they are process-wide; so is this switch).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds: from a cache hit (~0.1 ms) to a long CPU answer (minutes).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "albert_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"],
            registry=registry,
        )  # fmt: skip
        self.http_duration = Histogram(
            "albert_http_request_duration_seconds", "HTTP request duration (to the end of the response body)",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.grpc_requests = Counter(
            "albert_grpc_requests_total", "gRPC calls by method and status code", ["method", "code"],
            registry=registry,
        )  # fmt: skip
        self.grpc_duration = Histogram(
            "albert_grpc_request_duration_seconds", "gRPC call duration", ["method"], buckets=_LATENCY_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.stage_duration = Histogram(
            "albert_stage_duration_seconds", "Time spent per stage of a request (embed, retrieve, generate)",
            ["stage"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.first_token = Histogram(
            "albert_answer_time_to_first_token_seconds", "From the request to the first generated text",
            buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.answers = Counter("albert_answers_total", "Answers by finish reason", ["finish_reason"], registry=registry)
        self.tokens = Counter(
            "albert_generated_tokens_total", "Tokens of answered requests (prompt, completion)", ["kind"],
            registry=registry,
        )  # fmt: skip
        self.embed_batch = Histogram(
            "albert_embed_batch_size", "Texts per embedding call to Triton (after micro-batching)",
            buckets=_BATCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.embed_queue = Gauge(
            "albert_embed_queue_depth", "Texts waiting for the next embedding call", registry=registry
        )
        self.cache_requests = Counter(
            "albert_cache_requests_total", "Cache lookups by cache and result", ["cache", "result"],
            registry=registry,
        )  # fmt: skip
        self.cache_entries = Gauge("albert_cache_entries", "Entries held", ["cache"], registry=registry)
        self.admission_active = Gauge(
            "albert_admission_active", "Requests holding an admission slot", ["gate"], registry=registry
        )
        self.admission_waiting = Gauge(
            "albert_admission_waiting", "Requests waiting for an admission slot", ["gate"], registry=registry
        )
        self.admission_refused = Counter(
            "albert_admission_refused", "Requests refused at once (429)", ["gate"], registry=registry
        )

    def gate(self, name: str, what: str, max_active: int, max_waiting: int, *, service_s: float) -> Gate:
        """An admission gate (server/admission.py) whose state these metrics follow."""
        active, waiting = self.admission_active.labels(name), self.admission_waiting.labels(name)

        def changed(now_active: int, now_waiting: int) -> None:
            active.set(now_active)
            waiting.set(now_waiting)

        return Gate(
            name,
            what,
            max_active=max_active,
            max_waiting=max_waiting,
            service_s=service_s,
            on_change=changed,
            on_refused=self.admission_refused.labels(name).inc,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_middleware(find: Callable[[Scope], GatewayMetrics | None]) -> Any:
    """ASGI middleware factory: counts and times every HTTP request by its route template (not its path,
    so that /v1/fiches/F1 and /v1/fiches/F2 are one series) in the metrics ``find`` gives for the request
    (the process's, once its services are open); unknown routes are labelled "unmatched"."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def recording_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, recording_send)
            finally:
                metrics = find(scope)
                if metrics is not None:
                    route = str(scope.get("path_template") or "unmatched")
                    method = str(scope.get("method", ""))
                    metrics.http_requests.labels(route, method, str(status)).inc()
                    metrics.http_duration.labels(route, method).observe(time.perf_counter() - started)

        return wrapped

    return middleware
