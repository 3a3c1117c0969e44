"""The search service's LRU caches: the query embedding and the retrieval are reused until the corpus
version changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from config.settings import Settings
from corpus.index import load_index
from server.cache import LruCache
from server.search.service import Retrieved, SearchService
from tests.support.fixtures import CountingEmbedder


def test_the_lru_cache_evicts_the_least_recently_used_and_counts_hits() -> None:
    lookups: list[bool] = []
    cache: LruCache[int] = LruCache(2, on_lookup=lookups.append)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)  # evicts b
    assert cache.get("b") is None and cache.get("c") == 3 and len(cache) == 2
    assert lookups == [True, False, True] and (cache.hits, cache.misses) == (2, 1)
    off: LruCache[int] = LruCache(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0


def test_caches_skip_the_embedding_and_follow_the_corpus_version(mini_built: tuple[Path, Path]) -> None:
    index_dir = mini_built[1]
    embedder = CountingEmbedder()
    service = SearchService(Settings(), load_index(index_dir), embedder)

    async def search(q: str, k: int = 5) -> Retrieved:
        return await service.retrieve(q, None, k)

    first = asyncio.run(search("carte d'identité volée"))
    again = asyncio.run(search("carte d'identité volée"))
    assert again.retrieval is first.retrieval and again.embed_ms == 0.0
    assert len(embedder.texts) == 1
    other_k = asyncio.run(search("carte d'identité volée", k=2))  # new retrieval, same query vector
    assert len(other_k.retrieval.hits) <= 2 and len(embedder.texts) == 1
    # A new corpus version (a re-ingested index): nothing from the old one is served.
    service.index = load_index(index_dir)
    service.index.manifest = msgspec.structs.replace(service.index.manifest, corpus_version="corpus@new")
    renewed = asyncio.run(search("carte d'identité volée"))
    assert renewed.retrieval is not first.retrieval
    off = SearchService(Settings(cache_entries=0), load_index(index_dir), embedder)
    asyncio.run(off.retrieve("passeport", None, 5))
    asyncio.run(off.retrieve("passeport", None, 5))
    assert embedder.texts.count(off.searcher.dense_text("passeport")) == 2
