"""Hybrid retrieval: three rankings fused by RRF, grouped by fiche.

1. BM25 over search units (chunks with their title and section path, fiche heads);
2. dense (e5) similarity over the units that have vectors;
3. BM25 over whole fiches.
Unit rankings become fiche rankings (a fiche takes the rank of its best unit); the three fiche rankings are
fused. A fiche's excerpts are its chunks ordered by their fused unit score (rankings 1 and 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from corpus.analysis import FrenchAnalyzer
from corpus.index import SearchIndex
from corpus.records import Chunk, Fiche
from server.retrieval.expansion import QueryExpander
from server.retrieval.rrf import rrf

__all__ = ["ExcerptHit", "FicheHit", "HybridSearcher", "Retrieval", "SearchParams"]


@dataclass(frozen=True, slots=True)
class SearchParams:
    candidates: int = 200
    rrf_k: int = 30
    excerpts_per_fiche: int = 2
    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    fiche_lexical_weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ExcerptHit:
    chunk: Chunk
    score: float


@dataclass(frozen=True, slots=True)
class FicheHit:
    fiche: Fiche
    score: float
    excerpts: list[ExcerptHit]
    lexical_rank: int | None
    dense_rank: int | None
    fiche_lexical_rank: int | None


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Ranked fiches and the raw evidence that anything matched at all (for the "nothing relevant" rule):
    the best dense cosine (query vs units with vectors) and the best whole-fiche BM25 score, within the
    audience; None when that ranking did not run or found nothing."""

    hits: list[FicheHit]
    best_dense: float | None
    best_fiche_lexical: float | None


def _top(scores: NDArray[np.float32], n: int) -> NDArray[np.intp]:
    """Indices of the n best finite scores, best first (excluded units are set to -inf)."""
    valid = np.flatnonzero(np.isfinite(scores))
    if valid.size == 0:
        return valid
    n = min(n, valid.size)
    part = valid[np.argpartition(-scores[valid], n - 1)[:n]]
    best: NDArray[np.intp] = part[np.argsort(-scores[part], kind="stable")]
    return best


class HybridSearcher:
    def __init__(self, index: SearchIndex, params: SearchParams | None = None) -> None:
        self.index = index
        self.params = params or SearchParams()
        self.analyzer = FrenchAnalyzer()
        abbreviations: dict[str, str] = {}
        for fiche in index.fiches.values():
            abbreviations.update(fiche.abbreviations)
        self.expander = QueryExpander(abbreviations)
        self._vocab = set(index.bm25.vocab_dict)
        self._fiche_vocab = set(index.fiche_bm25.vocab_dict)

    def dense_text(self, query: str) -> str:
        """The text to embed (as a query) for ``query``: the query plus its expansions."""
        return self.expander.expand(query)

    def lexical_terms(self, query: str) -> list[str]:
        return [t for t in self.analyzer(self.expander.expand(query)) if t in self._vocab]

    def search(
        self, query: str, query_vector: NDArray[np.float32] | None, *, audience: str | None, k: int
    ) -> list[FicheHit]:
        return self.retrieve(query, query_vector, audience=audience, k=k).hits

    def retrieve(
        self, query: str, query_vector: NDArray[np.float32] | None, *, audience: str | None, k: int
    ) -> Retrieval:
        best_dense: float | None = None
        best_fiche_lexical: float | None = None
        index, params = self.index, self.params
        mask = index.audience_mask(audience)
        terms = self.lexical_terms(query)

        lexical = np.full(len(index.units), -np.inf, dtype=np.float32)
        if terms:
            raw = np.asarray(index.bm25.get_scores(terms), dtype=np.float32)
            lexical = np.where(raw > 0, raw, -np.inf)
        if mask is not None:
            lexical[~mask] = -np.inf
        unit_rankings = [_top(lexical, params.candidates).tolist()]
        if query_vector is not None:
            # Scored over the units that have vectors only (fiche heads on CPU: 3,600 of 41,358), then mapped
            # back to unit ids.
            dense = index.vectors @ query_vector.astype(np.float32)
            if mask is not None:
                dense = np.where(mask[index.dense_units], dense, -np.inf)
            top_dense = _top(dense, params.candidates)
            unit_rankings.append(index.dense_units[top_dense].tolist())
            if top_dense.size:
                best_dense = float(dense[top_dense[0]])
        unit_scores = dict(rrf(unit_rankings, params.rrf_k))

        fiche_rankings = [list(dict.fromkeys(int(index.unit_fiche[u]) for u in r)) for r in unit_rankings]
        weights = [params.lexical_weight, params.dense_weight][: len(fiche_rankings)]
        whole = self._fiche_terms(terms)
        if whole:
            doc_scores = np.asarray(index.fiche_bm25.get_scores(whole), dtype=np.float32)
            doc_scores = np.where(doc_scores > 0, doc_scores, -np.inf)
            doc_mask = index.fiche_audience_mask(audience)
            if doc_mask is not None:
                doc_scores[~doc_mask] = -np.inf
            top_docs = _top(doc_scores, params.candidates)
            fiche_rankings.append([int(index.fiche_docs[d]) for d in top_docs])
            if top_docs.size:
                best_fiche_lexical = float(doc_scores[top_docs[0]])
            weights.append(params.fiche_lexical_weight)
        fused = rrf(fiche_rankings, params.rrf_k, weights)[:k]
        ranks = [{f: i + 1 for i, f in enumerate(r)} for r in fiche_rankings]
        dense_ranks = ranks[1] if query_vector is not None else {}
        whole_ranks = ranks[-1] if whole else {}

        best_units: dict[int, list[int]] = {}
        for unit in sorted(unit_scores, key=lambda u: -unit_scores[u]):
            if index.units[unit].kind == "chunk":
                best_units.setdefault(int(index.unit_fiche[unit]), []).append(unit)
        hits: list[FicheHit] = []
        for position, score in fused:
            units = best_units.get(position, [])[: params.excerpts_per_fiche]
            hits.append(
                FicheHit(
                    fiche=index.fiches[index.fiche_ids[position]],
                    score=score,
                    excerpts=[ExcerptHit(index.chunks[index.units[u].chunk_id], unit_scores[u]) for u in units],
                    lexical_rank=ranks[0].get(position),
                    dense_rank=dense_ranks.get(position),
                    fiche_lexical_rank=whole_ranks.get(position),
                )
            )
        return Retrieval(hits, best_dense, best_fiche_lexical)

    def _fiche_terms(self, terms: list[str]) -> list[str]:
        return [t for t in terms if t in self._fiche_vocab]
