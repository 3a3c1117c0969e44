"""Write the E5 encoder as an ONNX graph with ``onnx.helper`` — no torch, no exporter, no tracing.

The graph takes right- or left-padded ``input_ids``/``attention_mask`` and returns the L2-normalised
mean-pooled sentence embedding, so every consumer (Triton model, offline indexer, benchmarks) gets the
finished vector from one ``session.run`` and none of them re-implements pooling.

Only standard ONNX operators (opset 17) are used so the same file runs on ONNX Runtime CPU/CUDA and can
be handed to TensorRT; ONNX Runtime's own optimiser fuses LayerNorm/GELU/attention patterns at load time.
Q, K and V are one [hidden, 3*hidden] MatMul: one GEMM instead of three, and one activation quantisation
instead of three once the model is converted to int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from build_engines.e5.weights import E5Weights

__all__ = ["INPUT_NAMES", "OPSET", "OUTPUT_NAME", "build_onnx_model"]

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embedding"
_MASK_BIAS = float(np.finfo(np.float32).min)  # what Hugging Face adds to masked attention scores
_POOL_EPS = 1e-9  # sentence-transformers' clamp on the token count
_NORM_EPS = 1e-12  # torch.nn.functional.normalize's clamp on the norm


class _GraphWriter:
    """Collects nodes and initialisers and hands out unique tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        name: str | None = None,
        node_name: str | None = None,
        **attrs: Any,
    ) -> str:
        """Append one node; ``node_name`` gives weight-bearing nodes stable names quantisation can target."""
        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        node = node_name or f"n{self._count}_{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=node, **attrs))
        return out

    def ops(self, op_type: str, inputs: list[str], n_out: int, **attrs: Any) -> list[str]:
        self._count += 1
        outs = [f"{op_type.lower()}_{self._count}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"n{self._count}_{op_type}", **attrs))
        return outs


def _linear(g: _GraphWriter, x: str, weight: NDArray[np.float32], bias: NDArray[np.float32], prefix: str) -> str:
    """``x @ W.T + b`` with W stored pre-transposed, so the runtime does a plain [in, out] GEMM."""
    w = g.const(prefix + ".weight_t", weight.T.astype(np.float32))
    b = g.const(prefix + ".bias", bias.astype(np.float32))
    return g.op("Add", [g.op("MatMul", [x, w], node_name=prefix + ".MatMul"), b], node_name=prefix + ".Add")


def _layer_norm(
    g: _GraphWriter, x: str, weight: NDArray[np.float32], bias: NDArray[np.float32], *, eps: float, prefix: str
) -> str:
    scale = g.const(prefix + ".weight", weight)
    shift = g.const(prefix + ".bias", bias)
    return g.op("LayerNormalization", [x, scale, shift], axis=-1, epsilon=eps)


def _gelu(g: _GraphWriter, x: str, one: str, half: str, sqrt2: str) -> str:
    """Exact (erf) GELU, written in the pattern ONNX Runtime's GeluFusion recognises."""
    erf = g.op("Erf", [g.op("Div", [x, sqrt2])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, one])]), half])


def _embeddings(g: _GraphWriter, w: E5Weights, input_ids: str, mask: str) -> str:
    cfg = w.config
    word = g.op("Gather", [g.const("word_embeddings", w.embedding("word")), input_ids], axis=0)
    table = g.const("position_embeddings", w.embedding("pos"))
    if cfg.model_type == "xlm-roberta":
        # XLM-R numbers real tokens padding_idx+1, padding_idx+2, ... and gives padding padding_idx.
        running = g.op("CumSum", [mask, g.const("axis_1", np.array(1, dtype=np.int64))])
        ids = g.op(
            "Add",
            [
                g.op("Mul", [running, mask]),
                g.const("padding_idx", np.array(cfg.pad_token_id, dtype=np.int64)),
            ],
        )
        positions = g.op("Gather", [table, ids], axis=0)
    else:
        # BERT numbers positions 0..S-1 whatever the mask (as Hugging Face's BertModel does).
        seq_len = g.op("Shape", [input_ids], start=1, end=2)
        positions = g.op(
            "Slice",
            [
                table,
                g.const("zero_1d", np.array([0], dtype=np.int64)),
                seq_len,
                g.const("axes_0", np.array([0], dtype=np.int64)),
            ],
        )
    token_type = g.const("token_type_0", w.embedding("type")[0])
    summed = g.op("Add", [g.op("Add", [word, positions]), token_type])
    ln_w, ln_b = w.embedding("ln.w"), w.embedding("ln.b")
    return _layer_norm(g, summed, ln_w, ln_b, eps=cfg.layer_norm_eps, prefix="embeddings.ln")


def _attention_bias(g: _GraphWriter, mask_f: str, one: str) -> str:
    """[B, 1, 1, S] additive bias: 0 for real tokens, float32 min for padding."""
    inverted = g.op("Sub", [one, mask_f])
    bias = g.op("Mul", [inverted, g.const("mask_bias", np.array(_MASK_BIAS, dtype=np.float32))])
    return g.op("Unsqueeze", [bias, g.const("axes_1_2", np.array([1, 2], dtype=np.int64))])


def _encoder_layer(g: _GraphWriter, w: E5Weights, index: int, x: str, *, bias: str, consts: dict[str, str]) -> str:
    cfg = w.config
    t = w.layer(index)
    p = f"layer{index}"
    h, head_dim = cfg.hidden_size, cfg.head_dim
    qkv_w = np.concatenate([t["q.w"], t["k.w"], t["v.w"]], axis=0)
    qkv_b = np.concatenate([t["q.b"], t["k.b"], t["v.b"]], axis=0)
    qkv = _linear(g, x, qkv_w, qkv_b, p + ".qkv")
    q, k, v = g.ops("Split", [qkv, g.const(p + ".split", np.array([h, h, h], dtype=np.int64))], 3, axis=2)
    heads_shape = consts["heads_shape"]
    q = g.op("Transpose", [g.op("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])
    v = g.op("Transpose", [g.op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
    scale = g.const(p + ".scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
    probs = g.op("Softmax", [scores], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, consts["hidden_shape"]])
    attn_out = _linear(g, context, t["ao.w"], t["ao.b"], p + ".attn_out")
    eps = cfg.layer_norm_eps
    x = _layer_norm(g, g.op("Add", [attn_out, x]), t["aln.w"], t["aln.b"], eps=eps, prefix=p + ".attn_ln")
    inner = _linear(g, x, t["fi.w"], t["fi.b"], p + ".ffn_in")
    inner = _gelu(g, inner, consts["one"], consts["half"], consts["sqrt2"])
    ffn_out = _linear(g, inner, t["fo.w"], t["fo.b"], p + ".ffn_out")
    return _layer_norm(g, g.op("Add", [ffn_out, x]), t["oln.w"], t["oln.b"], eps=eps, prefix=p + ".ffn_ln")


def _pool_and_normalise(g: _GraphWriter, x: str, mask_f: str) -> str:
    weights = g.op("Unsqueeze", [mask_f, g.const("axes_2", np.array([2], dtype=np.int64))])
    axis1 = g.const("reduce_axis_1", np.array([1], dtype=np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [x, weights]), axis1], keepdims=0)
    count = g.op("ReduceSum", [mask_f, axis1], keepdims=1)
    count = g.op("Max", [count, g.const("pool_eps", np.array(_POOL_EPS, dtype=np.float32))])
    mean = g.op("Div", [summed, count])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), axis1], keepdims=1)])
    norm = g.op("Max", [norm, g.const("norm_eps", np.array(_NORM_EPS, dtype=np.float32))])
    return g.op("Div", [mean, norm], name=OUTPUT_NAME)


def build_onnx_model(
    weights: E5Weights, *, metadata: dict[str, str] | None = None, check: bool = True
) -> onnx.ModelProto:
    """The complete encoder: token ids + mask -> float32 [batch, hidden] unit vectors.

    ``check`` runs the ONNX checker in memory, which protobuf limits to 2 GB models; larger models (e5-large)
    must be checked from disk after being saved with external data.
    """
    cfg = weights.config
    g = _GraphWriter()
    consts = {
        "one": g.const("one", np.array(1.0, dtype=np.float32)),
        "half": g.const("half", np.array(0.5, dtype=np.float32)),
        "sqrt2": g.const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32)),
        "heads_shape": g.const("heads_shape", np.array([0, 0, cfg.num_attention_heads, cfg.head_dim], dtype=np.int64)),
        "hidden_shape": g.const("hidden_shape", np.array([0, 0, cfg.hidden_size], dtype=np.int64)),
    }
    input_ids, mask = INPUT_NAMES
    mask_f = g.op("Cast", [mask], to=TensorProto.FLOAT)
    x = _embeddings(g, weights, input_ids, mask)
    bias = _attention_bias(g, mask_f, consts["one"])
    for index in range(cfg.num_hidden_layers):
        x = _encoder_layer(g, weights, index, x, bias=bias, consts=consts)
    _pool_and_normalise(g, x, mask_f)

    graph = helper.make_graph(
        g.nodes,
        "e5_encoder",
        inputs=[helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in INPUT_NAMES],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", cfg.hidden_size])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="build_engines.e5",
        doc_string=(f"E5 sentence encoder ({cfg.model_type}, {cfg.num_hidden_layers} layers, dim {cfg.hidden_size})"),
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.10 and by TensorRT's parser
    props = {
        "dim": str(cfg.hidden_size),
        "model_type": cfg.model_type,
        "source": weights.source,
        **(metadata or {}),
    }
    helper.set_model_props(model, props)
    if check:
        onnx.checker.check_model(model)
    return model
