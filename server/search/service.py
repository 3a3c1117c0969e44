"""The service layer: the one place where a search is validated, embedded, retrieved and shaped.

The HTTP routes and the gRPC servicer only decode, call this, and encode.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from config.settings import Settings
from corpus.index import SearchIndex
from corpus.records import AUDIENCES
from server.cache import LruCache
from server.errors import NotFound, ValidationFailed
from server.metrics import GatewayMetrics
from server.schemas import (
    Excerpt,
    Fiche,
    SearchRequest,
    SearchResponse,
    SearchResult,
    SearchTimings,
    fiche,
    practical_link,
    related_question,
)
from server.search.retrieval.search import FicheHit, HybridSearcher, Retrieval, SearchParams

log = logging.getLogger(__name__)

__all__ = ["Embedder", "Retrieved", "SearchService", "ms"]

_FICHE_ID = re.compile(r"^[FN]\d{1,6}$")


@dataclass(frozen=True, slots=True)
class Retrieved:
    retrieval: Retrieval
    embed_ms: float
    retrieve_ms: float


class Embedder(Protocol):
    async def embed(
        self, texts: list[str], kind: str = "query", *, timeout_s: float | None = None
    ) -> NDArray[np.float32]: ...


def _shown(value: str, limit: int = 40) -> str:
    """A value the caller sent, quoted in an error message, cut to ``limit`` characters: a gRPC status message
    travels in a trailer of at most 8 KiB (percent-encoded), and nobody needs 2,000 characters echoed."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


class SearchService:
    def __init__(
        self, settings: Settings, index: SearchIndex, embedder: Embedder, metrics: GatewayMetrics | None = None
    ) -> None:
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.metrics = metrics or GatewayMetrics()
        self.vectors: LruCache[NDArray[np.float32]] = self._cache("embedding")
        self.results: LruCache[Retrieval] = self._cache("retrieval")
        self.searcher = HybridSearcher(index, SearchParams.from_settings(settings))
        self.gate = self.metrics.gate(
            "search", "searching", settings.search_max_active, settings.search_max_waiting, service_s=0.1
        )

    def _cache(self, name: str) -> LruCache[Any]:
        lookups, entries = self.metrics.cache_requests, self.metrics.cache_entries.labels(name)
        return LruCache(
            self.settings.cache_entries,
            on_lookup=lambda hit: lookups.labels(name, "hit" if hit else "miss").inc(),
            on_size=entries.set,
        )

    @property
    def corpus_version(self) -> str:
        return self.index.manifest.corpus_version

    def validate(self, request: SearchRequest) -> tuple[str, str | None, int]:
        query = " ".join(request.q.split())
        if not query:
            raise ValidationFailed("q must not be empty", code="empty_query")
        if len(request.q) > self.settings.max_query_chars:
            raise ValidationFailed(
                f"q is {len(request.q)} characters long; the limit is {self.settings.max_query_chars}",
                code="query_too_long",
            )
        audience = request.audience
        if audience is not None and audience not in AUDIENCES:
            raise ValidationFailed(
                f"unknown audience {_shown(audience)}: expected one of {', '.join(AUDIENCES)}", code="unknown_audience"
            )
        k = self.settings.default_k if request.k is None else request.k
        if not 1 <= k <= self.settings.max_k:
            raise ValidationFailed(f"k must be between 1 and {self.settings.max_k}, got {k}", code="k_out_of_range")
        if self.settings.log_questions:
            log.info("question (audience %s, k %d): %s", audience or "-", k, query)
        return query, audience, k

    async def retrieve(self, query: str, audience: str | None, k: int, *, timeout_s: float | None = None) -> Retrieved:
        """Embed and retrieve an already validated query (from the caches when it was asked before);
        ``timeout_s``: the caller's remaining deadline."""
        started = time.perf_counter()
        key = (query, audience, k, self.corpus_version)
        if (cached := self.results.get(key)) is not None:
            return Retrieved(cached, embed_ms=0.0, retrieve_ms=ms(time.perf_counter() - started))
        dense_text = self.searcher.dense_text(query)
        if (vector := self.vectors.get(dense_text)) is None:
            vector = (await self.embedder.embed([dense_text], "query", timeout_s=timeout_s))[0]
            self.vectors.put(dense_text, vector)
            self.metrics.stage_duration.labels("embed").observe(time.perf_counter() - started)
        embedded = time.perf_counter()
        retrieval = await asyncio.to_thread(self.searcher.retrieve, query, vector, audience=audience, k=k)
        done = time.perf_counter()
        self.metrics.stage_duration.labels("retrieve").observe(done - embedded)
        self.results.put(key, retrieval)
        return Retrieved(retrieval, embed_ms=ms(embedded - started), retrieve_ms=ms(done - embedded))

    async def query_vector(self, query: str, *, timeout_s: float | None = None) -> NDArray[np.float32]:
        """The embedding of an already validated query, as retrieval uses it (from the cache when it can)."""
        dense_text = self.searcher.dense_text(query)
        if (vector := self.vectors.get(dense_text)) is None:
            vector = (await self.embedder.embed([dense_text], "query", timeout_s=timeout_s))[0]
            self.vectors.put(dense_text, vector)
        return vector

    async def search(self, request: SearchRequest, *, timeout_s: float | None = None) -> SearchResponse:
        query, audience, k = self.validate(request)
        async with self.gate.slot():
            found = await self.retrieve(query, audience, k, timeout_s=timeout_s)
        return SearchResponse(
            query=query,
            audience=audience,
            k=k,
            corpus_version=self.corpus_version,
            results=[_result(rank, hit) for rank, hit in enumerate(found.retrieval.hits, start=1)],
            timings_ms=SearchTimings(
                embed=found.embed_ms, retrieve=found.retrieve_ms, total=round(found.embed_ms + found.retrieve_ms, 2)
            ),
        )

    def fiche(self, fiche_id: str) -> Fiche:
        if not _FICHE_ID.match(fiche_id):
            raise NotFound(f"no fiche {_shown(fiche_id)}: ids look like F1342 or N358", code="fiche_not_found")
        stored = self.index.fiches.get(fiche_id)
        if stored is None:
            raise NotFound(f"no fiche {fiche_id!r} in corpus {self.corpus_version}", code="fiche_not_found")
        return fiche(stored)


def _result(rank: int, hit: FicheHit) -> SearchResult:
    stored = hit.fiche
    return SearchResult(
        rank=rank,
        fiche_id=stored.id,
        title=stored.title,
        url=stored.url,
        audience=stored.audience,
        audiences=list(stored.audiences),
        type=stored.type,
        updated=stored.updated,
        score=round(hit.score, 6),
        excerpts=[
            Excerpt(chunk_id=e.chunk.id, section=list(e.chunk.section), text=e.chunk.text, score=round(e.score, 6))
            for e in hit.excerpts
        ],
        related_questions=[related_question(q) for q in stored.related_questions],
        links=[practical_link(link, stored.id) for link in stored.links],
    )
