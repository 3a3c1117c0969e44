"""Between the service layer's msgspec Structs and the generated protobuf messages (both directions)."""

from __future__ import annotations

from albert_proto.v1 import answers_pb2 as pb

from server.answers.service import AnswerPreview
from server.schemas import (
    AnswerFiche,
    AnswerRequest,
    AnswerResponse,
    AnswerSource,
    Fiche,
    PracticalLink,
    RelatedQuestion,
    SearchRequest,
    SearchResponse,
)

__all__ = [
    "LINK_TYPES",
    "answer_request",
    "bundle_to_proto",
    "fiche_to_proto",
    "response_to_proto",
    "search_request",
    "search_to_proto",
]

LINK_TYPES = {
    "teleservice": pb.LINK_TYPE_TELESERVICE,
    "formulaire": pb.LINK_TYPE_FORMULAIRE,
    "simulateur": pb.LINK_TYPE_SIMULATEUR,
    "modele_de_document": pb.LINK_TYPE_MODELE_DE_DOCUMENT,
    "outil_de_recherche": pb.LINK_TYPE_OUTIL_DE_RECHERCHE,
    "autre": pb.LINK_TYPE_AUTRE,
}


def answer_request(message: pb.AnswerRequest) -> AnswerRequest:
    return AnswerRequest(
        question=message.question,
        audience=message.audience if message.HasField("audience") else None,
        k=message.k if message.HasField("k") else None,
        max_tokens=message.max_tokens if message.HasField("max_tokens") else None,
        temperature=message.temperature if message.HasField("temperature") else None,
    )


def search_request(message: pb.SearchRequest) -> SearchRequest:
    return SearchRequest(
        q=message.query,
        audience=message.audience if message.HasField("audience") else None,
        k=message.k if message.HasField("k") else None,
    )


def _source(s: AnswerSource) -> pb.Source:
    return pb.Source(
        n=s.n,
        fiche_id=s.fiche_id,
        title=s.title,
        url=s.url,
        section=s.section,
        situation=s.situation,
        excerpt=s.excerpt,
        score=s.score,
    )


def _question(q: RelatedQuestion) -> pb.RelatedQuestion:
    return pb.RelatedQuestion(question=q.question, fiche_id=q.fiche_id, url=q.url)


def _link(link: PracticalLink) -> pb.PracticalLink:
    return pb.PracticalLink(
        title=link.title,
        url=link.url,
        type=LINK_TYPES.get(link.type, pb.LINK_TYPE_AUTRE),
        institution=link.institution,
        fiche_id=link.fiche_id,
        number=link.number,
    )


def _fiche(f: AnswerFiche) -> pb.AnswerFiche:
    return pb.AnswerFiche(id=f.id, title=f.title, url=f.url, audience=f.audience, updated=f.updated, cited=f.cited)


def bundle_to_proto(preview: AnswerPreview) -> pb.AnswerBundle:
    return pb.AnswerBundle(
        id=preview.id,
        question=preview.question,
        audience=preview.audience,
        covered=preview.covered,
        sources=[_source(s) for s in preview.sources],
        related_questions=[_question(q) for q in preview.related_questions],
        links=[_link(link) for link in preview.links],
        fiches=[_fiche(f) for f in preview.fiches],
        corpus_version=preview.corpus_version,
    )


def response_to_proto(response: AnswerResponse) -> pb.AnswerResponse:
    t, g = response.timings_ms, response.guard
    return pb.AnswerResponse(
        id=response.id,
        question=response.question,
        audience=response.audience,
        covered=response.covered,
        answer=response.answer,
        finish_reason=response.finish_reason,
        sources=[_source(s) for s in response.sources],
        related_questions=[_question(q) for q in response.related_questions],
        links=[_link(link) for link in response.links],
        fiches=[_fiche(f) for f in response.fiches],
        corpus_version=response.corpus_version,
        model=response.model,
        usage=pb.Usage(prompt_tokens=response.usage.prompt_tokens, completion_tokens=response.usage.completion_tokens),
        timings=pb.AnswerTimings(
            embed_ms=t.embed,
            retrieve_ms=t.retrieve,
            first_token_ms=t.first_token,
            generate_ms=t.generate,
            total_ms=t.total,
        ),
        guard=pb.GuardReport(
            citations_removed=g.citations_removed,
            citations_added=g.citations_added,
            urls_removed=g.urls_removed,
            emails_removed=g.emails_removed,
            phones_removed=g.phones_removed,
        ),
        answer_kind=response.answer_kind,
        grounding=pb.GroundingReport(
            sentences=[
                pb.AnswerSentence(text=s.text, status=s.status, citations=s.citations, support=s.support)
                for s in response.grounding.sentences
            ],
            kept=response.grounding.kept,
            unverified=response.grounding.unverified,
            removed_unsupported=response.grounding.removed_unsupported,
            removed_echo=response.grounding.removed_echo,
            citations_removed=response.grounding.citations_removed,
            citations_added=response.grounding.citations_added,
        ),
    )


def search_to_proto(response: SearchResponse) -> pb.SearchResponse:
    return pb.SearchResponse(
        query=response.query,
        audience=response.audience,
        k=response.k,
        corpus_version=response.corpus_version,
        results=[
            pb.SearchResult(
                rank=r.rank,
                fiche_id=r.fiche_id,
                title=r.title,
                url=r.url,
                audience=r.audience,
                audiences=r.audiences,
                type=r.type,
                updated=r.updated,
                score=r.score,
                excerpts=[
                    pb.Excerpt(chunk_id=e.chunk_id, section=e.section, text=e.text, score=e.score) for e in r.excerpts
                ],
                related_questions=[_question(q) for q in r.related_questions],
                links=[_link(link) for link in r.links],
            )
            for r in response.results
        ],
        timings=pb.SearchTimings(
            embed_ms=response.timings_ms.embed,
            retrieve_ms=response.timings_ms.retrieve,
            total_ms=response.timings_ms.total,
        ),
    )


def fiche_to_proto(fiche: Fiche) -> pb.Fiche:
    return pb.Fiche(
        id=fiche.id,
        type=fiche.type,
        audience=fiche.audience,
        audiences=fiche.audiences,
        title=fiche.title,
        description=fiche.description,
        url=fiche.url,
        theme=fiche.theme,
        breadcrumb=fiche.breadcrumb,
        updated=fiche.updated,
        answerable=fiche.answerable,
        blocks=[pb.Block(path=b.path, cases=b.cases, lines=b.lines) for b in fiche.blocks],
        related_questions=[_question(q) for q in fiche.related_questions],
        links=[_link(link) for link in fiche.links],
        places=[
            pb.Place(id=p.id, kind=p.kind, title=p.title, url=p.url, institution=p.institution) for p in fiche.places
        ],
        references=[pb.LegalReference(title=r.title, url=r.url) for r in fiche.references],
        see_also=[pb.FicheRef(id=s.id, title=s.title) for s in fiche.see_also],
        abbreviations=fiche.abbreviations,
    )
