"""EmbeddingGemma as a plain torch module: the encoder, mean pooling, the two dense projections and L2
normalisation in one ``forward(input_ids, attention_mask) -> embedding``, ready for ``torch.onnx.export``.

Runs in the build environment (torch). Written from the published architecture (Gemma 3 text decoder used
bidirectionally): scaled token embeddings; per layer RMSNorm (x * (1 + w)) around attention and MLP, with
RMS-normalised queries and keys, rotary positions (local base for sliding-window layers, global base for
full-attention layers), grouped-query attention, gelu-tanh gated MLP. Sequences are capped at the sliding
window (512 tokens), so every layer sees the whole sequence and the padding mask is the only mask.
``build_engines.gemma.export`` checks it against the ``transformers`` implementation before exporting.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

__all__ = ["GemmaEmbedder", "load_embedder"]


class _RMSNorm(nn.Module):  # type: ignore[misc]  # nn.Module is Any: torch is in the build venv only
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed * (1.0 + self.weight)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Layer(nn.Module):  # type: ignore[misc]  # nn.Module is Any: torch is in the build venv only
    def __init__(self, cfg: dict[str, Any], sliding: bool) -> None:
        super().__init__()
        hidden, eps = int(cfg["hidden_size"]), float(cfg["rms_norm_eps"])
        self.heads, self.kv_heads = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
        self.head_dim = int(cfg["head_dim"])
        self.scale = float(cfg["query_pre_attn_scalar"]) ** -0.5
        base = float(cfg["rope_local_base_freq"] if sliding else cfg["rope_theta"])
        self.register_buffer(
            "inv_freq", 1.0 / base ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim), False
        )
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)
        self.q_norm, self.k_norm = _RMSNorm(self.head_dim, eps), _RMSNorm(self.head_dim, eps)
        inter = int(cfg["intermediate_size"])
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)
        for name in (
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ):
            setattr(self, name, _RMSNorm(hidden, eps))

    def forward(self, x: torch.Tensor, bias: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_norm(self.q_proj(h).view(batch, length, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(h).view(batch, length, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(h).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, length, -1)
        x = x + self.post_attention_layernorm(self.o_proj(context))
        h = self.pre_feedforward_layernorm(x)
        gated = nn.functional.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h)
        return x + self.post_feedforward_layernorm(self.down_proj(gated))


class GemmaEmbedder(nn.Module):  # type: ignore[misc]  # nn.Module is Any: torch is in the build venv only
    def __init__(self, cfg: dict[str, Any], dense_dims: list[tuple[int, int]]) -> None:
        super().__init__()
        hidden = int(cfg["hidden_size"])
        self.embed_tokens = nn.Embedding(int(cfg["vocab_size"]), hidden)
        self.normalizer = math.sqrt(hidden)
        layer_types = cfg["layer_types"]
        self.layers = nn.ModuleList(_Layer(cfg, t == "sliding_attention") for t in layer_types)
        self.norm = _RMSNorm(hidden, float(cfg["rms_norm_eps"]))
        self.dense = nn.ModuleList(nn.Linear(i, o, bias=False) for i, o in dense_dims)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids) * torch.tensor(self.normalizer, dtype=torch.float32)
        mask = attention_mask.to(torch.float32)
        bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        positions = torch.arange(input_ids.shape[1], dtype=torch.float32)
        for layer in self.layers:
            x = layer(x, bias, positions)
        x = self.norm(x)
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        for projection in self.dense:
            pooled = projection(pooled)
        return nn.functional.normalize(pooled, dim=-1)


def load_embedder(checkpoint: Path) -> GemmaEmbedder:
    """The sentence-transformers checkpoint directory (config.json, model.safetensors, 2_Dense/, 3_Dense/)."""
    cfg = json.loads((checkpoint / "config.json").read_text())
    modules = json.loads((checkpoint / "modules.json").read_text())
    dense_dirs = [checkpoint / m["path"] for m in modules if m["type"].endswith("models.Dense")]
    dense_state = [load_file(d / "model.safetensors") for d in dense_dirs]
    dims = [(int(s["linear.weight"].shape[1]), int(s["linear.weight"].shape[0])) for s in dense_state]
    model = GemmaEmbedder(cfg, dims)
    state = {k.removeprefix("model."): v for k, v in load_file(checkpoint / "model.safetensors").items()}
    renamed = {}
    for name, tensor in state.items():
        # transformers names: layers.N.self_attn.q_proj.weight, layers.N.mlp.gate_proj.weight, ...
        renamed[name.replace("self_attn.", "").replace("mlp.", "")] = tensor
    for i, s in enumerate(dense_state):
        renamed[f"dense.{i}.weight"] = s["linear.weight"]
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    missing = [m for m in missing if not m.endswith("inv_freq")]
    if missing or unexpected:
        raise ValueError(f"{checkpoint}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return model
