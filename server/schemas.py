"""Request and response contracts of the API (msgspec Structs; encoders/decoders built once).

The field names are the gRPC messages' (``proto/albert/v1/answers.proto``), so that both front ends return
the same thing; the search and fiche results are built here from the stored records, never returned as they
are stored (a change of the index's records does not change the API).
"""

from __future__ import annotations

import msgspec

from corpus import records

__all__ = [
    "Block",
    "Excerpt",
    "Fiche",
    "FicheRef",
    "HealthStatus",
    "LegalReference",
    "Place",
    "PracticalLink",
    "RelatedQuestion",
    "SearchRequest",
    "SearchResponse",
    "SearchResult",
    "SearchTimings",
    "fiche",
    "practical_link",
    "related_question",
]


class RelatedQuestion(msgspec.Struct, kw_only=True):
    """A "Question-réponse" fiche a returned fiche points to; ``fiche_id`` is that question's own fiche."""

    question: str
    fiche_id: str
    url: str


class PracticalLink(msgspec.Struct, kw_only=True):
    """A téléservice, formulaire, simulateur…; ``number``: the form's number (Cerfa) when it has one;
    ``fiche_id``: the fiche that lists the link."""

    title: str
    url: str
    type: str
    institution: str
    number: str
    fiche_id: str


def related_question(q: records.RelatedQuestion) -> RelatedQuestion:
    return RelatedQuestion(question=q.question, fiche_id=q.id, url=q.url)


def practical_link(link: records.PracticalLink, fiche_id: str) -> PracticalLink:
    return PracticalLink(
        title=link.title,
        url=link.url,
        type=link.type,
        institution=link.institution,
        number=link.number,
        fiche_id=fiche_id,
    )


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


class Block(msgspec.Struct, kw_only=True):
    """A run of body text under one heading path; ``cases``: the headings that are situations or cases."""

    path: list[str]
    cases: list[str]
    lines: list[str]


class Place(msgspec.Struct, kw_only=True):
    """Where to go (``ou_s_adresser``) or who can help (``qui_peut_m_aider``)."""

    id: str
    kind: str
    title: str
    url: str
    institution: str


class LegalReference(msgspec.Struct, kw_only=True):
    title: str
    url: str


class FicheRef(msgspec.Struct, kw_only=True):
    id: str
    title: str


class Fiche(msgspec.Struct, kw_only=True):
    """One parsed fiche (``GET /v1/fiches/{id}``, gRPC ``GetFiche``)."""

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
    links: list[PracticalLink]
    places: list[Place]
    references: list[LegalReference]
    see_also: list[FicheRef]
    abbreviations: dict[str, str]


def fiche(stored: records.Fiche) -> Fiche:
    return Fiche(
        id=stored.id,
        type=stored.type,
        audience=stored.audience,
        audiences=list(stored.audiences),
        title=stored.title,
        description=stored.description,
        url=stored.url,
        theme=stored.theme,
        breadcrumb=list(stored.breadcrumb),
        updated=stored.updated,
        answerable=stored.answerable,
        blocks=[Block(path=list(b.path), cases=list(b.cases), lines=list(b.lines)) for b in stored.blocks],
        related_questions=[related_question(q) for q in stored.related_questions],
        links=[practical_link(link, stored.id) for link in stored.links],
        places=[
            Place(id=p.id, kind=p.kind, title=p.title, url=p.url, institution=p.institution) for p in stored.places
        ],
        references=[LegalReference(title=r.title, url=r.url) for r in stored.references],
        see_also=[FicheRef(id=s.id, title=s.title) for s in stored.see_also],
        abbreviations=dict(stored.abbreviations),
    )


class HealthStatus(msgspec.Struct, kw_only=True):
    status: str
    checks: dict[str, str]


class AnswerRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A question for an answer (quoted or drafted: ``answer_mode``). ``stream``: Server-Sent Events instead of one JSON
    body."""

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
    related_questions: list[RelatedQuestion]
    links: list[PracticalLink]
    fiches: list[AnswerFiche]
    corpus_version: str
    model: str | None
    usage: Usage
    timings_ms: AnswerTimings
    guard: GuardReport
    grounding: GroundingReport
