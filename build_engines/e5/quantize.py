"""Optional int8 dynamic quantisation of the fp32 encoder, and the measurements that justify it.

Recipe, chosen from measurements on an AVX2 (no VNNI) CPU, 2 threads, multilingual-e5-small, cosine to
the fp32 model over the 56 ``FRENCH_SAMPLES`` queries:

* per-tensor int8 weights: mean cosine 0.990 (u8 x s8 products saturate in AVX2's ``vpmaddubsw``);
* per-channel weights with ``reduce_range`` (7-bit, the documented AVX2 fix): mean 0.9972, min 0.9951;
* the same, keeping the 12 FFN-output MatMuls in fp32 (their inputs, GELU outputs, have the widest
  range): mean 0.9990, min 0.9981, ~1.2-1.5x faster than fp32 — the default here.

Only MatMuls with a constant weight are quantised (``MatMulConstBOnly``): quantising the attention
score/context products costs accuracy for no speed. The word-embedding Gather is stored in int8 too,
which is what shrinks the file from ~470 MB to ~140 MB.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnxruntime.quantization import QuantType, quantize_dynamic

from inference.embedding import Encoder

__all__ = ["Int8Recipe", "QuantReport", "compare_models", "quantize_int8"]


@dataclass(frozen=True, kw_only=True)
class Int8Recipe:
    per_channel: bool = True
    reduce_range: bool = True
    quantize_embeddings: bool = True
    keep_fp32_suffixes: tuple[str, ...] = (".ffn_out.MatMul",)
    """Node-name suffixes left in fp32 (node names come from onnx_graph._linear)."""

    def describe(self) -> dict[str, object]:
        return {
            "method": "onnxruntime.quantization.quantize_dynamic",
            "weight_type": "QInt8",
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "quantize_embeddings": self.quantize_embeddings,
            "kept_fp32": list(self.keep_fp32_suffixes),
        }


@dataclass(frozen=True, kw_only=True)
class QuantReport:
    n_texts: int
    min_cosine: float
    mean_cosine: float
    fp32_ms_per_text: float
    candidate_ms_per_text: float

    def as_dict(self) -> dict[str, object]:
        return {
            "n_texts": self.n_texts,
            "min_cosine": round(self.min_cosine, 6),
            "mean_cosine": round(self.mean_cosine, 6),
            "fp32_ms_per_text": round(self.fp32_ms_per_text, 2),
            "candidate_ms_per_text": round(self.candidate_ms_per_text, 2),
        }


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_preprocess_advice() -> Iterator[None]:
    """quantize_dynamic always logs advice to pre-process; we measured that it changes nothing here."""
    root = logging.getLogger()
    advice_filter = _DropPreprocessAdvice()
    root.addFilter(advice_filter)
    try:
        yield
    finally:
        root.removeFilter(advice_filter)


def quantize_int8(src: Path, dst: Path, recipe: Int8Recipe | None = None) -> None:
    """Write the int8 version of ``src`` to ``dst``."""
    recipe = recipe or Int8Recipe()
    names = [node.name for node in onnx.load(str(src), load_external_data=False).graph.node]
    excluded = [name for name in names if name.endswith(recipe.keep_fp32_suffixes)]
    op_types = ["MatMul", "Gather"] if recipe.quantize_embeddings else ["MatMul"]
    with _quiet_preprocess_advice():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=op_types,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"MatMulConstBOnly": True},
        )


def compare_models(
    model_dir: Path,
    fp32_file: str,
    candidate_file: str,
    texts: Sequence[str],
    *,
    threads: int = 2,
    max_length: int = 512,
) -> QuantReport:
    """Cosine of the candidate's (int8, fp16) vs the fp32 vectors for ``texts`` (as queries, one at a time)
    and the time per text on this machine's CPU."""
    results: dict[str, tuple[NDArray[np.float32], float]] = {}
    for name in (fp32_file, candidate_file):
        encoder = Encoder(model_dir, model_file=name, intra_op_threads=threads, max_length=max_length)
        encoder.encode(texts[:2], "query")  # warm-up: first runs allocate
        start = time.perf_counter()
        vectors = np.concatenate([encoder.encode([text], "query") for text in texts])
        results[name] = (vectors, (time.perf_counter() - start) * 1000 / len(texts))
    cosines = np.sum(results[fp32_file][0] * results[candidate_file][0], axis=1)
    return QuantReport(
        n_texts=len(texts),
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        fp32_ms_per_text=results[fp32_file][1],
        candidate_ms_per_text=results[candidate_file][1],
    )


def convert_fp16(src: Path, dst: Path) -> None:
    """Write ``src`` with float16 weights and compute to ``dst`` (for GPU serving); inputs and the embedding
    output stay as they are (int64 ids, float32 vectors), so the serving interface does not change."""
    from onnxconverter_common import float16  # a build-time tool, only needed for GPU models

    source = onnx.load(str(src))
    own_casts = {node.name for node in source.graph.node if node.op_type == "Cast"}
    with warnings.catch_warnings():
        # The attention mask's bias (float32 min) becomes -10000, still exactly 0 after softmax.
        warnings.filterwarnings("ignore", message="the float32 number .* will be truncated", category=UserWarning)
        model = float16.convert_float_to_float16(source, keep_io_types=True)
    # The converter retypes tensors but not the ``to`` of the graph's own Cast nodes (the attention mask's
    # int64 -> float): make those produce float16 too. The casts it inserts itself are right as they are.
    for node in model.graph.node:
        if node.name in own_casts:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
    onnx.checker.check_model(model)
    onnx.save_model(model, str(dst))
