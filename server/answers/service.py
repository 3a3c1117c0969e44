"""The answer pipeline: validate, retrieve, decide coverage, build the prompt, generate, check, bundle.

``AnswerService.events`` is the one code path for both modes: it yields the preview (sources, related
questions, links, fiches) as soon as retrieval is done, then the generated text pieces, then the final
``AnswerResponse``. A non-streaming request consumes the same events and returns the last one, so both
modes give the same answer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

import msgspec
import numpy as np
from numpy.typing import NDArray

from config.settings import Settings
from corpus.records import Chunk, Fiche
from server.admission import Ticket
from server.answers.bundle import order_fiches, practical_links, related_questions
from server.answers.chat import ChatFormat
from server.answers.citations import check_citations
from server.answers.extractive import PassageKey, Selection, render_quotes, select_quotes
from server.answers.generator import Generated, GenerationParams, Generator
from server.answers.grounding import NOTHING_SUPPORTED, Grounded, GroundingRules, ground
from server.answers.guard import guard_answer
from server.answers.prompt import NO_ANSWER, PromptSource, QuestionTooLong, build_prompt
from server.answers.relevance import is_covered
from server.answers.repetition import RepetitionGuard
from server.cache import LruCache
from server.errors import BackendTimeout, Misconfigured, ValidationFailed
from server.schemas import (
    AnswerFiche,
    AnswerRequest,
    AnswerResponse,
    AnswerSentence,
    AnswerSource,
    AnswerTimings,
    GroundingReport,
    GuardReport,
    PracticalLink,
    RelatedQuestion,
    SearchRequest,
    Usage,
)
from server.search.retrieval.search import FicheHit
from server.search.service import SearchService, ms

__all__ = ["AnswerPreview", "AnswerService", "Delta", "Generator", "Prepared"]

_encoder = msgspec.json.Encoder()
# Texts per embedding request of the sentence check. Small, so that each request stays well inside the Triton
# deadline on a loaded CPU (32 fiche sentences took 2.1-4.0 s on 2 free cores, and a loaded machine timed out
# at 5 s); sorted by length, requests pad little: 161 sentences took 9-10 s in all by 8, 13 s by 32.
_EMBED_BATCH = 8


class AnswerPreview(msgspec.Struct, kw_only=True):
    """The first streamed event: everything but the answer, so the advisor sees the sources at once."""

    id: str
    question: str
    audience: str | None
    covered: bool
    sources: list[AnswerSource]
    related_questions: list[RelatedQuestion]
    links: list[PracticalLink]
    fiches: list[AnswerFiche]
    corpus_version: str


class Delta(msgspec.Struct, kw_only=True):
    text: str


@dataclass(frozen=True, slots=True)
class Bundle:
    sources: list[AnswerSource]
    related_questions: list[RelatedQuestion]
    links: list[PracticalLink]
    fiches: list[AnswerFiche]


@dataclass(slots=True)
class Prepared:
    """A validated and retrieved question, ready to generate (or answered already when not covered)."""

    id: str
    question: str
    audience: str | None
    hits: list[FicheHit]
    covered: bool
    sources: list[PromptSource]
    selection: Selection  # what the quoted answer quotes
    prompt: str  # "" when nothing is generated
    params: GenerationParams
    started: float
    embed_ms: float
    retrieve_ms: float
    deadline: float | None  # time.monotonic() by which the caller needs the answer
    ticket: Ticket | None = None  # the admission slot, given back when the events end


def _source(fiche: Fiche, chunk: Chunk) -> PromptSource:
    return PromptSource(0, fiche.id, fiche.title, fiche.url, chunk.section, chunk.cases, chunk.text)


def prompt_sources(hits: Sequence[FicheHit], n_fiches: int, first: Sequence[Chunk] = ()) -> list[PromptSource]:
    """``first`` (the passages the quoted answer comes from), then the excerpts of the best ``n_fiches``
    fiches, round-robin: each fiche's best excerpt first, then the second ones... The prompt budget drops
    them from the end."""
    chosen = list(hits[:n_fiches])
    fiches = {h.fiche.id: h.fiche for h in hits}
    out = [_source(fiches[chunk.fiche_id], chunk) for chunk in first]
    seen = {chunk.id for chunk in first}
    for fiche_hit in chosen:
        if not fiche_hit.excerpts and fiche_hit.fiche.description:
            fiche = fiche_hit.fiche
            out.append(PromptSource(0, fiche.id, fiche.title, fiche.url, (), (), fiche.description))
    rounds = max((len(h.excerpts) for h in chosen), default=0)
    for position in range(rounds):
        for fiche_hit in chosen:
            if position < len(fiche_hit.excerpts):
                chunk = fiche_hit.excerpts[position].chunk
                if chunk.id not in seen:
                    seen.add(chunk.id)
                    out.append(_source(fiche_hit.fiche, chunk))
    return [replace(source, n=i) for i, source in enumerate(out, start=1)]


def _chunks_by_fiche(chunks: Sequence[Chunk]) -> dict[str, list[Chunk]]:
    out: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        out.setdefault(chunk.fiche_id, []).append(chunk)
    return out


class AnswerService:
    def __init__(
        self,
        settings: Settings,
        search: SearchService,
        generator: Generator,
        chat: ChatFormat | None,
        *,
        concurrency: int = 1,
    ) -> None:
        """``concurrency``: the answers the deployment works on at once when ``answers_max_active`` is not
        set (server/runtime.py)."""
        self.settings = settings
        self.search = search
        self.generator = generator
        self.chat = chat
        self.rules = GroundingRules.from_settings(settings)
        self.chunks_of = _chunks_by_fiche(list(search.index.chunks.values()))
        # Sentences of the fiches, embedded once: the same fiches come back for many questions.
        self.sentence_vectors: LruCache[NDArray[np.float32]] = LruCache(settings.cache_entries * 16)
        self.gate = search.metrics.gate(
            "answers",
            "answering questions",
            settings.answers_max_active or concurrency,
            settings.answers_max_waiting,
            service_s=1.0 if settings.answer_mode == "quoted" else 8.0,
        )

    async def _vectors(self, texts: list[str]) -> NDArray[np.float32]:
        """Passage embeddings of ``texts`` (answer and source sentences), from the cache where it can."""
        found = {t: v for t in dict.fromkeys(texts) if (v := self.sentence_vectors.get(t)) is not None}
        missing = sorted((t for t in dict.fromkeys(texts) if t not in found), key=len)
        for start in range(0, len(missing), _EMBED_BATCH):
            batch = missing[start : start + _EMBED_BATCH]
            for text, vector in zip(batch, await self.search.embedder.embed(batch, "passage"), strict=True):
                found[text] = vector
                self.sentence_vectors.put(text, vector)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)

    def validate(self, request: AnswerRequest) -> tuple[str, str | None, int, GenerationParams]:
        query, audience, k = self.search.validate(
            SearchRequest(q=request.question, audience=request.audience, k=request.k)
        )
        limit = self.settings.answer_max_tokens
        max_tokens = self.settings.answer_default_max_tokens if request.max_tokens is None else request.max_tokens
        if not 1 <= max_tokens <= limit:
            raise ValidationFailed(
                f"max_tokens must be between 1 and {limit}, got {max_tokens}", code="max_tokens_out_of_range"
            )
        temperature = 0.0 if request.temperature is None else request.temperature
        if not 0.0 <= temperature <= 1.5:
            raise ValidationFailed(
                f"temperature must be between 0 (greedy) and 1.5, got {temperature}", code="temperature_out_of_range"
            )
        return query, audience, k, GenerationParams(max_tokens=max_tokens, temperature=temperature)

    async def prepare(self, request: AnswerRequest, *, timeout_s: float | None = None) -> Prepared:
        """Everything that can fail with a clean HTTP error happens here, before any byte is streamed.
        ``timeout_s``: the caller's deadline (gRPC), shared by retrieval and generation."""
        started = time.perf_counter()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        question, audience, k, params = self.validate(request)
        mode = self.settings.answer_mode
        if mode != "quoted" and self.chat is None:
            raise Misconfigured(
                "the generator's tokenizer could not be loaded at start-up (the gateway log says why); "
                "search still works",
                code="generator_unavailable",
            )
        ticket = await self.gate.enter()  # 429 here, before any work, when answers are saturated
        try:
            return await self._prepare(question, audience, k, params, started, deadline, ticket)
        except BaseException:
            ticket.release()
            raise

    async def _prepare(
        self,
        question: str,
        audience: str | None,
        k: int,
        params: GenerationParams,
        started: float,
        deadline: float | None,
        ticket: Ticket,
    ) -> Prepared:
        mode = self.settings.answer_mode
        timeout_s = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        found = await self.search.retrieve(question, audience, k, timeout_s=timeout_s)
        retrieval = found.retrieval
        covered = is_covered(
            retrieval, min_dense=self.settings.min_dense_cosine, min_lexical=self.settings.relevance_min_lexical
        )
        sources: list[PromptSource] = []
        prompt = ""
        selection = Selection([], [])
        if covered:
            selection = await select_quotes(
                await self.search.query_vector(question, timeout_s=timeout_s),
                retrieval.hits,
                self.chunks_of,
                self._vectors,
            )
            sources = prompt_sources(retrieval.hits, self.settings.answer_fiches, selection.chunks)
            if mode != "quoted":
                chat = self.chat
                assert chat is not None
                await self.generator.ensure_ready()
                try:
                    built = build_prompt(
                        question, sources, count_tokens=chat.count_messages, budget=self.settings.answer_prompt_tokens
                    )
                except QuestionTooLong as exc:
                    raise ValidationFailed(
                        f"{exc}: shorten the question to at most {exc.max_chars} characters",
                        code="question_too_long",
                    ) from exc
                sources, prompt = built.sources, chat.format(built.messages)
        return Prepared(
            id=f"ans_{uuid.uuid4().hex}",
            question=question,
            audience=audience,
            hits=retrieval.hits if covered else [],
            covered=covered,
            sources=sources,
            selection=selection,
            prompt=prompt,
            params=params,
            started=started,
            embed_ms=found.embed_ms,
            retrieve_ms=found.retrieve_ms,
            deadline=deadline,
            ticket=ticket,
        )

    def _bundle(self, prepared: Prepared, cited: Sequence[int]) -> Bundle:
        cited_fiches = [prepared.sources[n - 1].fiche_id for n in cited]
        fiches = order_fiches([h.fiche for h in prepared.hits], cited_fiches)
        scores = {h.fiche.id: h.score for h in prepared.hits}
        excerpt_scores = {e.chunk.text: e.score for h in prepared.hits for e in h.excerpts}
        return Bundle(
            sources=[
                AnswerSource(
                    n=s.n,
                    fiche_id=s.fiche_id,
                    title=s.title,
                    url=s.url,
                    section=list(s.section),
                    situation=list(s.cases),
                    excerpt=s.text,
                    score=round(excerpt_scores.get(s.text, scores.get(s.fiche_id, 0.0)), 6),
                )
                for s in prepared.sources
            ],
            related_questions=related_questions(fiches),
            links=practical_links(fiches),
            fiches=[
                AnswerFiche(
                    id=f.id,
                    title=f.title,
                    url=f.url,
                    audience=f.audience,
                    updated=f.updated,
                    cited=f.id in cited_fiches,
                )
                for f in fiches
            ],
        )

    def _observe(self, reason: str, usage: Usage, first_token_ms: float | None, generate_ms: float | None) -> None:
        metrics = self.search.metrics
        metrics.answers.labels(reason).inc()
        metrics.tokens.labels("prompt").inc(usage.prompt_tokens)
        metrics.tokens.labels("completion").inc(usage.completion_tokens)
        if first_token_ms is not None:
            metrics.first_token.observe(first_token_ms / 1000)
        if generate_ms is not None:
            metrics.stage_duration.labels("generate").observe(generate_ms / 1000)

    def _complete(self, done: Generated, prepared: Prepared, text: str) -> tuple[str, Usage]:
        """The finish reason and usage, filling in what the model did not report (TensorRT-LLM's models
        return no token counts, the ensemble no finish reason) with the gateway's tokenizer — the checkpoint's."""
        chat = self.chat
        assert chat is not None
        completion = chat.count(text) if done.completion_tokens is None else done.completion_tokens
        prompt = chat.count(prepared.prompt) if done.prompt_tokens is None else done.prompt_tokens
        reason = done.finish_reason or ("length" if completion >= prepared.params.max_tokens else "stop")
        return reason, Usage(prompt_tokens=prompt, completion_tokens=completion)

    async def events(self, prepared: Prepared) -> AsyncGenerator[AnswerPreview | Delta | AnswerResponse, None]:
        """The answer's events; the admission slot is given back when they end (or fail, or are closed)."""
        try:
            async for event in self._events(prepared):
                yield event
        finally:
            if prepared.ticket is not None:
                prepared.ticket.release()

    async def _events(self, prepared: Prepared) -> AsyncGenerator[AnswerPreview | Delta | AnswerResponse, None]:
        corpus_version = self.search.corpus_version
        preview = self._bundle(prepared, ())
        yield AnswerPreview(
            id=prepared.id,
            question=prepared.question,
            audience=prepared.audience,
            covered=prepared.covered,
            sources=preview.sources,
            related_questions=preview.related_questions,
            links=preview.links,
            fiches=preview.fiches,
            corpus_version=corpus_version,
        )
        text, first_token, model = "", None, None
        reason, usage = "no_answer", Usage(prompt_tokens=0, completion_tokens=0)
        generate_started = time.perf_counter()
        drafting = prepared.covered and bool(prepared.prompt)
        if drafting:
            model = await self.generator.served_name()
            done = Generated(None, None, None)
            repetition = RepetitionGuard()
            remaining = None if prepared.deadline is None else prepared.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise BackendTimeout("the deadline passed before generation started", code="generator_timeout")
            generation = self.generator.stream(prepared.prompt, prepared.params, timeout_s=remaining)
            async with aclosing(generation) as stream:
                async for item in stream:
                    if isinstance(item, Generated):
                        done = item
                        continue
                    if first_token is None:
                        first_token = ms(time.perf_counter() - prepared.started)
                    text += item
                    yield Delta(text=item)
                    if (cut := repetition.feed(text)) is not None:
                        # Leaving the stream cancels the generation in Triton; usage is counted here.
                        text = text[:cut]
                        done = Generated("repetition", None, None)
                        break
            reason, usage = self._complete(done, prepared, text)
            self._observe(reason, usage, first_token, ms(time.perf_counter() - generate_started))
        elif prepared.covered:
            reason = "quoted"
            self._observe(reason, usage, None, None)
        generate_ms = ms(time.perf_counter() - generate_started) if drafting else 0.0
        fiches = [h.fiche for h in prepared.hits]
        checked = check_citations(text.strip(), len(prepared.sources))
        guarded = guard_answer(
            checked.text,
            _encoder.encode(fiches).decode(),
            [link.url for fiche in fiches for link in fiche.links],
        )
        passages = [s.text for s in prepared.sources]
        grounded, kind = Grounded(text=""), "none"
        if drafting:
            grounded = await ground(guarded.text, prepared.question, passages, self._vectors, self.rules)
            kind = "drafted"
            draft_sentences = grounded.kept + grounded.unverified + grounded.removed_unsupported + grounded.removed_echo
            if self.settings.answer_mode == "auto" and (
                grounded.nothing_supported or grounded.kept < self.settings.answer_min_supported * draft_sentences
            ):
                kind = "quoted"
        elif prepared.covered:
            kind = "quoted"
        if kind == "quoted":
            number: dict[PassageKey, int] = {}
            for source in prepared.sources:  # the first source of a passage: the quoted one
                number.setdefault((source.fiche_id, source.section, source.text), source.n)
            quotes = render_quotes(prepared.selection, number, {}, None)
            grounded = await ground(quotes, prepared.question, passages, self._vectors, self.rules)
            titles = {s.fiche_id: s.title for s in prepared.sources}
            kept = {s.text for s in grounded.sentences if s.status == "supported"}
            grounded.text = render_quotes(prepared.selection, number, titles, kept) or grounded.text
            if first_token is None:
                first_token = ms(time.perf_counter() - prepared.started)
        if not prepared.covered:
            answer = NO_ANSWER
        elif grounded.nothing_supported:
            answer, kind = grounded.text or NOTHING_SUPPORTED, "none"
        else:
            answer = grounded.text
        if kind == "quoted" and not drafting:
            yield Delta(text=answer)
        final = self._bundle(prepared, grounded.cited)
        yield AnswerResponse(
            id=prepared.id,
            question=prepared.question,
            audience=prepared.audience,
            covered=prepared.covered,
            answer=answer,
            answer_kind=kind,
            finish_reason=reason,
            corpus_version=corpus_version,
            model=model,
            usage=usage,
            timings_ms=AnswerTimings(
                embed=prepared.embed_ms,
                retrieve=prepared.retrieve_ms,
                first_token=first_token,
                generate=generate_ms,
                total=ms(time.perf_counter() - prepared.started),
            ),
            guard=GuardReport(
                citations_removed=checked.removed + grounded.citations_removed,
                citations_added=grounded.citations_added,
                urls_removed=guarded.urls_removed,
                emails_removed=guarded.emails_removed,
                phones_removed=guarded.phones_removed,
            ),
            grounding=GroundingReport(
                sentences=[
                    AnswerSentence(text=g.text, status=g.status, citations=list(g.citations), support=g.support)
                    for g in grounded.sentences
                ],
                kept=grounded.kept,
                unverified=grounded.unverified,
                removed_unsupported=grounded.removed_unsupported,
                removed_echo=grounded.removed_echo,
                citations_removed=grounded.citations_removed,
                citations_added=grounded.citations_added,
            ),
            sources=final.sources,
            related_questions=final.related_questions,
            links=final.links,
            fiches=final.fiches,
        )

    async def answer(self, request: AnswerRequest, *, timeout_s: float | None = None) -> AnswerResponse:
        prepared = await self.prepare(request, timeout_s=timeout_s)
        async with aclosing(self.events(prepared)) as events:
            async for event in events:
                if isinstance(event, AnswerResponse):
                    return event
        raise AssertionError("the answer events always end with the answer")
