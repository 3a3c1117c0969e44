"""gRPC messages -> the client's types; HTTP bodies -> the same types; transport errors -> AlbertError."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import msgspec
from albert_proto.v1 import answers_pb2 as pb

from albert_client.errors import BY_GRPC_STATUS, BY_HTTP_STATUS, AlbertError, DeadlineExceeded, Unavailable
from albert_client.types import (
    Answer,
    AnswerBundle,
    AnswerFiche,
    Block,
    Delta,
    Excerpt,
    Fiche,
    Grounding,
    GroundingSentence,
    Guard,
    Link,
    RelatedQuestion,
    SearchHit,
    SearchResults,
    SearchTimings,
    Source,
    Timings,
    Usage,
)

Event = AnswerBundle | Delta | Answer
_LINK_TYPES = {value: name.removeprefix("LINK_TYPE_").lower() for name, value in pb.LinkType.items()}


def answer_request(
    question: str, audience: str | None, k: int | None, max_tokens: int | None, temperature: float | None
) -> pb.AnswerRequest:
    return pb.AnswerRequest(question=question, audience=audience, k=k, max_tokens=max_tokens, temperature=temperature)


def http_answer_body(request: pb.AnswerRequest, stream: bool) -> dict[str, object]:
    body: dict[str, object] = {"question": request.question, "stream": stream}
    for name in ("audience", "k", "max_tokens", "temperature"):
        if request.HasField(name):
            body[name] = getattr(request, name)
    return body


def _source(s: pb.Source) -> Source:
    return Source(
        n=s.n,
        fiche_id=s.fiche_id,
        title=s.title,
        url=s.url,
        section=list(s.section),
        situation=list(s.situation),
        excerpt=s.excerpt,
        score=s.score,
    )


def _question(q: pb.RelatedQuestion) -> RelatedQuestion:
    return RelatedQuestion(question=q.question, fiche_id=q.fiche_id, url=q.url)


def _link(link: pb.PracticalLink) -> Link:
    return Link(
        title=link.title,
        url=link.url,
        type=_LINK_TYPES.get(link.type, "autre"),
        institution=link.institution,
        number=link.number,
        fiche_id=link.fiche_id,
    )


def _fiche(f: pb.AnswerFiche) -> AnswerFiche:
    return AnswerFiche(id=f.id, title=f.title, url=f.url, audience=f.audience, updated=f.updated, cited=f.cited)


def bundle(message: pb.AnswerBundle) -> AnswerBundle:
    return AnswerBundle(
        id=message.id,
        question=message.question,
        audience=message.audience if message.HasField("audience") else None,
        covered=message.covered,
        sources=[_source(s) for s in message.sources],
        related_questions=[_question(q) for q in message.related_questions],
        links=[_link(link) for link in message.links],
        fiches=[_fiche(f) for f in message.fiches],
        corpus_version=message.corpus_version,
    )


def answer(message: pb.AnswerResponse) -> Answer:
    t, g = message.timings, message.guard
    return Answer(
        id=message.id,
        question=message.question,
        audience=message.audience if message.HasField("audience") else None,
        covered=message.covered,
        answer=message.answer,
        answer_kind=message.answer_kind,
        finish_reason=message.finish_reason,
        sources=[_source(s) for s in message.sources],
        related_questions=[_question(q) for q in message.related_questions],
        links=[_link(link) for link in message.links],
        fiches=[_fiche(f) for f in message.fiches],
        corpus_version=message.corpus_version,
        model=message.model if message.HasField("model") else None,
        usage=Usage(prompt_tokens=message.usage.prompt_tokens, completion_tokens=message.usage.completion_tokens),
        timings_ms=Timings(
            embed=t.embed_ms,
            retrieve=t.retrieve_ms,
            first_token=t.first_token_ms if t.HasField("first_token_ms") else None,
            generate=t.generate_ms,
            total=t.total_ms,
        ),
        guard=Guard(
            citations_removed=g.citations_removed,
            citations_added=g.citations_added,
            urls_removed=g.urls_removed,
            emails_removed=g.emails_removed,
            phones_removed=g.phones_removed,
        ),
        grounding=Grounding(
            sentences=[
                GroundingSentence(text=s.text, status=s.status, citations=list(s.citations), support=s.support)
                for s in message.grounding.sentences
            ],
            kept=message.grounding.kept,
            unverified=message.grounding.unverified,
            removed_unsupported=message.grounding.removed_unsupported,
            removed_echo=message.grounding.removed_echo,
            citations_removed=message.grounding.citations_removed,
            citations_added=message.grounding.citations_added,
        ),
    )


def event(message: pb.AnswerEvent) -> Event:
    kind = message.WhichOneof("event")
    if kind == "sources":
        return bundle(message.sources)
    if kind == "delta":
        return Delta(text=message.delta.text)
    return answer(message.answer)


def search(message: pb.SearchResponse) -> SearchResults:
    return SearchResults(
        query=message.query,
        audience=message.audience if message.HasField("audience") else None,
        k=message.k,
        corpus_version=message.corpus_version,
        results=[
            SearchHit(
                rank=r.rank,
                fiche_id=r.fiche_id,
                title=r.title,
                url=r.url,
                audience=r.audience,
                audiences=list(r.audiences),
                type=r.type,
                updated=r.updated,
                score=r.score,
                excerpts=[
                    Excerpt(chunk_id=e.chunk_id, section=list(e.section), text=e.text, score=e.score)
                    for e in r.excerpts
                ],
                related_questions=[_question(q) for q in r.related_questions],
                links=[_link(link) for link in r.links],
            )
            for r in message.results
        ],
        timings_ms=SearchTimings(
            embed=message.timings.embed_ms, retrieve=message.timings.retrieve_ms, total=message.timings.total_ms
        ),
    )


def fiche(message: pb.Fiche) -> Fiche:
    return Fiche(
        id=message.id,
        type=message.type,
        audience=message.audience,
        audiences=list(message.audiences),
        title=message.title,
        description=message.description,
        url=message.url,
        theme=message.theme,
        breadcrumb=list(message.breadcrumb),
        updated=message.updated,
        answerable=message.answerable,
        blocks=[Block(path=list(b.path), cases=list(b.cases), lines=list(b.lines)) for b in message.blocks],
        related_questions=[_question(q) for q in message.related_questions],
        links=[_link(link) for link in message.links],
    )


def grpc_error(exc: grpc.RpcError) -> AlbertError:
    """Errors of blocking calls (grpc.Call) and of grpc.aio (AioRpcError) have the same methods."""
    call: Any = exc
    code = call.code() if hasattr(call, "code") else None
    status = code.name if code is not None else "UNKNOWN"
    details = (call.details() if hasattr(call, "details") else None) or str(exc)
    error_code, retry_after = status.lower(), None
    for key, value in (call.trailing_metadata() if hasattr(call, "trailing_metadata") else None) or ():
        if key == "error-code":
            error_code = str(value)
        elif key == "retry-after":
            retry_after = _seconds(str(value))
    return BY_GRPC_STATUS.get(status, AlbertError)(details, code=error_code, status=status, retry_after_s=retry_after)


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is not used by the gateway)."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class _ErrorBody(msgspec.Struct):
    error: dict[str, str]


def http_error(response: httpx.Response) -> AlbertError:
    try:
        body = msgspec.json.decode(response.content, type=_ErrorBody).error
        message, code = body.get("message", response.reason_phrase), body.get("code", "http_error")
    except msgspec.DecodeError:
        message, code = response.text[:500] or response.reason_phrase, "http_error"
    return BY_HTTP_STATUS.get(response.status_code, AlbertError)(
        message,
        code=code,
        status=str(response.status_code),
        retry_after_s=_seconds(response.headers.get("retry-after")),
    )


def connection_error(exc: httpx.TransportError) -> AlbertError:
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineExceeded(f"no answer in time: {exc}", code="timeout", status="timeout")
    return Unavailable(f"cannot reach the server: {exc}", code="unreachable", status="unreachable")


class SseParser:
    """Server-Sent Events, one line at a time (for the blocking and the asyncio HTTP streams alike)."""

    def __init__(self) -> None:
        self._name = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """The event a blank line completes, else None; an ``error`` event raises."""
        if line.startswith("event: "):
            self._name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            self._data.append(line.removeprefix("data: "))
        elif not line and self._name:
            name, data = self._name, "\n".join(self._data).encode()
            self._name, self._data = "", []
            return http_event(name, data)
        return None


def http_event(name: str, data: bytes) -> Event:
    if name == "sources":
        return msgspec.json.decode(data, type=AnswerBundle)
    if name == "delta":
        return msgspec.json.decode(data, type=Delta)
    if name == "answer":
        return msgspec.json.decode(data, type=Answer)
    # An `error` event: the failure happened after the stream started (HTTP status already 200).
    error = msgspec.json.decode(data, type=_ErrorBody).error
    status = {"backend_timeout": 504, "backend_unavailable": 503, "overloaded": 429}.get(error.get("type", ""), 500)
    raise BY_HTTP_STATUS.get(status, AlbertError)(
        error.get("message", "error"), code=error.get("code", "error"), status=str(status)
    )
