"""The gateway's Prometheus metrics: names by the conventions, and what one search and one unknown fiche count."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from server.http.app import create_app
from server.metrics import GatewayMetrics
from server.runtime import serving
from tests.support.fixtures import CountingEmbedder, ScriptedGenerator


def test_metric_names_follow_prometheus_conventions() -> None:
    metrics = GatewayMetrics()
    metrics.http_requests.labels("/v1/search", "GET", "200").inc()
    metrics.grpc_requests.labels("Search", "OK").inc()
    metrics.answers.labels("stop").inc()
    metrics.tokens.labels("prompt").inc(12)
    metrics.cache_requests.labels("retrieval", "hit").inc()
    metrics.stage_duration.labels("embed").observe(0.01)
    metrics.admission_refused.labels("answers").inc()
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    assert len(families) == 15  # the table in server/metrics.py
    for family in families:
        assert re.fullmatch(r"albert_[a-z_]+", family.name), family.name
        if family.type == "counter":
            assert family.samples and all(sample.name.endswith("_total") for sample in family.samples)
        if family.type == "histogram" and family.name != "albert_embed_batch_size":
            assert family.name.endswith("_seconds"), family.name
        assert family.documentation


@pytest.fixture
def search_app(mini_built: tuple[Path, Path]) -> Iterator[TestClient[Any]]:
    app = create_app(
        partial(
            serving,
            Settings(grpc_port=0),
            embedder=CountingEmbedder(),
            generator=ScriptedGenerator(),
            index_dir=mini_built[1],
        )
    )
    with TestClient(app) as client:
        yield client


def test_the_gateway_serves_its_metrics(search_app: TestClient[Any]) -> None:
    for q in ("carte d'identité volée", "carte d'identité volée", "passeport perdu"):
        assert search_app.get("/v1/search", params={"q": q}).status_code == 200
    assert search_app.get("/v1/fiches/F99999999").status_code == 404
    text = search_app.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    http = (("method", "GET"), ("route", "/v1/search"), ("status", "200"))
    assert samples[("albert_http_requests_total", http)] == 3
    not_found = (("method", "GET"), ("route", "/v1/fiches/{fiche_id}"), ("status", "404"))
    assert samples[("albert_http_requests_total", not_found)] == 1
    # The repeated question was answered from the retrieval cache: 1 hit, 2 misses, 2 embeddings.
    assert samples[("albert_cache_requests_total", (("cache", "retrieval"), ("result", "hit")))] == 1
    assert samples[("albert_cache_requests_total", (("cache", "retrieval"), ("result", "miss")))] == 2
    assert samples[("albert_stage_duration_seconds_count", (("stage", "embed"),))] == 2
    assert samples[("albert_embed_batch_size_count", ())] == 2
