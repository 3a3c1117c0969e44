"""Typed results of the client: plain msgspec Structs, the same whichever transport carried them.

Field names follow the HTTP JSON (``timings_ms.embed``…), so that an HTTP body decodes straight into them;
gRPC messages are converted field by field.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Answer",
    "AnswerBundle",
    "AnswerFiche",
    "Block",
    "Delta",
    "Excerpt",
    "Fiche",
    "Grounding",
    "GroundingSentence",
    "Guard",
    "Link",
    "RelatedQuestion",
    "SearchHit",
    "SearchResults",
    "SearchTimings",
    "Source",
    "Timings",
    "Usage",
]


class Source(msgspec.Struct, frozen=True, kw_only=True):
    n: int
    fiche_id: str
    title: str
    url: str
    section: list[str]
    situation: list[str]
    excerpt: str
    score: float


class RelatedQuestion(msgspec.Struct, frozen=True, kw_only=True):
    question: str
    fiche_id: str
    url: str


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """type: teleservice, formulaire, simulateur, modele_de_document, outil_de_recherche or autre; number: the
    form's number (Cerfa) or ""; fiche_id: the fiche that lists the link."""

    title: str
    url: str
    type: str
    institution: str
    number: str
    fiche_id: str


class AnswerFiche(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    url: str
    audience: str
    updated: str
    cited: bool


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    embed: float
    retrieve: float
    first_token: float | None
    generate: float
    total: float


class Guard(msgspec.Struct, frozen=True, kw_only=True):
    citations_removed: int
    citations_added: int
    urls_removed: int
    emails_removed: int
    phones_removed: int


class GroundingSentence(msgspec.Struct, frozen=True, kw_only=True):
    """One sentence as checked: ``status`` is ``supported``, ``unverified`` (shown, marked), ``unsupported``
    or ``echo`` (removed)."""

    text: str
    status: str
    citations: list[int]
    support: float


class Grounding(msgspec.Struct, frozen=True, kw_only=True):
    sentences: list[GroundingSentence]
    kept: int
    unverified: int
    removed_unsupported: int
    removed_echo: int
    citations_removed: int
    citations_added: int


class AnswerBundle(msgspec.Struct, frozen=True, kw_only=True):
    """The first streamed event: the bundle, before the answer is written."""

    id: str
    question: str
    audience: str | None
    covered: bool
    sources: list[Source]
    related_questions: list[RelatedQuestion]
    links: list[Link]
    fiches: list[AnswerFiche]
    corpus_version: str


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    """Generated text, before the checks: show it while waiting; the final ``Answer`` is authoritative."""

    text: str


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    question: str
    audience: str | None
    covered: bool
    answer: str
    answer_kind: str  # "quoted" (the fiches' sentences, verbatim), "drafted" (generated, checked) or "none"
    finish_reason: str
    sources: list[Source]
    related_questions: list[RelatedQuestion]
    links: list[Link]
    fiches: list[AnswerFiche]
    corpus_version: str
    model: str | None
    usage: Usage
    timings_ms: Timings
    guard: Guard
    grounding: Grounding


class Excerpt(msgspec.Struct, frozen=True, kw_only=True):
    chunk_id: str
    section: list[str]
    text: str
    score: float


class SearchHit(msgspec.Struct, frozen=True, kw_only=True):
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
    links: list[Link]


class SearchTimings(msgspec.Struct, frozen=True, kw_only=True):
    embed: float
    retrieve: float
    total: float


class SearchResults(msgspec.Struct, frozen=True, kw_only=True):
    query: str
    audience: str | None
    k: int
    corpus_version: str
    results: list[SearchHit]
    timings_ms: SearchTimings


class Block(msgspec.Struct, frozen=True, kw_only=True):
    path: list[str]
    cases: list[str]
    lines: list[str]


class Fiche(msgspec.Struct, frozen=True, kw_only=True):
    """The main parts of a fiche (the API returns more: places, legal references, see-also…)."""

    id: str
    type: str
    audience: str
    audiences: list[str]
    title: str
    description: str
    url: str
    theme: str
    breadcrumb: list[str]
    updated: str
    answerable: bool
    blocks: list[Block]
    related_questions: list[RelatedQuestion]
    links: list[Link]
