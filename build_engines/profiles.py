"""Deployment → repository plan, one function per profile (the templates live in model_repository/).

- ``cpu``: model_repository/cpu — the embedder (EmbeddingGemma or e5, onnxruntime) and the int4 generator, both
  python-backend models.
- ``trtllm-engine``: model_repository/trtllm_engine — TensorRT-LLM 1.2.x in-flight batching
  (preprocessing → tensorrt_llm → postprocessing, joined by an ensemble the gateway calls).
- ``trtllm-llmapi``: model_repository/trtllm_llmapi — TensorRT-LLM's LLM-API model on an HF checkpoint.
- ``embedder.kind = "gpu"``: model_repository/embedder_gpu — an ensemble of a CPU tokenizer (python backend)
  and the ONNX encoder (e5 in fp16, EmbeddingGemma in fp32) on Triton's onnxruntime backend, under the same
  tensor names as the CPU model.

The interface the gateway reads (contract/model_interface.py) is written here, next to the values the
templates are rendered with, so a tensor is named once per profile and checked against the rendered
configs (build_engines/repository.py). TensorRT-LLM's python models (their ``1/model.py``) come from the
checkout named by ``trtllm.all_models``; our configs for them are compared with that checkout's own.
"""

from __future__ import annotations

import json
from typing import Literal

from build_engines.deployment import TRTLLM_MODEL_FILES, Deployment, embedding_dim
from build_engines.repository import ModelSpec, RepositoryPlan
from contract.model_interface import (
    EmbedderInterface,
    GeneratorInputs,
    GeneratorInterface,
    GeneratorOutputs,
    ModelInterface,
)

__all__ = ["plan"]

# TensorRT-LLM's tensor names, as the gateway uses them: its ensemble's (which the CPU model mirrors) and its
# LLM-API model's.
_ENSEMBLE_INPUTS = GeneratorInputs(
    text="text_input",
    max_tokens="max_tokens",
    temperature="temperature",
    top_p="top_p",
    stop_words="stop_words",
    stream="stream",
)
_LLMAPI_INPUTS = GeneratorInputs(
    text="text_input",
    max_tokens="sampling_param_max_tokens",
    temperature="sampling_param_temperature",
    top_p="sampling_param_top_p",
    stop_words="sampling_param_stop",
    stream="streaming",
)
# The LLM-API model returns the prompt's text too unless told, and the finish reason only when asked.
_LLMAPI_FLAGS = {"sampling_param_exclude_input_from_output": True, "return_finish_reason": True}


def _embedder(deployment: Deployment) -> tuple[list[ModelSpec], EmbedderInterface]:
    e = deployment.embedder
    dim = embedding_dim(deployment)
    if not (e.model_dir / "model.onnx").is_file():
        raise FileNotFoundError(f"embedding model {e.model_dir / 'model.onnx'} is not built")
    interface = EmbedderInterface(
        model=e.name,
        text_input="text",
        kind_input="kind",
        output="embedding",
        dim=dim,
        max_batch_size=e.max_batch_size,
        instances=e.instances,
    )
    common = {"max_batch_size": e.max_batch_size, "queue_delay_us": e.queue_delay_us, "instances": e.instances}
    if e.kind == "cpu":
        if e.query_model_dir is not None and not (e.query_model_dir / "model.onnx").is_file():
            raise FileNotFoundError(f"query tower {e.query_model_dir / 'model.onnx'} is not built")
        values = {"model_name": e.name, "model_dir": e.model_dir, "model_file": "model.onnx", "dim": dim}
        values["query_model_dir"] = e.query_model_dir or ""
        return [ModelSpec("cpu/embedder", e.name, {**values, **common, "intra_op_threads": e.threads})], interface
    tokenize, encoder = f"{e.name}_tokenize", f"{e.name}_onnx"
    max_length = int(json.loads((e.model_dir / "embedder.json").read_text())["max_length"])
    models = [
        ModelSpec(
            "embedder_gpu/tokenize",
            tokenize,
            {"model_name": tokenize, "model_dir": e.model_dir, "max_length": max_length, **common},
        ),
        ModelSpec(
            "embedder_gpu/onnx",
            encoder,
            {"model_name": encoder, "dim": dim, "optimization": _onnx_optimization(deployment), **common},
            files={"1/model.onnx": e.model_dir / "model.onnx"},
        ),
        ModelSpec(
            "embedder_gpu/embedder",
            e.name,
            {
                "model_name": e.name,
                "max_batch_size": e.max_batch_size,
                "dim": dim,
                "tokenize_model": tokenize,
                "encoder_model": encoder,
            },
        ),
    ]
    return models, interface


def _onnx_optimization(deployment: Deployment) -> str:
    """The onnxruntime backend's execution-provider block: TensorRT in fp16 with its engines cached next to
    the model (first load builds them: minutes), or plain CUDA (no block: the default on KIND_GPU)."""
    if deployment.embedder.accelerator == "cuda":
        return "# CUDA execution provider (the default for KIND_GPU instances)."
    cache = deployment.embedder.model_dir / "trt-cache"
    # fp16 engines for an fp16 build (e5); an fp32 build (EmbeddingGemma, whose activations overflow fp16)
    # keeps fp32.
    dtype = json.loads((deployment.embedder.model_dir / "embedder.json").read_text()).get("dtype")
    parameters = {
        "precision_mode": "FP16" if dtype == "float16" else "FP32",
        "max_workspace_size_bytes": str(2 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache),
    }
    lines = "\n".join(f'        parameters {{ key: "{k}" value: "{v}" }}' for k, v in parameters.items())
    return (
        "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n"
        f'        name: "tensorrt"\n{lines}\n      }}\n    ]\n  }}\n}}'
    )


def _generator_interface(
    deployment: Deployment, *, model: str, batched: bool, text_mode: Literal["delta", "cumulative"], **fields: object
) -> GeneratorInterface:
    g = deployment.generator
    return GeneratorInterface(
        model=model,
        served_model_name=deployment.served_model_name,
        batched=batched,
        streaming=g.streaming,
        text_mode=text_mode,
        tokenizer_dir=g.checkpoint,
        max_input_tokens=g.max_input_len,
        max_output_tokens=g.max_output_len,
        max_concurrency=g.max_batch_size * g.instances,
        **fields,  # type: ignore[arg-type]
    )


def _cpu(deployment: Deployment) -> RepositoryPlan:
    g = deployment.generator
    embedder_models, embedder = _embedder(deployment)
    generator = ModelSpec(
        "cpu/generator",
        g.name,
        {
            "model_name": g.name,
            "model_dir": g.checkpoint,
            "served_model_name": deployment.served_model_name,
            "workers": g.max_batch_size,
            "max_queue": g.max_queue,
            "max_input_tokens": g.max_input_len,
            "max_output_tokens": g.max_output_len,
        },
    )
    interface = _generator_interface(
        deployment,
        model=g.name,
        batched=False,
        text_mode="delta",
        inputs=_ENSEMBLE_INPUTS,
        outputs=GeneratorOutputs(
            text="text_output",
            finish_reason="finish_reason",
            prompt_tokens="prompt_tokens",
            completion_tokens="completion_tokens",
        ),
    )
    return RepositoryPlan(
        models=(*embedder_models, generator),
        interface=ModelInterface(profile="cpu", generator=interface, embedder=embedder),
    )


def _trtllm_engine(deployment: Deployment) -> RepositoryPlan:
    g, t = deployment.generator, deployment.trtllm
    assert t is not None and t.engine_dir is not None  # Deployment.check
    ranks = [t.engine_dir / f"rank{r}.engine" for r in range(g.tensor_parallel)]
    if not (t.engine_dir / "config.json").is_file() or not all(rank.is_file() for rank in ranks):
        raise FileNotFoundError(
            f"trtllm.engine_dir {t.engine_dir} holds no engine for tensor parallel {g.tensor_parallel} "
            "(config.json, rank0.engine, …): run `python -m build_engines build --config FILE`"
        )
    upstream = t.all_models / "inflight_batcher_llm"
    names = {"preprocessing": "preprocessing", "engine": "tensorrt_llm", "postprocessing": "postprocessing"}
    cpu_side = {"max_batch_size": g.max_batch_size, "instances": g.instances, "tokenizer_dir": g.checkpoint}
    models = [
        ModelSpec(
            "trtllm_engine/preprocessing",
            names["preprocessing"],
            {
                "model_name": names["preprocessing"],
                **cpu_side,
                "max_queue_delay_us": t.max_queue_delay_us,
                "engine_dir": t.engine_dir,
            },
            files={"1/model.py": t.all_models / TRTLLM_MODEL_FILES["preprocessing"]},
            upstream=upstream / "preprocessing" / "config.pbtxt",
            exact_outputs=True,
        ),
        ModelSpec(
            "trtllm_engine/tensorrt_llm",
            names["engine"],
            {
                "model_name": names["engine"],
                "max_batch_size": g.max_batch_size,
                "decoupled": g.decoupled,
                "max_queue_delay_us": t.max_queue_delay_us,
                "max_queue": g.max_queue,
                "engine_dir": t.engine_dir,
                "kv_cache_fraction": g.kv_cache_fraction,
                "kv_cache_reuse": t.kv_cache_reuse,
                "chunked_context": t.chunked_context,
            },
            upstream=upstream / "tensorrt_llm" / "config.pbtxt",
        ),
        ModelSpec(
            "trtllm_engine/postprocessing",
            names["postprocessing"],
            {"model_name": names["postprocessing"], **cpu_side},
            files={"1/model.py": t.all_models / TRTLLM_MODEL_FILES["postprocessing"]},
            upstream=upstream / "postprocessing" / "config.pbtxt",
            exact_outputs=True,
        ),
        ModelSpec(
            "trtllm_engine/ensemble",
            g.name,
            {
                "model_name": g.name,
                "max_batch_size": g.max_batch_size,
                "preprocessing_model": names["preprocessing"],
                "engine_model": names["engine"],
                "postprocessing_model": names["postprocessing"],
            },
            upstream=upstream / "ensemble" / "config.pbtxt",
        ),
    ]
    embedder_models, embedder = _embedder(deployment)
    interface = _generator_interface(
        deployment,
        model=g.name,
        batched=True,
        text_mode="delta",
        inputs=_ENSEMBLE_INPUTS,
        outputs=GeneratorOutputs(text="text_output"),
    )
    return RepositoryPlan(
        models=(*embedder_models, *models),
        interface=ModelInterface(profile=deployment.profile, generator=interface, embedder=embedder),
    )


def _trtllm_llmapi(deployment: Deployment) -> RepositoryPlan:
    g, t = deployment.generator, deployment.trtllm
    assert t is not None  # Deployment.check
    model = ModelSpec(
        "trtllm_llmapi/tensorrt_llm",
        g.name,
        {
            "model_name": g.name,
            "decoupled": g.decoupled,
            "checkpoint": g.checkpoint,
            "tensor_parallel": g.tensor_parallel,
            "max_batch_size": g.max_batch_size,
            "max_num_tokens": t.max_num_tokens,
            "max_seq_len": g.max_input_len + g.max_output_len,
            "chunked_context": t.chunked_context,
            "kv_cache_fraction": g.kv_cache_fraction,
            "kv_cache_reuse": t.kv_cache_reuse,
        },
        files={"1/model.py": t.all_models / TRTLLM_MODEL_FILES["trtllm-llmapi"]},
        upstream=t.all_models / "llmapi" / "tensorrt_llm" / "config.pbtxt",
    )
    embedder_models, embedder = _embedder(deployment)
    interface = _generator_interface(
        deployment,
        model=g.name,
        batched=False,
        text_mode="cumulative",
        flags=_LLMAPI_FLAGS,
        inputs=_LLMAPI_INPUTS,
        outputs=GeneratorOutputs(text="text_output", finish_reason="finish_reason"),
    )
    return RepositoryPlan(
        models=(*embedder_models, model),
        interface=ModelInterface(profile=deployment.profile, generator=interface, embedder=embedder),
    )


_PROFILES = {"cpu": _cpu, "trtllm-engine": _trtllm_engine, "trtllm-llmapi": _trtllm_llmapi}


def plan(deployment: Deployment) -> RepositoryPlan:
    """The models and interface of ``deployment`` (already checked)."""
    return _PROFILES[deployment.profile](deployment)
