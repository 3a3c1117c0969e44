"""The embedder's training pairs: mined from the corpus (seeded, answerable fiches only), given ones
checked line by line; the query tower's command names the settings it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from build_engines.cli import query_tower
from build_engines.finetune.pairs import mine_pairs, read_pairs, write_bundle
from config.settings import Settings, SettingsError
from corpus.ingest import load_fiches


@pytest.mark.parametrize(
    "other", [{"ALBERT_EMBEDDER": "e5-small"}, {"ALBERT_EMBEDDER_FINETUNED": "1"}, {"ALBERT_DENSE_SCOPE": "all"}]
)
def test_the_query_tower_command_names_the_settings_it_needs(other: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env({"ALBERT_CACHE_DIR": str(tmp_path), **other})
    with pytest.raises(SettingsError, match="ALBERT_EMBEDDER=embeddinggemma, ALBERT_EMBEDDER_FINETUNED=0"):
        query_tower(settings, Console(quiet=True))  # before it reads any index or model


def test_mined_pairs_are_seeded_and_name_answerable_fiches(mini_corpus: Path, tmp_path: Path) -> None:
    fiches = {f.id: f for f in load_fiches([mini_corpus])[0]}
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


def test_given_pairs_are_checked_line_by_line(mini_corpus: Path, tmp_path: Path) -> None:
    fiches = {f.id: f for f in load_fiches([mini_corpus])[0]}
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
