"""Hybrid retrieval: a dense score and two BM25 scores per fiche, fused.

1. dense similarity of the query to the fiche's vectors (its head; with a wider dense scope, its topics and
   chunks too): a fiche scores its best row;
2. BM25 over search units (chunks with their title and section path, fiche heads): a fiche scores its best
   unit;
3. BM25 over whole fiches.

Two fusions (benchmarks/README.md measures both):
- ``scores`` (EmbeddingGemma's default): the cosine plus the BM25 scores, each divided by the query's best,
  weighted (``lexical_boost`` for whole fiches, half of it for units). The dense model's confidence is kept:
  a clear dense winner stays first unless the words disagree;
- ``rrf`` (e5's default): reciprocal-rank fusion of the three rankings (``rrf_k``, ``dense_weight``).

The request's audience is a preference (``prefer``: fiches of other audiences lose ``other_audience_penalty``
in ``scores``, or have their fused score multiplied by ``other_audience_weight`` in ``rrf``) or a wall
(``strict``). A fiche's excerpts are its chunks ordered by the reciprocal-rank fusion of their BM25 rank and,
when chunks have vectors, their dense rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from config.settings import Settings
from corpus.analysis import FrenchAnalyzer
from corpus.index import SearchIndex
from corpus.records import Chunk, Fiche
from server.search.retrieval.expansion import QueryExpander
from server.search.retrieval.rrf import rrf

__all__ = ["ExcerptHit", "FicheHit", "HybridSearcher", "Retrieval", "SearchParams"]

Fusion = Literal["scores", "rrf"]


@dataclass(frozen=True, slots=True)
class SearchParams:
    """How a search ranks: the search settings, with the chosen embedder's tuned values where a setting is
    left unset. Built by ``from_settings`` only (the gateway, tests and benchmarks), so that every default is
    defined once, in the settings."""

    fusion: Fusion
    candidates: int
    rrf_k: int
    dense_weight: float
    lexical_boost: float
    audience_filter: Literal["prefer", "strict"]
    other_audience_penalty: float
    other_audience_weight: float
    expand_dense_query: bool
    dense_feedback: float
    excerpts_per_fiche: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchParams:
        """The parameters the gateway serves with."""
        tuned = settings.embedder_defaults
        return cls(
            fusion=settings.fusion or tuned.fusion,
            candidates=settings.candidates,
            rrf_k=settings.rrf_k,
            dense_weight=tuned.dense_weight if settings.dense_weight is None else settings.dense_weight,
            lexical_boost=settings.lexical_boost,
            audience_filter=settings.audience_filter,
            other_audience_penalty=settings.other_audience_penalty,
            other_audience_weight=settings.other_audience_weight,
            expand_dense_query=(
                tuned.expand_dense_query if settings.dense_query_expansion is None else settings.dense_query_expansion
            ),
            dense_feedback=settings.dense_feedback,
            excerpts_per_fiche=settings.excerpts_per_fiche,
        )


@dataclass(frozen=True, slots=True)
class ExcerptHit:
    chunk: Chunk
    score: float


@dataclass(frozen=True, slots=True)
class FicheHit:
    fiche: Fiche
    score: float
    excerpts: list[ExcerptHit]


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Ranked fiches and the raw evidence that anything matched at all (for the "nothing relevant" rule):
    the best dense cosine (query vs fiche heads) and the best whole-fiche BM25 score, within the audience
    when it is strict, across all otherwise; None when that ranking did not run or found nothing."""

    hits: list[FicheHit]
    best_dense: float | None
    best_fiche_lexical: float | None


def _top(scores: NDArray[np.float32], n: int) -> NDArray[np.intp]:
    """Indices of the n best finite scores, best first (excluded items are set to -inf)."""
    valid = np.flatnonzero(np.isfinite(scores))
    if valid.size == 0:
        return valid
    n = min(n, valid.size)
    part = valid[np.argpartition(-scores[valid], n - 1)[:n]]
    best: NDArray[np.intp] = part[np.argsort(-scores[part], kind="stable")]
    return best


def _positive(scores: NDArray[np.float32]) -> NDArray[np.float32]:
    """BM25 scores with the non-matching ones (0) excluded."""
    return np.where(scores > 0, scores, -np.inf).astype(np.float32)


class HybridSearcher:
    def __init__(self, index: SearchIndex, params: SearchParams) -> None:
        self.index = index
        self.params = params
        self.analyzer = FrenchAnalyzer()
        abbreviations: dict[str, str] = {}
        for fiche in index.fiches.values():
            abbreviations.update(fiche.abbreviations)
        self.expander = QueryExpander(abbreviations)
        self._vocab = set(index.bm25.vocab_dict)
        self._fiche_vocab = set(index.fiche_bm25.vocab_dict)

    def dense_text(self, query: str) -> str:
        """The text to embed (as a query) for ``query``: with its expansions for e5, as typed for EmbeddingGemma
        (which reads acronyms and everyday words better unaided: benchmarks/README.md)."""
        return self.expander.expand(query) if self.params.expand_dense_query else query

    def lexical_terms(self, query: str) -> list[str]:
        return [t for t in self.analyzer(self.expander.expand(query)) if t in self._vocab]

    def search(
        self, query: str, query_vector: NDArray[np.float32] | None, *, audience: str | None, k: int
    ) -> list[FicheHit]:
        return self.retrieve(query, query_vector, audience=audience, k=k).hits

    def retrieve(
        self, query: str, query_vector: NDArray[np.float32] | None, *, audience: str | None, k: int
    ) -> Retrieval:
        index, params = self.index, self.params
        n_fiches = len(index.fiche_ids)
        strict = audience if params.audience_filter == "strict" else None
        terms = self.lexical_terms(query)

        # BM25 over units; a fiche's unit score is its best unit (units are grouped by fiche).
        unit_scores = np.full(len(index.units), -np.inf, dtype=np.float32)
        if terms:
            unit_scores = _positive(np.asarray(index.bm25.get_scores(terms), dtype=np.float32))
        if (mask := index.audience_mask(strict)) is not None:
            unit_scores[~mask] = -np.inf
        by_unit = np.full(n_fiches, -np.inf, dtype=np.float32)
        by_unit[index.unit_group_fiche] = np.maximum.reduceat(unit_scores, index.unit_groups)
        unit_rankings = [_top(unit_scores, params.candidates).tolist()]

        # Dense: a fiche's score is its best row (head, topics, chunks; rows are grouped by fiche).
        best_dense: float | None = None
        by_dense = np.full(n_fiches, -np.inf, dtype=np.float32)
        if query_vector is not None:
            row_mask = index.dense_audience_mask(strict)
            dense = self._dense(query_vector.astype(np.float32), row_mask)
            heads = dense[index.head_rows]  # the coverage rule's cosine: of the query as asked
            if heads.size and np.isfinite(heads.max()):
                best_dense = float(heads.max())
            if params.dense_feedback > 0:
                # Pseudo-relevance feedback: move the query towards the heads of its three best fiches.
                best_groups = _top(np.maximum.reduceat(dense, index.dense_groups), 3)
                moved = query_vector + params.dense_feedback * index.vectors[index.dense_groups[best_groups]].mean(0)
                dense = self._dense((moved / np.linalg.norm(moved)).astype(np.float32), row_mask)
            by_dense[index.dense_group_fiche] = np.maximum.reduceat(dense, index.dense_groups)
            if index.chunk_rows.any():  # chunks with vectors also rank excerpts
                chunk_rows = _top(np.where(index.chunk_rows, dense, -np.inf), params.candidates)
                unit_rankings.append(index.dense_units[chunk_rows].tolist())

        # BM25 over whole fiches.
        best_fiche_lexical: float | None = None
        by_fiche = np.full(n_fiches, -np.inf, dtype=np.float32)
        if whole := [t for t in terms if t in self._fiche_vocab]:
            doc_scores = _positive(np.asarray(index.fiche_bm25.get_scores(whole), dtype=np.float32))
            if (doc_mask := index.fiche_audience_mask(strict)) is not None:
                doc_scores[~doc_mask] = -np.inf
            by_fiche[index.fiche_docs] = doc_scores
            if np.isfinite(doc_scores).any():
                best_fiche_lexical = float(doc_scores.max())

        other = None
        if strict is None and (own := index.fiche_ids_audience_mask(audience)) is not None:
            other = ~own
        if params.fusion == "scores":
            fused = self._fuse_scores(by_dense, by_fiche, by_unit, other)
        else:
            fused = self._fuse_ranks(by_dense, by_fiche, by_unit, other)
        return Retrieval(self._hits(fused[:k], unit_rankings), best_dense, best_fiche_lexical)

    def _dense(self, vector: NDArray[np.float32], row_mask: NDArray[np.bool_] | None) -> NDArray[np.float32]:
        dense = self.index.vectors @ vector
        return dense if row_mask is None else np.where(row_mask, dense, -np.inf).astype(np.float32)

    def _fuse_scores(
        self,
        dense: NDArray[np.float32],
        whole: NDArray[np.float32],
        units: NDArray[np.float32],
        other: NDArray[np.bool_] | None,
    ) -> list[tuple[int, float]]:
        params = self.params
        total = np.where(np.isfinite(dense), dense, 0.0)
        for scores, weight in ((whole, params.lexical_boost), (units, params.lexical_boost / 2)):
            finite = np.isfinite(scores)
            if finite.any():
                total = total + weight * np.where(finite, scores / scores[finite].max(), 0.0)
        matched = np.isfinite(dense) | np.isfinite(whole) | np.isfinite(units)
        if other is not None:
            total = total - params.other_audience_penalty * other
        total = np.where(matched, total, -np.inf).astype(np.float32)
        return [(int(f), float(total[f])) for f in _top(total, params.candidates)]

    def _fuse_ranks(
        self,
        dense: NDArray[np.float32],
        whole: NDArray[np.float32],
        units: NDArray[np.float32],
        other: NDArray[np.bool_] | None,
    ) -> list[tuple[int, float]]:
        params = self.params
        rankings, weights = [], []
        for scores, weight in ((units, 1.0), (dense, params.dense_weight), (whole, 1.0)):
            ranking = _top(scores, params.candidates).tolist()
            if ranking:
                rankings.append(ranking)
                weights.append(weight)
        fused = rrf(rankings, params.rrf_k, weights)
        if other is not None and params.other_audience_weight != 1.0:
            fused = sorted(
                ((f, s * params.other_audience_weight if other[f] else s) for f, s in fused), key=lambda item: -item[1]
            )
        return fused

    def _hits(self, fused: list[tuple[int, float]], unit_rankings: list[list[int]]) -> list[FicheHit]:
        index = self.index
        unit_scores = dict(rrf(unit_rankings, self.params.rrf_k))
        best_units: dict[int, list[int]] = {}
        for unit in sorted(unit_scores, key=lambda u: -unit_scores[u]):
            if index.units[unit].kind == "chunk":
                best_units.setdefault(int(index.unit_fiche[unit]), []).append(unit)
        return [
            FicheHit(
                fiche=index.fiches[index.fiche_ids[position]],
                score=score,
                excerpts=[
                    ExcerptHit(index.chunks[index.units[u].chunk_id], unit_scores[u])
                    for u in best_units.get(position, [])[: self.params.excerpts_per_fiche]
                ],
            )
            for position, score in fused
        ]
