"""Least-recently-used caches of query embeddings and retrieval results (advisors ask the same things).

The search service keys them by the validated query (spaces collapsed; case kept, since acronym
expansion depends on it), and retrieval results also by audience, k and corpus version, so a new index
never serves old results. Hits and misses feed the ``albert_cache_requests_total`` metric.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LruCache"]

V = TypeVar("V")


class LruCache(Generic[V]):
    """At most ``size`` entries (0: caching off); ``on_lookup(hit)`` and ``on_size(n)`` feed metrics."""

    def __init__(
        self,
        size: int,
        *,
        on_lookup: Callable[[bool], None] | None = None,
        on_size: Callable[[int], None] | None = None,
    ) -> None:
        if size < 0:
            raise ValueError("a cache size cannot be negative")
        self.size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._on_lookup = on_lookup or (lambda _: None)
        self._on_size = on_size or (lambda _: None)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        if not self.size:
            return None
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
            self._entries.move_to_end(key)
        self._on_lookup(value is not None)
        return value

    def put(self, key: Hashable, value: V) -> None:
        if not self.size:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        self._on_size(len(self._entries))
