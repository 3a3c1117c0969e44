"""The deployment settings file (TOML): what platform teams write to describe one deployment.

Loaded with unknown keys rejected and every value type-checked, then checked for consistency with
messages that name the offending key. ``Deployment.default(settings)`` is the embedded CPU default that
set-up renders when no file is given.

    profile = "cpu"                      # cpu | trtllm-engine | trtllm-llmapi

    [generator]
    checkpoint = "/models/generator-int4-cpu"   # cpu: the int4 onnxruntime-genai dir; GPU: a HF checkpoint
    dtype = "int4"                       # cpu: int4; GPU: bf16 | fp8 | int8
    tensor_parallel = 1
    max_input_len = 4096
    max_output_len = 1024
    max_batch_size = 8                   # GPU: in-flight batch; cpu: sequences decoded at once
    kv_cache_fraction = 0.9              # GPU: share of free memory for the paged KV cache
    instances = 1
    max_queue = 16
    streaming = true
    decoupled = true

    [embedder]
    model_dir = "/models/embeddinggemma-int8"  # cpu: an int8 or fp32 build; gpu: fp32 (EmbeddingGemma) or fp16 (e5)
    kind = "cpu"                         # cpu | gpu
    max_batch_size = 64
    queue_delay_us = 2000
    instances = 1
    threads = 2                          # cpu: onnxruntime threads per instance
    accelerator = "tensorrt"             # gpu: tensorrt (engines of the model's precision, cached) | cuda

    [trtllm]                             # GPU profiles only
    all_models = "/opt/TensorRT-LLM/triton_backend/all_models"   # the checkout matching the container
    examples = "/opt/TensorRT-LLM/examples"        # trtllm-engine: convert_checkpoint.py, quantization/
    launcher = ["docker", "exec", "trtllm"]        # trtllm-engine build: where TensorRT-LLM runs (default: here)
    engine_dir = "/models/engines/qwen2.5-7b-fp8"  # trtllm-engine: written by `build`, served by tensorrt_llm
    max_num_tokens = 8192                # tokens scheduled per iteration (in-flight batch + chunked prefill)
    kv_cache_reuse = true                # reuse the KV blocks of a shared prompt prefix (the system prompt)
    chunked_context = true               # split long prompts across iterations
    max_queue_delay_us = 0
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from build_engines.generator import GENERATORS, GeneratorBuild
from config.settings import Settings

__all__ = [
    "TRTLLM_MODEL_FILES",
    "Deployment",
    "DeploymentError",
    "EmbedderSection",
    "GeneratorSection",
    "TrtllmSection",
    "embedding_dim",
    "load_deployment",
]

Profile = Literal["cpu", "trtllm-engine", "trtllm-llmapi"]
GPU_DTYPES = ("bf16", "fp8", "int8")
CPU_SERVED_NAME = GeneratorBuild(Path()).served_name  # the default CPU generator's
_CPU_BUILDS = [GeneratorBuild(Path(), model=model) for model in GENERATORS]
# The TensorRT-LLM python models the GPU profiles take from the checkout (their configs are ours).
TRTLLM_MODEL_FILES = {
    "preprocessing": Path("inflight_batcher_llm/preprocessing/1/model.py"),
    "postprocessing": Path("inflight_batcher_llm/postprocessing/1/model.py"),
    "trtllm-llmapi": Path("llmapi/tensorrt_llm/1/model.py"),
}


class DeploymentError(ValueError):
    pass


class GeneratorSection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    checkpoint: Path
    name: str = "generator"
    served_model_name: str | None = None
    """Shown to users as the answer's model; default: the CPU build's name, or the checkpoint's directory name."""
    dtype: Literal["int4", "bf16", "fp8", "int8"] = "int4"
    tensor_parallel: int = 1
    max_input_len: int = 4096
    max_output_len: int = 1024
    max_batch_size: int = 2
    kv_cache_fraction: float = 0.9
    instances: int = 1
    max_queue: int = 16
    streaming: bool = True
    decoupled: bool = True


class EmbedderSection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    model_dir: Path
    query_model_dir: Path | None = None
    """A query tower (``ALBERT_QUERY_TOWER``): embeds the queries, ``model_dir`` the passages (CPU profile)."""
    name: str = "embedder"
    kind: Literal["cpu", "gpu"] = "cpu"
    max_batch_size: int = 64
    queue_delay_us: int = 2000
    instances: int = 1
    threads: int = 2
    accelerator: Literal["tensorrt", "cuda"] = "tensorrt"


class TrtllmSection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    all_models: Path
    examples: Path | None = None
    launcher: list[str] = []
    """Command prefix that runs the engine build's steps where TensorRT-LLM is installed, e.g.
    ["docker", "exec", "trtllm"] (paths must be the same there); empty: this machine."""
    engine_dir: Path | None = None
    max_num_tokens: int = 8192
    kv_cache_reuse: bool = True
    chunked_context: bool = True
    max_queue_delay_us: int = 0


class Deployment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    profile: Profile
    generator: GeneratorSection
    embedder: EmbedderSection
    trtllm: TrtllmSection | None = None

    @classmethod
    def default(cls, settings: Settings) -> Deployment:
        """The embedded CPU default, from the settings (what set-up renders)."""
        return cls(
            profile="cpu",
            generator=GeneratorSection(
                checkpoint=GeneratorBuild(
                    settings.cache_dir, threads=settings.generator_threads, model=settings.generator_model
                ).model_dir,
                max_batch_size=settings.generator_workers,
                max_queue=settings.generator_max_queue,
                max_output_len=settings.answer_max_tokens,
            ),
            embedder=EmbedderSection(
                model_dir=settings.embedding_dir,
                query_model_dir=settings.query_embedding_dir,
                threads=settings.embed_threads,
            ),
        )

    @property
    def served_model_name(self) -> str:
        if self.generator.served_model_name:
            return self.generator.served_model_name
        if self.profile != "cpu":
            return self.generator.checkpoint.name
        built = next((b for b in _CPU_BUILDS if b.model_dir.name == self.generator.checkpoint.name), None)
        return built.served_name if built is not None else CPU_SERVED_NAME

    def check(self) -> Deployment:
        """Raise ``DeploymentError`` naming the key when the settings do not fit together."""
        g, e = self.generator, self.embedder
        positive = {
            "generator.tensor_parallel": g.tensor_parallel,
            "generator.max_input_len": g.max_input_len,
            "generator.max_output_len": g.max_output_len,
            "generator.max_batch_size": g.max_batch_size,
            "generator.instances": g.instances,
            "generator.max_queue": g.max_queue,
            "embedder.max_batch_size": e.max_batch_size,
            "embedder.instances": e.instances,
            "embedder.threads": e.threads,
        }
        for key, value in positive.items():
            if value < 1:
                raise DeploymentError(f"{key} must be at least 1, got {value}")
        if e.queue_delay_us < 0:
            raise DeploymentError(f"embedder.queue_delay_us must not be negative, got {e.queue_delay_us}")
        if e.query_model_dir is not None and e.kind != "cpu":
            raise DeploymentError('embedder.query_model_dir is served by the CPU embedder only (kind = "cpu")')
        if not 0.0 < g.kv_cache_fraction <= 1.0:
            raise DeploymentError(f"generator.kv_cache_fraction must be in (0, 1], got {g.kv_cache_fraction}")
        if g.streaming and not g.decoupled:
            raise DeploymentError(
                "generator.streaming needs generator.decoupled = true (Triton streams only from decoupled models)"
            )
        if g.name == e.name:
            raise DeploymentError(f"generator.name and embedder.name are both {g.name!r}")
        if self.profile == "cpu":
            if g.dtype != "int4":
                raise DeploymentError(
                    f"the cpu profile serves an int4 onnxruntime-genai model; generator.dtype is {g.dtype!r}"
                )
            if g.tensor_parallel != 1:
                raise DeploymentError("the cpu profile has no tensor parallelism: generator.tensor_parallel must be 1")
            if e.kind != "cpu":
                raise DeploymentError('the cpu profile needs embedder.kind = "cpu"')
            if not (g.checkpoint / "genai_config.json").is_file():
                raise DeploymentError(f"generator.checkpoint {g.checkpoint} holds no genai_config.json (run set-up)")
            if not g.decoupled:
                raise DeploymentError("the cpu generator is a decoupled model: generator.decoupled must be true")
            if self.trtllm is not None:
                raise DeploymentError("[trtllm] applies to the GPU profiles only; remove it for profile cpu")
        else:
            self._check_gpu()
        if not (e.model_dir / "embedder.json").is_file():
            raise DeploymentError(
                f"embedder.model_dir {e.model_dir} holds no embedder.json (build the embedding model first)"
            )
        dtype = json.loads((e.model_dir / "embedder.json").read_text()).get("dtype")
        if e.kind == "gpu" and dtype == "int8":
            raise DeploymentError(
                f"embedder.model_dir {e.model_dir} is an int8 CPU build; a GPU embedder takes an fp16 or fp32 build "
                "(python -m build_engines.e5 ... --fp16, or EmbeddingGemma with ALBERT_EMBEDDING_PRECISION=fp32)"
            )
        if e.kind == "cpu" and dtype == "float16":
            raise DeploymentError(f'embedder.model_dir {e.model_dir} is an fp16 GPU build; use it with kind = "gpu"')
        return self

    def _check_gpu(self) -> None:
        g, t = self.generator, self.trtllm
        if g.dtype not in GPU_DTYPES:
            raise DeploymentError(
                f"profile {self.profile} takes generator.dtype in {', '.join(GPU_DTYPES)}, got {g.dtype!r}"
            )
        if not (g.checkpoint / "config.json").is_file():
            raise DeploymentError(
                f"generator.checkpoint {g.checkpoint} is not a Hugging Face checkpoint (no config.json)"
            )
        if not (g.checkpoint / "tokenizer.json").is_file():
            raise DeploymentError(
                f"generator.checkpoint {g.checkpoint} has no tokenizer.json (the gateway formats and counts "
                "prompts with the checkpoint's tokenizer and chat template)"
            )
        if t is None:
            raise DeploymentError(
                f"profile {self.profile} needs a [trtllm] section (all_models = the checkout's models)"
            )
        if t.max_num_tokens < 1 or t.max_queue_delay_us < 0:
            raise DeploymentError("trtllm.max_num_tokens must be at least 1 and trtllm.max_queue_delay_us not negative")
        if not t.chunked_context and t.max_num_tokens < g.max_input_len:
            raise DeploymentError(
                f"trtllm.max_num_tokens ({t.max_num_tokens}) is below generator.max_input_len ({g.max_input_len}): "
                "a long prompt could never be scheduled; raise it or set trtllm.chunked_context = true"
            )
        needed = [TRTLLM_MODEL_FILES[self.profile]] if self.profile == "trtllm-llmapi" else []
        if self.profile == "trtllm-engine":
            needed = [TRTLLM_MODEL_FILES["preprocessing"], TRTLLM_MODEL_FILES["postprocessing"]]
            if t.engine_dir is None:
                raise DeploymentError("profile trtllm-engine needs trtllm.engine_dir (where `build` writes the engine)")
        for relative in needed:
            if not (t.all_models / relative).is_file():
                raise DeploymentError(
                    f"trtllm.all_models {t.all_models} has no {relative}: point it at triton_backend/all_models of "
                    "the TensorRT-LLM checkout that matches the container"
                )
        if self.profile == "trtllm-llmapi":
            if g.dtype == "int8":
                raise DeploymentError("profile trtllm-llmapi serves bf16 or a pre-quantised fp8 checkpoint, not int8")
            if g.instances != 1:
                raise DeploymentError("profile trtllm-llmapi runs one model instance (generator.instances = 1)")
            if g.dtype == "fp8" and not _is_fp8_checkpoint(g.checkpoint):
                raise DeploymentError(
                    f"generator.dtype is fp8 but {g.checkpoint} is not an FP8 checkpoint (no hf_quant_config.json "
                    "or quantization_config): quantise it with ModelOpt first, or use profile trtllm-engine"
                )


def _is_fp8_checkpoint(checkpoint: Path) -> bool:
    if (checkpoint / "hf_quant_config.json").is_file():
        return True
    config = json.loads((checkpoint / "config.json").read_text())
    return "fp8" in json.dumps(config.get("quantization_config", {})).lower()


def load_deployment(path: Path) -> Deployment:
    """Read, type-check and consistency-check a deployment file."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentError(f"{path}: not valid TOML: {exc}") from exc
    try:
        deployment = msgspec.convert(raw, Deployment, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$.", "`")
        raise DeploymentError(f"{path}: {message}") from exc
    try:
        return deployment.check()
    except DeploymentError as exc:
        raise DeploymentError(f"{path}: {exc}") from exc


def _decode(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value).expanduser()
    raise NotImplementedError


def embedding_dim(deployment: Deployment) -> int:
    return int(json.loads((deployment.embedder.model_dir / "embedder.json").read_text())["dim"])
