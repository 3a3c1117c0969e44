"""Serving glue shared by the Triton model: decode request tensors, batch by kind, split results.

Kept free of Triton imports so that it is unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from inference.embedding import Kind

__all__ = ["EmbedItem", "decode_strings", "embed_items"]

KINDS: tuple[Kind, ...] = ("query", "passage")


@dataclass(frozen=True, slots=True)
class EmbedItem:
    """The texts of one request and the prefix kind they get."""

    texts: list[str]
    kind: str


def decode_strings(array: NDArray[Any], name: str) -> list[str]:
    """A BYTES tensor of shape [n] or [n, 1] -> n non-empty UTF-8 strings; ValueError otherwise."""
    flat = array.reshape(-1)
    out: list[str] = []
    for value in flat:
        text = value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)
        if not text.strip():
            raise ValueError(f"input '{name}' contains an empty string")
        out.append(text)
    return out


def parse_item(texts: NDArray[Any], kinds: NDArray[Any] | None) -> EmbedItem:
    decoded = decode_strings(texts, "text")
    kind_values = decode_strings(kinds, "kind") if kinds is not None else ["query"]
    if len(set(kind_values)) != 1 or kind_values[0] not in KINDS:
        raise ValueError(f"input 'kind' must be one of {KINDS} for the whole request, got {sorted(set(kind_values))}")
    return EmbedItem(decoded, kind_values[0])


def embed_items(
    items: Sequence[EmbedItem | Exception], encode: Callable[[list[str], Kind], NDArray[np.float32]]
) -> list[NDArray[np.floating[Any]] | Exception]:
    """Encode all valid items with one call per kind; an item that fails alone does not fail the others.

    When a merged call raises, each item of that kind is retried on its own so that the error is returned
    only to the request that caused it.
    """
    results: list[NDArray[np.floating[Any]] | Exception] = [
        item if isinstance(item, Exception) else np.empty(0) for item in items
    ]
    for kind in KINDS:
        members = [(i, item) for i, item in enumerate(items) if isinstance(item, EmbedItem) and item.kind == kind]
        if not members:
            continue
        texts = [t for _, item in members for t in item.texts]
        try:
            vectors = encode(texts, kind)
        except Exception:
            for i, item in members:
                try:
                    results[i] = encode(item.texts, kind)
                except Exception as exc:
                    results[i] = exc
            continue
        offset = 0
        for i, item in members:
            n = len(item.texts)
            results[i] = vectors[offset : offset + n]
            offset += n
    return results
