"""What gets a dense vector in each dense scope (heads, topics, chunks), and hidden titles left out of topics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from corpus.index import topic_texts, unit_text
from corpus.ingest import load_fiches
from server.search.retrieval.search import HybridSearcher
from tests.support.fixtures import RRF, hashing_embed, scoped_mini_index


def test_topics_give_each_fiche_its_headings_and_related_questions(mini_corpus: Path, tmp_path: Path) -> None:
    heads = scoped_mini_index(mini_corpus, tmp_path / "heads", "heads")
    topics = scoped_mini_index(mini_corpus, tmp_path / "topics", "topics")
    fiche = topics.fiches["F1759"]
    texts = topic_texts(fiche)
    assert texts[0].startswith(fiche.title + " : ")
    assert any(t.startswith(fiche.title + " > ") for t in texts)
    assert {q.question for q in fiche.related_questions} <= set(texts)
    assert len(texts) == len(set(texts))
    # One head row per fiche, then its topics: rows are grouped by fiche and the heads are flagged.
    assert len(heads.vectors) == heads.manifest.answerable_fiches == int(topics.head_rows.sum())
    assert len(topics.vectors) == heads.manifest.answerable_fiches + sum(
        len(topic_texts(topics.fiches[topics.fiche_ids[f]])) for f in topics.dense_group_fiche
    )
    assert np.all(np.diff(topics.dense_fiche) >= 0)
    # A question about one situation the fiche covers meets that situation's own vector.
    searcher = HybridSearcher(topics, RRF)
    situation = next(t for t in reversed(texts) if " > " in t)
    hits = searcher.search(situation, hashing_embed([situation])[0], audience=None, k=1)
    assert hits[0].fiche.id == "F1759"


def test_chunk_scope_gives_every_chunk_a_row_and_no_topics(mini_corpus: Path, tmp_path: Path) -> None:
    heads = scoped_mini_index(mini_corpus, tmp_path / "heads", "heads")
    chunks = scoped_mini_index(mini_corpus, tmp_path / "chunks", "chunks")
    answerable_chunks = sum(1 for u in chunks.units if u.kind == "chunk")
    assert len(chunks.vectors) == len(heads.vectors) + answerable_chunks
    assert int(chunks.head_rows.sum()) == len(heads.vectors)
    assert int(chunks.chunk_rows.sum()) == answerable_chunks
    assert (chunks.dense_units >= 0).all()  # no topic rows
    # A question worded as one chunk meets that chunk's own row, and finds its fiche with it as an excerpt.
    unit = next(u for u in chunks.units if u.kind == "chunk" and u.fiche_id == "F1759")
    text = unit_text(chunks.fiches["F1759"], chunks.chunks[unit.chunk_id])  # what its row embeds
    [hit] = HybridSearcher(chunks, replace(RRF, fusion="scores")).search(
        text, hashing_embed([text])[0], audience=None, k=1
    )
    assert hit.fiche.id == "F1759" and unit.chunk_id in {e.chunk.id for e in hit.excerpts}
    best_row = int(np.argmax(chunks.vectors @ hashing_embed([text])[0]))
    assert chunks.units[int(chunks.dense_units[best_row])] is unit


def test_hidden_titles_stay_out_of_topics(mini_corpus: Path) -> None:
    fiches, _ = load_fiches([mini_corpus])
    fiche = next(f for f in fiches if f.id == "F1759")
    assert not any(fiche.title in t for t in topic_texts(fiche, hidden=frozenset({"F1759"})))
