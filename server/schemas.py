"""Request and response contracts of the HTTP API (msgspec Structs; encoders/decoders built once)."""

from __future__ import annotations

import msgspec

from corpus.records import PracticalLink, RelatedQuestion

__all__ = [
    "Excerpt",
    "HealthStatus",
    "SearchRequest",
    "SearchResponse",
    "SearchResult",
    "SearchTimings",
]


class SearchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A search. ``q``: the advisor's question or description of the situation (1-2,000 characters)."""

    q: str
    audience: str | None = None
    k: int | None = None


class Excerpt(msgspec.Struct, kw_only=True):
    chunk_id: str
    section: list[str]
    text: str
    score: float


class SearchResult(msgspec.Struct, kw_only=True):
    rank: int
    fiche_id: str
    title: str
    url: str
    audience: str
    audiences: list[str]
    type: str
    updated: str
    score: float
    excerpts: list[Excerpt]
    related_questions: list[RelatedQuestion]
    links: list[PracticalLink]


class SearchTimings(msgspec.Struct, kw_only=True):
    embed: float
    retrieve: float
    total: float


class SearchResponse(msgspec.Struct, kw_only=True):
    query: str
    audience: str | None
    k: int
    corpus_version: str
    results: list[SearchResult]
    timings_ms: SearchTimings


class HealthStatus(msgspec.Struct, kw_only=True):
    status: str
    checks: dict[str, str]
