"""Hybrid search over the mini index: ranking, audience preference and wall, both fusions, dense feedback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from corpus.index import load_index
from server.search.retrieval.search import HybridSearcher
from tests.support.fixtures import RRF, hashing_embed, scoped_mini_index


def test_hybrid_search_ranks_and_filters(mini_built: tuple[Path, Path]) -> None:
    index = load_index(mini_built[1])
    searcher = HybridSearcher(index, RRF)
    query = "carte d'identité volée que faire"
    vector = hashing_embed([searcher.dense_text(query)])[0]
    hits = searcher.search(query, vector, audience=None, k=3)
    assert hits[0].fiche.id == "F1759"
    assert hits[0].excerpts and all(e.chunk.fiche_id == "F1759" for e in hits[0].excerpts)
    # The audience is a preference: the requested audience's fiche first, the others after it.
    pro = searcher.search("déclaration embauche salarié", None, audience="professionnels", k=5)
    assert pro[0].fiche.id == "F23961" and "F1759" in [h.fiche.id for h in pro]
    assert searcher.search("carte volée", None, audience="associations", k=5)[0].fiche.id == "F1759"
    # ...or a wall, when the deployment asks for it.
    strict = HybridSearcher(index, replace(RRF, audience_filter="strict"))
    assert [
        h.fiche.id for h in strict.search("déclaration embauche salarié", None, audience="professionnels", k=5)
    ] == ["F23961"]
    assert strict.search("carte volée", None, audience="associations", k=5) == []


@pytest.mark.parametrize("fusion", ["scores", "rrf"])
def test_both_fusions_rank_the_matching_fiche_first(mini_built: tuple[Path, Path], fusion: str) -> None:
    index = load_index(mini_built[1])
    searcher = HybridSearcher(index, replace(RRF, fusion=fusion))  # type: ignore[arg-type]
    query = "carte d'identité volée que faire"
    vector = hashing_embed([searcher.dense_text(query)])[0]
    hits = searcher.search(query, vector, audience="particuliers", k=3)
    assert hits[0].fiche.id == "F1759"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_dense_feedback_moves_the_query(mini_corpus: Path, tmp_path: Path) -> None:
    index = scoped_mini_index(mini_corpus, tmp_path / "heads", "heads")
    query = "carte d'identité volée"
    vector = hashing_embed([query])[0]
    plain = HybridSearcher(index, replace(RRF, fusion="scores")).search(query, vector, audience=None, k=3)
    moved = HybridSearcher(index, replace(RRF, fusion="scores", dense_feedback=0.5)).search(
        query, vector, audience=None, k=3
    )
    assert plain[0].fiche.id == moved[0].fiche.id == "F1759"
    assert [h.score for h in plain] != [h.score for h in moved]
