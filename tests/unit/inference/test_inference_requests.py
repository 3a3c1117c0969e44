"""The Triton glue: request decoding and per-kind batching with isolated failures."""

from __future__ import annotations

import numpy as np
import pytest

from inference.requests import EmbedItem, decode_strings, embed_items, parse_item


def _bytes(*values: str) -> np.ndarray:
    return np.array([[v.encode()] for v in values], dtype=np.object_)


def test_parse_item() -> None:
    item = parse_item(_bytes("a", "b"), _bytes("passage", "passage"))
    assert item == EmbedItem(["a", "b"], "passage")
    assert parse_item(_bytes("a"), None).kind == "query"
    with pytest.raises(ValueError, match="kind"):
        parse_item(_bytes("a"), _bytes("document"))
    with pytest.raises(ValueError, match="empty"):
        decode_strings(_bytes("  "), "text")


def test_embed_items_batches_by_kind_and_keeps_order() -> None:
    calls: list[tuple[list[str], str]] = []

    def encode(texts: list[str], kind: str) -> np.ndarray:
        calls.append((texts, kind))
        return np.array([[len(t), 1.0 if kind == "query" else 2.0] for t in texts], dtype=np.float32)

    items: list[EmbedItem | Exception] = [
        EmbedItem(["aa"], "query"),
        ValueError("bad"),
        EmbedItem(["bbb", "c"], "passage"),
        EmbedItem(["d"], "query"),
    ]
    results = embed_items(items, encode)
    assert [c[1] for c in calls] == ["query", "passage"]
    assert calls[0][0] == ["aa", "d"]
    assert results[0].tolist() == [[2.0, 1.0]]  # type: ignore[union-attr]
    assert isinstance(results[1], ValueError)
    assert results[2].tolist() == [[3.0, 2.0], [1.0, 2.0]]  # type: ignore[union-attr]
    assert results[3].tolist() == [[1.0, 1.0]]  # type: ignore[union-attr]


def test_one_failing_request_does_not_fail_the_others() -> None:
    def encode(texts: list[str], kind: str) -> np.ndarray:
        if "boom" in texts:
            raise RuntimeError("cannot encode boom")
        return np.ones((len(texts), 2), dtype=np.float32)

    results = embed_items([EmbedItem(["ok"], "query"), EmbedItem(["boom"], "query")], encode)
    assert results[0].shape == (1, 2)  # type: ignore[union-attr]
    assert isinstance(results[1], RuntimeError) and "boom" in str(results[1])
