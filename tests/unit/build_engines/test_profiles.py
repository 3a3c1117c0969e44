"""Every profile's rendered repository: golden files, Triton's ModelConfig parse, the interface the gateway
reads, and the consistency checks (interface vs configs, ensembles, the TensorRT-LLM checkout's configs).

The golden files are under tests/golden/<case>/ with the temporary root written as <ROOT>; after an
intended change, regenerate them with ALBERT_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
import yaml

from build_engines.deployment import Deployment, DeploymentError
from build_engines.profiles import plan
from build_engines.repository import SOURCE_REPOSITORY, RepositoryError, render_repository
from build_engines.templates import parse_model_config
from contract.model_interface import INTERFACE_FILE, load_interface
from tests.support.paths import GOLDEN
from tests.support.profiles import CASES, load_case, make_dirs

TEXT_FILES = ("config.pbtxt", "model.yaml", INTERFACE_FILE)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return make_dirs(tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_repository_matches_golden(tmp_path: Path, dirs: dict[str, Path], case: str) -> None:
    out = render_repository(tmp_path / "repo", plan(load_case(tmp_path, CASES[case])))
    rendered = {
        str(p.relative_to(out)): p.read_text().replace(str(tmp_path), "<ROOT>")
        for p in sorted(out.rglob("*"))
        if p.name in TEXT_FILES
    }
    for relative, text in rendered.items():
        if relative.endswith("config.pbtxt"):
            parse_model_config(text)  # also done by the render; here on the golden text itself
        if relative.endswith(".yaml"):
            yaml.safe_load(text)
    golden = GOLDEN / case
    if os.environ.get("ALBERT_UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        for relative, text in rendered.items():
            (golden / relative).parent.mkdir(parents=True, exist_ok=True)
            (golden / relative).write_text(text)
    expected = {str(p.relative_to(golden)): p.read_text() for p in sorted(golden.rglob("*")) if p.is_file()}
    assert sorted(rendered) == sorted(expected)
    for relative, text in rendered.items():
        assert text == expected[relative], f"{case}/{relative} differs from its golden file"


def test_gpu_profiles_copy_the_checkout_models_and_the_fp16_encoder(tmp_path: Path, dirs: dict[str, Path]) -> None:
    out = render_repository(tmp_path / "repo", plan(load_case(tmp_path, CASES["trtllm-engine-fp8-tp2"])))
    for model in ("preprocessing", "postprocessing"):
        assert "stand-in" in (out / model / "1" / "model.py").read_text()
    assert (out / "embedder_onnx" / "1" / "model.onnx").read_bytes() == b"onnx"
    assert not (out / "tensorrt_llm" / "1").exists()  # the C++ backend needs no model file
    interface = load_interface(out / INTERFACE_FILE)
    assert interface.profile == "trtllm-engine"
    assert interface.generator.model == "generator" and interface.generator.batched
    assert interface.generator.outputs.finish_reason is None and interface.generator.text_mode == "delta"
    engine = parse_model_config((out / "tensorrt_llm" / "config.pbtxt").read_text())
    assert engine.backend == "tensorrtllm" and engine.model_transaction_policy.decoupled
    assert engine.parameters["gpt_model_type"].string_value == "inflight_fused_batching"
    assert engine.parameters["enable_kv_cache_reuse"].string_value == "true"
    assert engine.parameters["enable_chunked_context"].string_value == "true"
    assert engine.dynamic_batching.default_queue_policy.max_queue_size == 256

    llmapi = render_repository(tmp_path / "repo2", plan(load_case(tmp_path, CASES["trtllm-llmapi-bf16"])))
    model_yaml = yaml.safe_load((llmapi / "generator" / "1" / "model.yaml").read_text())
    assert model_yaml["model"] == str(dirs["hf"]) and model_yaml["backend"] == "pytorch"
    assert model_yaml["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    assert model_yaml["kv_cache_config"] == {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": False}
    generator = load_interface(llmapi / INTERFACE_FILE).generator
    assert generator.text_mode == "cumulative" and generator.flags["return_finish_reason"] is True


def test_a_checkout_of_another_version_is_refused(tmp_path: Path, dirs: dict[str, Path]) -> None:
    config = dirs["all_models"] / "inflight_batcher_llm" / "preprocessing" / "config.pbtxt"
    config.write_text(config.read_text().replace('"OUT_END_ID"', '"END_ID_OUT"'))
    with pytest.raises(RepositoryError, match="output OUT_END_ID is not in the checkout's config") as error:
        render_repository(tmp_path / "repo", plan(load_case(tmp_path, CASES["trtllm-engine-fp8-tp2"])))
    assert "the checkout's model also produces output END_ID_OUT" in str(error.value)
    assert not (tmp_path / "repo").exists()  # nothing half-rendered is left where Triton would read it

    llmapi = dirs["all_models"] / "llmapi" / "tensorrt_llm" / "config.pbtxt"
    llmapi.write_text(llmapi.read_text().replace("TYPE_INT32", "TYPE_INT64"))
    with pytest.raises(RepositoryError, match="input sampling_param_max_tokens is TYPE_INT32 here, TYPE_INT64"):
        render_repository(tmp_path / "repo", plan(load_case(tmp_path, CASES["trtllm-llmapi-bf16"])))


def test_interface_that_does_not_fit_the_configs_is_refused(tmp_path: Path, dirs: dict[str, Path]) -> None:
    good = plan(load_case(tmp_path, CASES["cpu"]))
    generator = good.interface.generator

    def with_generator(**changes: object) -> object:
        return replace(good, interface=msgspec.structs.replace(good.interface, generator=generator_with(**changes)))

    def generator_with(**changes: object) -> object:
        return msgspec.structs.replace(generator, **changes)

    cases = [
        ({"inputs": msgspec.structs.replace(generator.inputs, text="prompt")}, "has no input 'prompt'"),
        (
            {"inputs": msgspec.structs.replace(generator.inputs, temperature="max_tokens")},
            "input 'max_tokens' is TYPE_INT32, the gateway uses TYPE_FP32",
        ),
        (
            {"inputs": msgspec.structs.replace(generator.inputs, max_tokens=None)},
            "requires input max_tokens, which the gateway does not send",
        ),
        ({"batched": True}, "max_batch_size 0 but the interface says batched=True"),
        ({"flags": {"return_finish_reason": True}}, "has no BOOL input 'return_finish_reason'"),
        ({"model": "nobody"}, "generator model 'nobody' is not in the repository"),
    ]
    render_repository(tmp_path / "ok", with_generator())  # type: ignore[arg-type]
    for changes, message in cases:
        with pytest.raises(RepositoryError, match=message):
            render_repository(tmp_path / "repo", with_generator(**changes))  # type: ignore[arg-type]


GPU_BASE = """
    profile = "trtllm-engine"
    [generator]
    checkpoint = "<ROOT>/hf"
    dtype = "bf16"
    [embedder]
    model_dir = "<ROOT>/e5_fp16"
    kind = "gpu"
    [trtllm]
    all_models = "<ROOT>/all_models"
    engine_dir = "<ROOT>/engine"
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[trtllm]\nall_models", "[other]\nall_models", "unknown field `other`"),
        ('engine_dir = "<ROOT>/engine"', "", "needs trtllm.engine_dir"),
        ('all_models = "<ROOT>/all_models"', 'all_models = "<ROOT>"', "has no inflight_batcher_llm/preprocessing"),
        (
            'engine_dir = "<ROOT>/engine"',
            'engine_dir = "<ROOT>/engine"\nchunked_context = false\nmax_num_tokens = 2048',
            r"max_num_tokens \(2048\) is below generator.max_input_len \(4096\)",
        ),
        ('model_dir = "<ROOT>/e5_fp16"', 'model_dir = "<ROOT>/e5_int8"', "is an int8 CPU build"),
        ('checkpoint = "<ROOT>/hf"', 'checkpoint = "<ROOT>/genai"', "not a Hugging Face checkpoint"),
        ('profile = "trtllm-engine"', 'profile = "trtllm-llmapi"\n', None),
        ('dtype = "bf16"', 'dtype = "fp8"\n', None),
    ],
)
def test_gpu_settings_rules(tmp_path: Path, dirs: dict[str, Path], old: str, new: str, message: str | None) -> None:
    text = "\n".join(line.strip() for line in GPU_BASE.strip().splitlines())
    assert old in text
    if message is None:
        load_case(tmp_path, text.replace(old, new)).check()
        return
    with pytest.raises(DeploymentError, match=message):
        load_case(tmp_path, text.replace(old, new))


def test_llmapi_rules(tmp_path: Path, dirs: dict[str, Path]) -> None:
    base = "\n".join(line.strip() for line in GPU_BASE.strip().splitlines()).replace("trtllm-engine", "trtllm-llmapi")
    with pytest.raises(DeploymentError, match="not int8"):
        load_case(tmp_path, base.replace('"bf16"', '"int8"'))
    with pytest.raises(DeploymentError, match="is not an FP8 checkpoint"):
        load_case(tmp_path, base.replace('"bf16"', '"fp8"'))
    assert (
        load_case(tmp_path, base.replace('"bf16"', '"fp8"').replace("<ROOT>/hf", "<ROOT>/hf_fp8")).generator.dtype
        == "fp8"
    )
    with pytest.raises(DeploymentError, match="one model instance"):
        load_case(tmp_path, base.replace('dtype = "bf16"', 'dtype = "bf16"\ninstances = 2'))
    (dirs["hf"] / "tokenizer.json").unlink()
    with pytest.raises(DeploymentError, match=r"has no tokenizer\.json"):
        load_case(tmp_path, base)


def test_the_guide_s_deployment_file_has_only_known_keys() -> None:
    """The example in build_engines/README.md, as platform teams will copy it (paths not checked here)."""
    readme = (SOURCE_REPOSITORY.parent / "build_engines" / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    deployment = msgspec.convert(tomllib.loads(block), Deployment, dec_hook=lambda _kind, value: Path(value))
    assert deployment.profile == "trtllm-engine" and deployment.trtllm is not None
    assert deployment.trtllm.launcher == ["docker", "exec", "trtllm"]
