"""The deployment cases the rendered repositories are checked with: a fake checkout, the directories a
deployment names, the deployment file of each profile."""

from __future__ import annotations

import json
from pathlib import Path

from build_engines.deployment import Deployment, load_deployment
from build_engines.repository import SOURCE_REPOSITORY


def fake_checkout(root: Path) -> Path:
    """A stand-in for TensorRT-LLM's triton_backend/all_models: model.py files, and config templates with
    ``${…}`` placeholders declaring our tensors plus an optional one of theirs we do not use."""
    all_models = root / "all_models"
    pairs = {
        "inflight_batcher_llm/preprocessing": "trtllm_engine/preprocessing",
        "inflight_batcher_llm/postprocessing": "trtllm_engine/postprocessing",
        "inflight_batcher_llm/tensorrt_llm": "trtllm_engine/tensorrt_llm",
        "inflight_batcher_llm/ensemble": "trtllm_engine/ensemble",
        "llmapi/tensorrt_llm": "trtllm_llmapi/tensorrt_llm",
    }
    for upstream, ours in pairs.items():
        directory = all_models / upstream
        (directory / "1").mkdir(parents=True)
        (directory / "1" / "model.py").write_text(f"# stand-in for TensorRT-LLM's {upstream} model\n")
        text = (SOURCE_REPOSITORY / ours / "config.pbtxt.in").read_text()
        extra = '  { name: "their_extra", data_type: ${logits_datatype}, dims: [ 1 ], optional: true },\n'
        (directory / "config.pbtxt").write_text(text.replace("input [\n", "input [\n" + extra, 1))
    return all_models


def make_dirs(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for what a deployment points at: checkpoints, e5 builds, an engine, a TensorRT-LLM checkout."""
    out = {name: tmp_path / name for name in ("genai", "hf", "hf_fp8", "e5_int8", "e5_fp16", "engine")}
    for directory in out.values():
        directory.mkdir()
    (out["genai"] / "genai_config.json").write_text("{}")
    for hf in (out["hf"], out["hf_fp8"]):
        (hf / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
        (hf / "tokenizer.json").write_text("{}")
    (out["hf_fp8"] / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "FP8"}}))
    for e5, dtype in ((out["e5_int8"], "int8"), (out["e5_fp16"], "float16")):
        (e5 / "embedder.json").write_text(json.dumps({"dim": 384, "max_length": 512, "dtype": dtype}))
        (e5 / "model.onnx").write_bytes(b"onnx")
    for name in ("config.json", "rank0.engine", "rank1.engine"):
        (out["engine"] / name).write_text("{}")
    out["all_models"] = fake_checkout(tmp_path)
    return out


CASES = {
    "cpu": """
        profile = "cpu"
        [generator]
        checkpoint = "<ROOT>/genai"
        max_batch_size = 2
        max_output_len = 1024
        [embedder]
        model_dir = "<ROOT>/e5_int8"
    """,
    "cpu-renamed-no-streaming": """
        profile = "cpu"
        [generator]
        checkpoint = "<ROOT>/genai"
        name = "writer"
        served_model_name = "albert-cpu"
        streaming = false
        max_batch_size = 1
        max_queue = 4
        [embedder]
        model_dir = "<ROOT>/e5_int8"
        name = "encoder"
        max_batch_size = 16
        queue_delay_us = 500
        threads = 4
    """,
    "trtllm-engine-fp8-tp2": """
        profile = "trtllm-engine"
        [generator]
        checkpoint = "<ROOT>/hf"
        served_model_name = "albert-8b-fp8"
        dtype = "fp8"
        tensor_parallel = 2
        max_input_len = 4096
        max_output_len = 1024
        max_batch_size = 64
        kv_cache_fraction = 0.85
        instances = 2
        max_queue = 256
        [embedder]
        model_dir = "<ROOT>/e5_fp16"
        kind = "gpu"
        max_batch_size = 256
        queue_delay_us = 1000
        [trtllm]
        all_models = "<ROOT>/all_models"
        engine_dir = "<ROOT>/engine"
        max_num_tokens = 8192
    """,
    "trtllm-llmapi-bf16": """
        profile = "trtllm-llmapi"
        [generator]
        checkpoint = "<ROOT>/hf"
        dtype = "bf16"
        max_batch_size = 32
        [embedder]
        model_dir = "<ROOT>/e5_fp16"
        kind = "gpu"
        accelerator = "cuda"
        [trtllm]
        all_models = "<ROOT>/all_models"
        kv_cache_reuse = false
        chunked_context = false
    """,
}


def load_case(tmp_path: Path, text: str) -> Deployment:
    path = tmp_path / "deploy.toml"
    path.write_text("\n".join(line.strip() for line in text.replace("<ROOT>", str(tmp_path)).splitlines()))
    return load_deployment(path)
