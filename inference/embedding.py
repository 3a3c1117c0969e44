"""Run-time text encoder shared by the Triton python-backend model and the offline indexer.

Both sides must produce identical vectors for identical text, so the prompts, tokenisation, padding and
batching live here once. A model directory (built by ``build_engines.e5`` or ``build_engines.gemma``) holds
``model.onnx`` (ids and mask in, L2-normalised pooled vectors out), ``tokenizer.json`` and ``embedder.json``,
whose ``prefixes`` say how the model wants queries and passages introduced ("query: " / "passage: " for e5,
"task: search result | query: " / "title: none | text: " for EmbeddingGemma). This module only turns strings
into padded id/mask tensors and puts results back in input order.
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

__all__ = ["PREFIXES", "Encoder", "EncoderTokenizer", "Kind", "bucket_width"]

Kind = Literal["query", "passage"]
PREFIXES: dict[str, str] = {"query": "query: ", "passage": "passage: "}
"""e5's prefixes: the default for a model directory whose metadata names none. They are applied here only;
callers pass raw text."""

METADATA_FILE = "embedder.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_TOKENS = 32 * 512


class EncoderTokenizer:
    """Prefix, tokenise (truncated at ``max_length``), pad: the part of encoding that does not need the model
    (shared by the encoder and by the GPU profile's tokenizer model in Triton)."""

    def __init__(self, model_dir: Path, *, max_length: int = 512) -> None:
        metadata = _read_metadata(Path(model_dir) / METADATA_FILE)
        if max_length < 3:
            raise ValueError(f"max_length must leave room for <s>, one token and </s>, got {max_length}")
        # Capped at the limit the model was built for (its position table), recorded in embedder.json.
        self.max_length = min(max_length, _int_field(metadata, "max_length") or max_length)
        tokenizer_json = (Path(model_dir) / TOKENIZER_FILE).read_text(encoding="utf-8")
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)
        # A second, non-truncating instance answers "how long is this text really" for the indexer.
        self._counter = Tokenizer.from_str(tokenizer_json)
        self._counter.no_padding()
        self._counter.no_truncation()
        pad_id = _int_field(metadata, "pad_token_id")
        self.pad_id = pad_id if pad_id is not None else _pad_id(self._tokenizer)
        prefixes = metadata.get("prefixes")
        self.prefixes = dict(prefixes) if isinstance(prefixes, dict) and set(prefixes) == set(PREFIXES) else PREFIXES

    def ids(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        prefixed = _prefixed(texts, kind, self.prefixes)
        return [e.ids for e in self._tokenizer.encode_batch(prefixed, add_special_tokens=True)] if prefixed else []

    def count(self, texts: Sequence[str], kind: str) -> list[int]:
        prefixed = _prefixed(texts, kind, self.prefixes)
        return [len(e.ids) for e in self._counter.encode_batch(prefixed, add_special_tokens=True)]

    def pad(self, rows: list[list[int]], width: int | None = None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """int64 ids and attention mask [len(rows), width] (default: the longest row)."""
        width = max(len(row) for row in rows) if width is None else width
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask


def bucket_width(longest: int, max_length: int, smallest: int = 16) -> int:
    """The padded width of a request on the GPU profile: the next power of two (at least ``smallest``,
    at most ``max_length``). Triton's dynamic batcher only joins requests of the same shape, so a few
    widths let concurrent queries share one execution of the encoder."""
    width = smallest
    while width < longest:
        width *= 2
    return max(longest, min(width, max_length))


class Encoder:
    """Embeds texts with a model directory (``model.onnx``, ``tokenizer.json``, ``embedder.json``).

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
        query_model_dir: Path | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        model_path = model_dir / model_file
        if not model_path.is_file():
            raise FileNotFoundError(f"embedding model not found: {model_path}")
        if batch_size < 1 or batch_tokens < 1:
            raise ValueError("batch_size and batch_tokens must be positive")
        metadata = _read_metadata(model_dir / METADATA_FILE)
        self._batch_size = batch_size

        self.tokenizer = EncoderTokenizer(model_dir, max_length=max_length)
        self.max_length = self.tokenizer.max_length

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        chosen = list(providers or ["CPUExecutionProvider"])
        self._session = ort.InferenceSession(str(model_path), options, providers=chosen)
        # A query tower (build_engines.finetune.tune.train_query_tower) embeds the queries: same tokenizer and
        # prompts, top layers trained against the passages this model embedded.
        self._query_session = self._session
        if query_model_dir is not None:
            query_path = Path(query_model_dir) / "model.onnx"
            if not query_path.is_file():
                raise FileNotFoundError(f"query tower not found: {query_path}")
            if (Path(query_model_dir) / TOKENIZER_FILE).read_bytes() != (model_dir / TOKENIZER_FILE).read_bytes():
                raise ValueError(f"{query_model_dir} does not share {model_dir}'s tokenizer")
            self._query_session = ort.InferenceSession(str(query_path), options, providers=chosen)
        output = self._session.get_outputs()[0]
        self._output_name = output.name
        dim = output.shape[-1] if isinstance(output.shape[-1], int) else _int_field(metadata, "dim")
        if dim is None:
            raise ValueError(f"{model_path}: output dimension is neither static in the graph nor in embedder.json")
        self.dim = dim
        self._batch_tokens = max(batch_tokens, self.max_length)

    def encode(self, texts: Sequence[str], kind: Kind) -> NDArray[np.float32]:
        """float32 [len(texts), dim] unit vectors, row i for texts[i]; texts longer than max_length are
        truncated (use :meth:`count_tokens` to detect that)."""
        ids = self.tokenizer.ids(texts, kind)
        session = self._query_session if kind == "query" else self._session
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for batch in self._micro_batches([len(row) for row in ids]):
            input_ids, mask = self.tokenizer.pad([ids[i] for i in batch])
            (vectors,) = session.run([self._output_name], {"input_ids": input_ids, "attention_mask": mask})
            out[batch] = vectors
        return out

    def count_tokens(self, texts: Sequence[str], kind: Kind) -> list[int]:
        """Tokens each text needs, prefix and special tokens included, before truncation."""
        return self.tokenizer.count(texts, kind)

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


def _prefixed(texts: Sequence[str], kind: str, prefixes: dict[str, str]) -> list[str]:
    if kind not in prefixes:
        raise ValueError(f"kind must be one of {sorted(prefixes)}, got {kind!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    prefix = prefixes[kind]
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
