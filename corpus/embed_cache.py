"""Passage vectors cached by text and model, so a re-ingest embeds only what changed.

An index variant (e.g. the evaluation index with hidden titles) re-embeds only the units whose text
differs from the main index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["EmbeddingCache"]

Embed = Callable[[Sequence[str]], NDArray[np.float32]]


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class EmbeddingCache:
    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self._rows: dict[bytes, NDArray[np.float32]] = {}
        self._dirty = False
        if path.exists():
            with np.load(path) as data:
                keys, vectors = data["keys"], data["vectors"]
            if vectors.ndim == 2 and vectors.shape[1] == dim and keys.dtype == np.uint8:
                self._rows = {k.tobytes(): v for k, v in zip(keys, vectors, strict=True)}

    def __len__(self) -> int:
        return len(self._rows)

    def wrap(
        self, embed: Callable[[Sequence[str]], NDArray[np.float32]]
    ) -> Callable[[Sequence[str]], NDArray[np.float32]]:
        """An ``embed`` that answers from the cache and calls the real one for the misses only."""

        def cached(texts: Sequence[str]) -> NDArray[np.float32]:
            keys = [_key(t) for t in texts]
            missing = [i for i, k in enumerate(keys) if k not in self._rows]
            if missing:
                fresh = embed([texts[i] for i in missing])
                for i, vector in zip(missing, fresh, strict=True):
                    self._rows[keys[i]] = np.asarray(vector, dtype=np.float32)
                self._dirty = True
            return np.stack([self._rows[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

        return cached

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        # Raw bytes as uint8 rows: a numpy "S16" string would drop trailing NUL bytes of a digest.
        keys = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(-1, 16)
        np.savez(tmp, keys=keys, vectors=np.stack(list(self._rows.values())).astype(np.float32))
        tmp.replace(self.path)
        self._dirty = False
