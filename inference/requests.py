"""Serving glue shared by the Triton model: decode request tensors, batch by kind, split results.

Kept free of Triton imports so that it is unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EmbedItem", "decode_strings", "embed_items"]

KINDS = ("query", "passage")


@dataclass(frozen=True, slots=True)
class EmbedItem:
    """The texts of one request and the prefix kind they get."""

    texts: list[str]
    kind: str


def decode_strings(array: np.ndarray, name: str) -> list[str]:
    """A BYTES tensor of shape [n] or [n, 1] -> n non-empty UTF-8 strings; ValueError otherwise."""
    flat = array.reshape(-1)
    out: list[str] = []
    for value in flat:
        text = value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)
        if not text.strip():
            raise ValueError(f"input '{name}' contains an empty string")
        out.append(text)
    return out


def parse_item(texts: np.ndarray, kinds: np.ndarray | None) -> EmbedItem:
    decoded = decode_strings(texts, "text")
    kind_values = decode_strings(kinds, "kind") if kinds is not None else ["query"]
    if len(set(kind_values)) != 1 or kind_values[0] not in KINDS:
        raise ValueError(f"input 'kind' must be one of {KINDS} for the whole request, got {sorted(set(kind_values))}")
    return EmbedItem(decoded, kind_values[0])


def embed_items(
    items: Sequence[EmbedItem | Exception], encode: Callable[[list[str], str], np.ndarray]
) -> list[np.ndarray | Exception]:
    """Encode all valid items with one call per kind; an item that fails alone does not fail the others.

    When a merged call raises, each item of that kind is retried on its own so that the error is returned
    only to the request that caused it.
    """
    results: list[np.ndarray | Exception] = [item if isinstance(item, Exception) else np.empty(0) for item in items]
    for kind in KINDS:
        members = [i for i, item in enumerate(items) if isinstance(item, EmbedItem) and item.kind == kind]
        if not members:
            continue
        texts = [t for i in members for t in items[i].texts]  # type: ignore[union-attr]
        try:
            vectors = encode(texts, kind)
        except Exception:
            for i in members:
                try:
                    results[i] = encode(items[i].texts, kind)  # type: ignore[union-attr]
                except Exception as exc:
                    results[i] = exc
            continue
        offset = 0
        for i in members:
            n = len(items[i].texts)  # type: ignore[union-attr]
            results[i] = vectors[offset : offset + n]
            offset += n
    return results
