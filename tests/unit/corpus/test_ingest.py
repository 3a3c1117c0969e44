"""Ingestion into the persisted index, over the mini corpus: counts, malformed files reported, re-ingestion
a no-op until the corpus changes, the embedding cache, hidden titles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from corpus.index import load_index, unit_text
from corpus.ingest import ingest
from tests.support.fixtures import hashing_embed, mini_index, write_mini_corpus


def test_ingest_counts_and_reports_bad_files(mini_built: tuple[Path, Path]) -> None:
    index = load_index(mini_built[1])
    manifest = index.manifest
    assert (manifest.fiches, manifest.answerable_fiches) == (4, 3)
    assert len(manifest.rejected) == 1 and "F666.xml" in manifest.rejected[0]
    assert manifest.corpus_version.startswith("corpus@")
    assert manifest.built_at.endswith("Z")
    assert set(index.fiches) == {"F1759", "F11601", "F23961", "N358"}


def test_reingest_is_a_noop_until_the_corpus_changes(tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    first = mini_index(corpus, tmp_path / "index")
    again = mini_index(corpus, tmp_path / "index")
    assert again.unchanged and again.units == first.units
    (corpus / "particuliers" / "F11601.xml").unlink()
    changed = mini_index(corpus, tmp_path / "index")
    assert not changed.unchanged and changed.answerable == first.answerable - 1


def test_embedding_cache_embeds_only_what_changed(tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    seen: list[str] = []

    def embed(texts: Any) -> np.ndarray:
        seen.extend(texts)
        return hashing_embed(texts)

    cache = tmp_path / "cache.npz"
    kwargs = {
        "embed": embed,
        "embedding_model": "hash",
        "dim": 384,
        "cache_path": cache,
        "console": Console(quiet=True),
    }
    ingest([corpus], tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    total = len(seen)
    seen.clear()
    ingest([corpus], tmp_path / "b", hide_titles=frozenset({"F11601"}), **kwargs)  # type: ignore[arg-type]
    # Only F11601's units and F1759's head (which lists F11601 as a related question) change.
    assert 0 < len(seen) < total
    assert all("Est-on obligé" not in text for text in seen)


def test_hidden_titles_disappear_from_every_unit(mini_built: tuple[Path, Path]) -> None:
    index = load_index(mini_built[1])
    hidden = frozenset({"F11601"})
    title = index.fiches["F11601"].title
    for fiche in index.fiches.values():
        assert title not in unit_text(fiche, None, hidden=hidden)
    assert title in unit_text(index.fiches["F1759"], None)


def test_embedding_cache_round_trips_every_key(tmp_path: Path) -> None:
    """Keys are raw digests; some end with NUL bytes, which must survive saving and loading."""
    from corpus.embed_cache import EmbeddingCache

    texts = [f"passage {i}" for i in range(600)]  # ~2 of 600 digests end with a NUL byte
    cache = EmbeddingCache(tmp_path / "c.npz", 384)
    cache.wrap(hashing_embed)(texts)
    cache.save()
    calls: list[str] = []

    def embed(batch: Any) -> np.ndarray:
        calls.extend(batch)
        return hashing_embed(batch)

    reloaded = EmbeddingCache(tmp_path / "c.npz", 384)
    assert len(reloaded) == 600
    np.testing.assert_array_equal(reloaded.wrap(embed)(texts), hashing_embed(texts))
    assert calls == []
