"""A deliberately plain numpy forward pass: the oracle the ONNX graph is checked against.

It follows Hugging Face's BertModel/XLMRobertaModel step by step in float64 without any of the graph
builder's choices (fused QKV, pre-transposed weights, mask bias constant), so agreement means the graph
is right rather than that two copies of the same shortcut agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from build_engines.e5.weights import E5Weights

__all__ = ["reference_embed"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _layer_norm(
    x: NDArray[np.float64], w: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]], eps: float
) -> NDArray[np.float64]:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normalised: NDArray[np.float64] = (x - mean) / np.sqrt(var + eps) * w + b
    return normalised


def reference_embed(
    weights: E5Weights,
    input_ids: NDArray[np.int64],
    attention_mask: NDArray[np.int64],
) -> NDArray[np.float32]:
    """float32 [batch, hidden] L2-normalised mean-pooled embeddings, one sequence at a time."""
    cfg = weights.config
    out = np.zeros((input_ids.shape[0], cfg.hidden_size), dtype=np.float64)
    for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
        keep = mask.astype(bool)
        if cfg.model_type == "xlm-roberta":
            positions = np.cumsum(mask) * mask + cfg.pad_token_id
        else:
            positions = np.arange(len(ids))
        x = (
            weights.embedding("word")[ids].astype(np.float64)
            + weights.embedding("pos")[positions]
            + weights.embedding("type")[0]
        )
        x = _layer_norm(x, weights.embedding("ln.w"), weights.embedding("ln.b"), cfg.layer_norm_eps)
        for index in range(cfg.num_hidden_layers):
            t = {k: v.astype(np.float64) for k, v in weights.layer(index).items()}
            heads = []
            for head in range(cfg.num_attention_heads):
                cols = slice(head * cfg.head_dim, (head + 1) * cfg.head_dim)
                q = x @ t["q.w"][cols].T + t["q.b"][cols]
                k = x @ t["k.w"][cols].T + t["k.b"][cols]
                v = x @ t["v.w"][cols].T + t["v.b"][cols]
                scores = q @ k.T / math.sqrt(cfg.head_dim)
                scores[:, ~keep] = -np.inf
                probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
                probs /= probs.sum(axis=-1, keepdims=True)
                heads.append(probs @ v)
            context = np.concatenate(heads, axis=-1)
            attn = context @ t["ao.w"].T + t["ao.b"]
            x = _layer_norm(x + attn, t["aln.w"], t["aln.b"], cfg.layer_norm_eps)
            inner = x @ t["fi.w"].T + t["fi.b"]
            inner = 0.5 * inner * (1.0 + _erf(inner / math.sqrt(2.0)))
            ffn = inner @ t["fo.w"].T + t["fo.b"]
            x = _layer_norm(x + ffn, t["oln.w"], t["oln.b"], cfg.layer_norm_eps)
        pooled = x[keep].mean(axis=0)
        out[row] = pooled / np.linalg.norm(pooled)
    return out.astype(np.float32)
