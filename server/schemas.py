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


class AnswerRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A question for a drafted answer. ``stream``: Server-Sent Events instead of one JSON body."""

    question: str
    audience: str | None = None
    k: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False


class AnswerSource(msgspec.Struct, kw_only=True):
    """Excerpt ``n`` of the prompt; the answer's ``[n]`` citations point here."""

    n: int
    fiche_id: str
    title: str
    url: str
    section: list[str]
    situation: list[str]
    excerpt: str
    score: float


class AnswerQuestion(msgspec.Struct, kw_only=True):
    question: str
    fiche_id: str
    url: str


class AnswerLink(msgspec.Struct, kw_only=True):
    title: str
    url: str
    type: str
    institution: str
    fiche_id: str


class AnswerFiche(msgspec.Struct, kw_only=True):
    id: str
    title: str
    url: str
    audience: str
    updated: str
    cited: bool


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int


class AnswerTimings(msgspec.Struct, kw_only=True):
    embed: float
    retrieve: float
    first_token: float | None
    generate: float
    total: float


class GuardReport(msgspec.Struct, kw_only=True):
    """What the checks changed: citations removed (to a number that is not a source, or to a source that
    does not support the sentence), citations added (to the source that supports an uncited sentence),
    contact details not found in the fiches removed."""

    citations_removed: int
    citations_added: int
    urls_removed: int
    emails_removed: int
    phones_removed: int


class AnswerSentence(msgspec.Struct, kw_only=True):
    """One sentence of the answer as checked. ``status``: ``supported`` (shown, its ``citations`` point to
    passages that support it), ``unverified`` (shown, marked: no source supports it), ``unsupported`` or
    ``echo`` (removed: no source supports it / it repeats the question). ``support``: the best support score
    over the sources, 0-1."""

    text: str
    status: str
    citations: list[int]
    support: float


class GroundingReport(msgspec.Struct, kw_only=True):
    """What the sentence-level check did to the answer."""

    sentences: list[AnswerSentence]
    kept: int
    unverified: int
    removed_unsupported: int
    removed_echo: int
    citations_removed: int
    citations_added: int


class AnswerResponse(msgspec.Struct, kw_only=True):
    """The bundle. ``covered`` is false when the fiches do not cover the question: then the answer says so
    and nothing is generated (``model`` is null). ``answer_kind``: ``quoted`` (sentences of the fiches,
    verbatim), ``drafted`` (written by the generator, checked sentence by sentence) or ``none`` (not covered,
    or nothing could be verified)."""

    id: str
    question: str
    audience: str | None
    covered: bool
    answer: str
    answer_kind: str
    finish_reason: str
    sources: list[AnswerSource]
    related_questions: list[AnswerQuestion]
    links: list[AnswerLink]
    fiches: list[AnswerFiche]
    corpus_version: str
    model: str | None
    usage: Usage
    timings_ms: AnswerTimings
    guard: GuardReport
    grounding: GroundingReport
