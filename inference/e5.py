"""Run-time E5 encoder shared by the Triton python-backend model and the offline indexer.

Both sides must produce identical vectors for identical text, so the prefixes, tokenisation, padding and
batching live here once. The ONNX model (built by ``build_engines.e5``) already mean-pools and
L2-normalises, so this module only turns strings into padded id/mask tensors and puts results back in
input order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tokenizers import Tokenizer

__all__ = ["PREFIXES", "E5Encoder", "Kind"]

Kind = Literal["query", "passage"]
PREFIXES: dict[str, str] = {"query": "query: ", "passage": "passage: "}
"""The ONE place the E5 instruction prefixes are applied; callers pass raw text."""

METADATA_FILE = "e5.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_TOKENS = 32 * 512


class E5Encoder:
    """Embeds texts with an E5 ONNX model directory (``model.onnx``, ``tokenizer.json``, ``e5.json``).

    Texts are sorted by token length and run in micro-batches of at most ``batch_size`` texts and
    ``batch_tokens`` padded tokens, so one long passage does not make a batch of short ones pay for its
    padding, and memory stays bounded whatever the caller sends. A session is thread-safe; one encoder
    can serve concurrent requests.
    """

    dim: int
    max_length: int

    def __init__(
        self,
        model_dir: Path,
        *,
        model_file: str = "model.onnx",
        intra_op_threads: int | None = None,
        max_length: int = 512,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        providers: Sequence[str] | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        model_path = model_dir / model_file
        if not model_path.is_file():
            raise FileNotFoundError(f"E5 model not found: {model_path}")
        if batch_size < 1 or batch_tokens < 1:
            raise ValueError("batch_size and batch_tokens must be positive")
        metadata = _read_metadata(model_dir / METADATA_FILE)
        if max_length < 3:
            raise ValueError(f"max_length must leave room for <s>, one token and </s>, got {max_length}")
        # Capped at the limit the model was built for (its position table), recorded in e5.json.
        max_length = min(max_length, _int_field(metadata, "max_length") or max_length)
        self.max_length = max_length
        self._batch_size = batch_size
        self._batch_tokens = max(batch_tokens, max_length)

        tokenizer_json = (model_dir / TOKENIZER_FILE).read_text(encoding="utf-8")
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        # A second, non-truncating instance answers "how long is this text really" for the indexer.
        self._counter = Tokenizer.from_str(tokenizer_json)
        self._counter.no_padding()
        self._counter.no_truncation()
        pad_id = _int_field(metadata, "pad_token_id")
        self._pad_id = pad_id if pad_id is not None else _pad_id(self._tokenizer)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(
            str(model_path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
        output = self._session.get_outputs()[0]
        self._output_name = output.name
        dim = output.shape[-1] if isinstance(output.shape[-1], int) else _int_field(metadata, "dim")
        if dim is None:
            raise ValueError(f"{model_path}: output dimension is neither static in the graph nor in e5.json")
        self.dim = dim

    def encode(self, texts: Sequence[str], kind: Kind) -> NDArray[np.float32]:
        """float32 [len(texts), dim] unit vectors, row i for texts[i]; texts longer than max_length are
        truncated (use :meth:`count_tokens` to detect that)."""
        prefixed = _prefixed(texts, kind)
        out = np.empty((len(prefixed), self.dim), dtype=np.float32)
        if not prefixed:
            return out
        ids = [encoding.ids for encoding in self._tokenizer.encode_batch(prefixed, add_special_tokens=True)]
        for batch in self._micro_batches([len(row) for row in ids]):
            input_ids, mask = self._pad([ids[i] for i in batch])
            (vectors,) = self._session.run([self._output_name], {"input_ids": input_ids, "attention_mask": mask})
            out[batch] = vectors
        return out

    def count_tokens(self, texts: Sequence[str], kind: Kind) -> list[int]:
        """Tokens each text needs, prefix and special tokens included, before truncation."""
        prefixed = _prefixed(texts, kind)
        return [len(e.ids) for e in self._counter.encode_batch(prefixed, add_special_tokens=True)]

    def _micro_batches(self, lengths: list[int]) -> list[NDArray[np.intp]]:
        order = np.argsort(np.asarray(lengths), kind="stable")[::-1]
        batches: list[NDArray[np.intp]] = []
        start = 0
        while start < len(order):
            longest = lengths[order[start]]
            size = max(1, min(self._batch_size, self._batch_tokens // longest))
            batches.append(order[start : start + size])
            start += size
        return batches

    def _pad(self, rows: list[list[int]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask


def _prefixed(texts: Sequence[str], kind: str) -> list[str]:
    if kind not in PREFIXES:
        raise ValueError(f"kind must be one of {sorted(PREFIXES)}, got {kind!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    prefix = PREFIXES[kind]
    out: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or whitespace only")
        out.append(prefix + text)
    return out


def _read_metadata(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _int_field(metadata: dict[str, object], key: str) -> int | None:
    value = metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pad_id(tokenizer: Tokenizer) -> int:
    """Any id works for padding (the mask hides it); prefer the tokenizer's own pad token."""
    for token in ("<pad>", "[PAD]"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0
