"""The retrieval levers of the evaluation (benchmarks/README.md) as units: topic vectors, fusion and audience
settings, the embedder defaults, the fine-tuning pairs and the evaluation's scoring. The real models are
covered by tests/integration and tests/quality."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from benchmarks.retrieval_eval import first_rank, load_set, markdown_table, score
from build_engines.cli import query_tower
from build_engines.finetune.pairs import mine_pairs, read_pairs, write_bundle
from config.settings import Settings, SettingsError
from corpus.index import load_index, topic_texts, unit_text
from corpus.ingest import ingest, load_fiches
from server.search.retrieval.search import HybridSearcher, SearchParams
from tests.fixtures import RRF, hashing_embed, write_mini_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_corpus(tmp_path_factory.mktemp("mini") / "corpus", with_broken=False)


def _index(corpus: Path, out: Path, scope: str) -> Path:
    ingest(
        [corpus],
        out,
        embed=hashing_embed,
        embedding_model="hash",
        dim=384,
        dense_scope=scope,
        console=Console(quiet=True),
    )  # type: ignore[arg-type]
    return out


def test_topics_give_each_fiche_its_headings_and_related_questions(corpus: Path, tmp_path: Path) -> None:
    heads = load_index(_index(corpus, tmp_path / "heads", "heads"))
    topics = load_index(_index(corpus, tmp_path / "topics", "topics"))
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


def test_chunk_scope_gives_every_chunk_a_row_and_no_topics(corpus: Path, tmp_path: Path) -> None:
    heads = load_index(_index(corpus, tmp_path / "heads", "heads"))
    chunks = load_index(_index(corpus, tmp_path / "chunks", "chunks"))
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


def test_hidden_titles_stay_out_of_topics(corpus: Path) -> None:
    fiches, _ = load_fiches([corpus])
    fiche = next(f for f in fiches if f.id == "F1759")
    assert not any(fiche.title in t for t in topic_texts(fiche, hidden=frozenset({"F1759"})))


def test_embedder_defaults_apply_unless_a_setting_overrides_them() -> None:
    gemma = SearchParams.from_settings(Settings())
    assert (gemma.fusion, gemma.expand_dense_query, gemma.audience_filter) == ("scores", False, "prefer")
    e5 = SearchParams.from_settings(Settings(embedder="e5-small"))
    assert (e5.fusion, e5.dense_weight, e5.expand_dense_query) == ("rrf", 1.0, True)
    forced = SearchParams.from_settings(Settings(fusion="rrf", dense_weight=3.0, dense_query_expansion=True))
    assert (forced.fusion, forced.dense_weight, forced.expand_dense_query) == ("rrf", 3.0, True)
    assert Settings().min_dense_cosine != Settings(embedder="e5-small").min_dense_cosine
    assert Settings(relevance_min_dense=0.5).min_dense_cosine == 0.5
    assert Settings().passage_tokens == 128 and Settings(passage_max_tokens=300).passage_tokens == 300
    assert Settings(embedder_finetuned=True).embedding_dir.name == "embeddinggemma-ft-int8"
    with pytest.raises(SettingsError, match="EMBEDDER_FINETUNED"):
        Settings.from_env({"ALBERT_EMBEDDER": "e5-small", "ALBERT_EMBEDDER_FINETUNED": "1"})
    tower = Settings(query_tower=True).query_embedding_dir
    assert tower is not None and tower.name == "embeddinggemma-query-int8"
    assert Settings(query_tower=False).query_embedding_dir is None
    assert Settings().query_embedding_dir == tower  # on by default
    for other in ({"ALBERT_EMBEDDER": "e5-small"}, {"ALBERT_EMBEDDER_FINETUNED": "1"}, {"ALBERT_DENSE_SCOPE": "all"}):
        assert Settings.from_env({"ALBERT_QUERY_TOWER": "1", **other}).query_embedding_dir is None


@pytest.mark.parametrize(
    "other", [{"ALBERT_EMBEDDER": "e5-small"}, {"ALBERT_EMBEDDER_FINETUNED": "1"}, {"ALBERT_DENSE_SCOPE": "all"}]
)
def test_the_query_tower_command_names_the_settings_it_needs(other: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env({"ALBERT_CACHE_DIR": str(tmp_path), **other})
    with pytest.raises(SettingsError, match="ALBERT_EMBEDDER=embeddinggemma, ALBERT_EMBEDDER_FINETUNED=0"):
        query_tower(settings, Console(quiet=True))  # before it reads any index or model


def test_dense_feedback_moves_the_query(corpus: Path, tmp_path: Path) -> None:
    index = load_index(_index(corpus, tmp_path / "heads", "heads"))
    query = "carte d'identité volée"
    vector = hashing_embed([query])[0]
    plain = HybridSearcher(index, replace(RRF, fusion="scores")).search(query, vector, audience=None, k=3)
    moved = HybridSearcher(index, replace(RRF, fusion="scores", dense_feedback=0.5)).search(
        query, vector, audience=None, k=3
    )
    assert plain[0].fiche.id == moved[0].fiche.id == "F1759"
    assert [h.score for h in plain] != [h.score for h in moved]


def test_mined_pairs_are_seeded_and_name_answerable_fiches(corpus: Path, tmp_path: Path) -> None:
    fiches = {f.id: f for f in load_fiches([corpus])[0]}
    pairs = mine_pairs(fiches, seed=3)
    assert pairs == mine_pairs(fiches, seed=3)
    assert {p.kind for p in pairs} >= {"sentence"}
    answerable = {f for f, fiche in fiches.items() if fiche.answerable}
    for pair in pairs:
        assert set(pair.positives) <= answerable and pair.negative in answerable
        assert pair.negative not in pair.positives
        assert len(pair.query.split()) >= 1
    counts = write_bundle(pairs, fiches, tmp_path / "bundle")
    assert sum(counts.values()) == len(pairs)
    texts = [json.loads(line) for line in (tmp_path / "bundle" / "fiches.jsonl").read_text().splitlines()]
    assert {t["id"] for t in texts} == {f for p in pairs for f in (*p.positives, p.negative)}


def test_given_pairs_are_checked_line_by_line(corpus: Path, tmp_path: Path) -> None:
    fiches = {f.id: f for f in load_fiches([corpus])[0]}
    good = tmp_path / "good.jsonl"
    good.write_text('{"query": "on m\'a volé mes papiers", "fiche_id": "F1759"}\n\n')
    [pair] = read_pairs(good, fiches)
    assert pair.positives == ("F1759",) and pair.kind == "given"
    for text, message in (
        ('{"query": "x", "fiche_id": "F9999999"}', "F9999999 is not an answerable fiche"),
        ('{"query": "  ", "fiche_id": "F1759"}', "empty query"),
        ('{"q": "x"}', "expected"),
        ("not json", "expected"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text + "\n")
        with pytest.raises(ValueError, match=message):
            read_pairs(bad, fiches)


def test_scores_of_the_evaluation() -> None:
    assert first_rank(["F1", "F2", "F3"], frozenset({"F3", "F9"})) == 3
    assert first_rank(["F1"], frozenset({"F2"})) is None
    s = score([1, 3, 7, None])
    assert (s.n, s.recall5, s.recall10) == (4, 0.5, 0.75)
    assert s.mrr10 == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)


def test_the_lever_table_reads_the_reports() -> None:
    scores = {"n": 1, "recall@5": 0.5, "recall@10": 1.0, "mrr@10": 0.25}
    dev = {"scores": scores, "by_audience": {"particuliers": scores}}
    report = {"label": "x", "date": "2026-11-29", "cost_per_query": {"total_ms_p50": 47.6}, "sets": {"dev": dev}}
    row = markdown_table([report]).splitlines()[-1]
    assert row == "| x | 0.500 / 0.250 | – | – | – | – | – | – | – | 48 | 2026-11-29 |"
    report["sets"]["test"] = {**dev, "scores_first": {**scores, "recall@5": 0.25}}
    row = markdown_table([report]).splitlines()[-1]
    report["sets"]["select"] = {**dev, "scores": {**scores, "mrr@10": 0.125}}
    row = markdown_table([report]).splitlines()[-1]
    expected = (
        "| x | 0.500 / 0.250 | 0.500 / 0.250 | 0.500 | 0.250 / 0.250 | 0.500 / 0.125 | – | – | – | 48 | 2026-11-29 |"
    )
    assert row == expected


def test_evaluation_sets_are_split_by_fiche_and_balanced() -> None:
    dev, test = load_set("dev"), load_set("test")
    assert len(dev) == len(test) == 120
    rows = {
        name: json.loads((Path(__file__).parents[1] / "data" / f"everyday_{name}.json").read_text())
        for name in ("dev", "test")
    }
    assert not {r["source"] for r in rows["dev"]} & {r["source"] for r in rows["test"]}
    for name in ("dev", "test"):
        audiences = [r["audience"] for r in rows[name]]
        assert (
            audiences.count("particuliers"),
            audiences.count("professionnels"),
            audiences.count("associations"),
        ) == (
            78,
            30,
            12,
        )
        assert all(r["expected"][0] == r["source"] for r in rows[name])
        # The judgments extended over later rankers' pools keep the first ones, in order, at their head.
        assert all(r["expected"][: len(r["expected_first"])] == r["expected_first"] for r in rows[name])
        assert all(len(set(r["expected"])) == len(r["expected"]) for r in rows[name])


def test_the_select_set_is_fresh_and_balanced() -> None:
    from benchmarks.eval_sets import used_fiches

    rows = json.loads((Path(__file__).parents[1] / "data" / "everyday_select.json").read_text())
    assert len(load_set("select")) == len(rows) == 120
    audiences = [r["audience"] for r in rows]
    assert [audiences.count(a) for a in ("particuliers", "professionnels", "associations")] == [78, 30, 12]
    assert all(r["expected"][0] == r["source"] for r in rows)
    # Its questions were written from fiches that no other committed set names.
    assert not {r["source"] for r in rows} & used_fiches()
