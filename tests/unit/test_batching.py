"""The gateway's micro-batcher and caches, and the names of its metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from litestar.testing import TestClient
from numpy.typing import NDArray
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from config.settings import Settings
from corpus.index import load_index
from corpus.ingest import ingest
from server.cache import LruCache
from server.errors import BackendTimeout, BackendUnavailable
from server.http.app import create_app
from server.metrics import GatewayMetrics
from server.runtime import serving
from server.search.service import Retrieved, SearchService
from server.triton.batching import MicroBatcher
from tests.fixtures import HashEmbedder, ScriptedGenerator, hashing_embed, write_mini_corpus


class Backend:
    """An embedding call that records its batches; a text's vector is [hash-ish, length]."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.started: list[float] = []

    async def __call__(self, texts: list[str], kind: str, timeout_s: float | None) -> NDArray[np.float32]:
        self.batches.append(list(texts))
        self.started.append(time.monotonic())
        await asyncio.sleep(self.delay_s)
        if any(t.startswith("bad") for t in texts):
            raise BackendUnavailable(f"embedding: Triton returned an error ({texts})")
        return np.array([[sum(map(ord, t)), len(t)] for t in texts], dtype=np.float32)


def _expected(texts: list[str]) -> NDArray[np.float32]:
    return np.array([[sum(map(ord, t)), len(t)] for t in texts], dtype=np.float32)


def test_concurrent_callers_share_calls_and_get_their_own_rows() -> None:
    backend = Backend()
    sizes: list[int] = []
    batcher = MicroBatcher(backend, max_batch=16, max_wait_s=0.005, on_batch=sizes.append)

    async def main() -> list[NDArray[np.float32]]:
        calls = [batcher.embed([f"question {i}", f"autre {i}"] if i % 7 == 0 else [f"question {i}"]) for i in range(64)]
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    for i, rows in enumerate(results):
        texts = [f"question {i}", f"autre {i}"] if i % 7 == 0 else [f"question {i}"]
        np.testing.assert_array_equal(rows, _expected(texts))
    assert batcher.calls == len(backend.batches) < 64 / 4  # most calls carry many callers
    assert max(sizes) <= 16 and sum(sizes) == 64 + 10  # 10 callers sent two texts
    # Callers that arrive together leave together, in their order, up to max_batch texts.
    assert backend.batches[0][:3] == ["question 0", "autre 0", "question 1"] and len(backend.batches[0]) == 16


def test_wait_is_bounded_and_only_while_a_call_is_in_flight() -> None:
    backend = Backend(delay_s=0.2)
    batcher = MicroBatcher(backend, max_batch=64, max_wait_s=0.02)

    async def main() -> None:
        first = asyncio.create_task(batcher.embed(["a"]))
        await asyncio.sleep(0.01)  # "a" is in Triton now
        second_sent = time.monotonic()
        second = asyncio.create_task(batcher.embed(["b"]))
        await asyncio.gather(first, second)
        # "b" waited for company at most max_wait_s, not for "a" to come back (0.2 s).
        assert backend.started[1] - second_sent < 0.1

    asyncio.run(main())
    assert backend.batches == [["a"], ["b"]]


def test_a_failing_text_fails_only_its_caller() -> None:
    backend = Backend()
    batcher = MicroBatcher(backend, max_batch=32, max_wait_s=0.01)

    async def main() -> list[Any]:
        warm = asyncio.create_task(batcher.embed(["warm-up"]))  # keeps a call in flight so the rest batch up
        await asyncio.sleep(0)
        calls = [batcher.embed([text]) for text in ("ok 1", "bad one", "ok 2", "ok 3")]
        return [await warm, *await asyncio.gather(*calls, return_exceptions=True)]

    results = asyncio.run(main())
    assert isinstance(results[2], BackendUnavailable)
    for i, text in ((1, "ok 1"), (3, "ok 2"), (4, "ok 3")):
        np.testing.assert_array_equal(results[i], _expected([text]))
    assert ["ok 1", "bad one", "ok 2", "ok 3"] in backend.batches  # tried together first, then one by one
    assert ["bad one"] in backend.batches and ["ok 1"] in backend.batches


def test_a_timeout_is_not_retried_caller_by_caller() -> None:
    calls: list[list[str]] = []

    async def slow(texts: list[str], kind: str, timeout_s: float | None) -> NDArray[np.float32]:
        calls.append(list(texts))
        await asyncio.sleep(0.01)
        raise BackendTimeout("embedding: Triton did not answer in time")

    batcher = MicroBatcher(slow, max_batch=32, max_wait_s=0.01)

    async def main() -> list[Any]:
        warm = asyncio.create_task(batcher.embed(["warm-up"]))
        await asyncio.sleep(0)
        rest = await asyncio.gather(*(batcher.embed([f"q{i}"]) for i in range(5)), return_exceptions=True)
        return [*await asyncio.gather(warm, return_exceptions=True), *rest]

    results = asyncio.run(main())
    assert all(isinstance(r, BackendTimeout) for r in results)
    assert calls == [["warm-up"], ["q0", "q1", "q2", "q3", "q4"]]


def test_cancelled_and_late_callers() -> None:
    backend = Backend(delay_s=0.05)
    batcher = MicroBatcher(backend, max_batch=32, max_wait_s=0.02)

    async def main() -> None:
        warm = asyncio.create_task(batcher.embed(["warm-up"]))
        await asyncio.sleep(0)
        gone = asyncio.create_task(batcher.embed(["gone"]))
        stays = asyncio.create_task(batcher.embed(["stays"]))
        await asyncio.sleep(0.001)
        gone.cancel()  # before its batch leaves: it is not sent
        np.testing.assert_array_equal(await stays, _expected(["stays"]))
        with pytest.raises(asyncio.CancelledError):
            await gone
        await warm
        # A deadline shorter than the call: that caller times out, the call and the others go on.
        slow = asyncio.create_task(batcher.embed(["patient"]))
        with pytest.raises(BackendTimeout):
            await batcher.embed(["hurried"], timeout_s=0.01)
        np.testing.assert_array_equal(await slow, _expected(["patient"]))

    asyncio.run(main())
    assert not any("gone" in batch for batch in backend.batches)


def test_lru_cache() -> None:
    lookups: list[bool] = []
    cache: LruCache[int] = LruCache(2, on_lookup=lookups.append)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)  # evicts b
    assert cache.get("b") is None and cache.get("c") == 3 and len(cache) == 2
    assert lookups == [True, False, True] and (cache.hits, cache.misses) == (2, 1)
    off: LruCache[int] = LruCache(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0


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


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def embed(self, texts: list[str], kind: str = "query", *, timeout_s: float | None = None) -> np.ndarray:
        self.texts.extend(texts)
        return await super().embed(texts, kind, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    corpus = write_mini_corpus(root / "corpus")
    ingest([corpus], root / "index", embed=hashing_embed, embedding_model="hash", dim=384, console=Console(quiet=True))
    return root / "index"


@pytest.fixture
def search_app(index_dir: Path) -> Iterator[TestClient[Any]]:
    app = create_app(
        partial(
            serving,
            Settings(grpc_port=0),
            embedder=CountingEmbedder(),
            generator=ScriptedGenerator(),
            index_dir=index_dir,
        )
    )
    with TestClient(app) as client:
        yield client


def test_caches_skip_the_embedding_and_follow_the_corpus_version(index_dir: Path) -> None:
    embedder = CountingEmbedder()
    service = SearchService(Settings(), load_index(index_dir), embedder)

    async def search(q: str, k: int = 5) -> Retrieved:
        return await service.retrieve(q, None, k)

    first = asyncio.run(search("carte d'identité volée"))
    again = asyncio.run(search("carte d'identité volée"))
    assert again.retrieval is first.retrieval and again.embed_ms == 0.0
    assert len(embedder.texts) == 1
    other_k = asyncio.run(search("carte d'identité volée", k=2))  # new retrieval, same query vector
    assert len(other_k.retrieval.hits) <= 2 and len(embedder.texts) == 1
    # A new corpus version (a re-ingested index): nothing from the old one is served.
    service.index = load_index(index_dir)
    service.index.manifest = msgspec.structs.replace(service.index.manifest, corpus_version="corpus@new")
    renewed = asyncio.run(search("carte d'identité volée"))
    assert renewed.retrieval is not first.retrieval
    off = SearchService(Settings(cache_entries=0), load_index(index_dir), embedder)
    asyncio.run(off.retrieve("passeport", None, 5))
    asyncio.run(off.retrieve("passeport", None, 5))
    assert embedder.texts.count(off.searcher.dense_text("passeport")) == 2


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
