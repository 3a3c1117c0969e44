"""The trtllm-engine build, with stand-ins for TensorRT-LLM's tools (this machine has no GPU): which commands
run with which flags, the engine swapped in only when every step passed, the manifest, failures reported
with the tool's own output, and the rendered repository on the built engine."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from build_engines.deployment import load_deployment
from build_engines.profiles import plan
from build_engines.repository import render_repository
from build_engines.trtllm_build import EngineBuildError, build_engine
from tests.support.profiles import fake_checkout

# Records its arguments, then writes what the real tool writes (enough of it for the next step).
TOOL = """#!{python}
import json, pathlib, sys
args = sys.argv[1:]
record = pathlib.Path({record!r})
with record.open("a") as f:
    f.write(json.dumps([pathlib.Path(sys.argv[0]).name, *args]) + "\\n")
if {fail!r} and pathlib.Path(sys.argv[0]).name == {fail!r}:
    print("error: out of memory while building", file=sys.stderr)
    sys.exit(3)
out = pathlib.Path(args[args.index("--output_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "config.json").write_text("{{}}")
if "--workers" in args:
    for rank in range(int(args[args.index("--workers") + 1])):
        (out / f"rank{{rank}}.engine").write_bytes(b"plan")
"""


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake examples/ scripts and a fake trtllm-build on PATH; returns the record of their calls."""
    return _install_tools(tmp_path, monkeypatch, fail="")


def _install_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str) -> Path:
    record = tmp_path / "calls.jsonl"
    record.unlink(missing_ok=True)
    script = TOOL.format(python=sys.executable, record=str(record), fail=fail)
    examples = tmp_path / "examples"
    bin_dir = tmp_path / "bin"
    for path in (
        examples / "models" / "core" / "qwen" / "convert_checkpoint.py",
        examples / "quantization" / "quantize.py",
        bin_dir / "trtllm-build",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return record


def _deployment_file(tmp_path: Path, dtype: str, tp: int = 2) -> Path:
    hf, e5 = tmp_path / "hf", tmp_path / "e5"
    for directory in (hf, e5):
        directory.mkdir(exist_ok=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (hf / "tokenizer.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"weights")
    (e5 / "embedder.json").write_text(json.dumps({"dim": 384, "max_length": 512, "dtype": "float16"}))
    (e5 / "model.onnx").write_bytes(b"onnx")
    all_models = tmp_path / "all_models"
    if not all_models.exists():
        fake_checkout(tmp_path)
    path = tmp_path / "deploy.toml"
    path.write_text(
        f'profile = "trtllm-engine"\n[generator]\ncheckpoint = "{hf}"\ndtype = "{dtype}"\n'
        f"tensor_parallel = {tp}\nmax_input_len = 4096\nmax_output_len = 1024\nmax_batch_size = 64\n"
        f'[embedder]\nmodel_dir = "{e5}"\nkind = "gpu"\n'
        f'[trtllm]\nall_models = "{all_models}"\nexamples = "{tmp_path / "examples"}"\n'
        f'engine_dir = "{tmp_path / "engines" / "albert"}"\n'
    )
    return path


def _calls(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_bf16_build_runs_convert_then_trtllm_build(tmp_path: Path, tools: Path) -> None:
    deployment = load_deployment(_deployment_file(tmp_path, "bf16"))
    messages: list[str] = []
    engine = build_engine(deployment, log=messages.append)
    convert, build = _calls(tools)
    assert convert[0] == "convert_checkpoint.py"
    assert convert[convert.index("--dtype") + 1] == "bfloat16" and convert[convert.index("--tp_size") + 1] == "2"
    assert "--use_weight_only" not in convert
    assert build[0] == "trtllm-build"
    flags = dict(zip(build[1::2], build[2::2], strict=False))
    assert flags["--kv_cache_type"] == "paged" and flags["--use_paged_context_fmha"] == "enable"
    assert flags["--max_seq_len"] == "5120" and flags["--max_batch_size"] == "64" and flags["--workers"] == "2"
    assert flags["--gemm_plugin"] == "auto"
    assert sorted(p.name for p in engine.iterdir()) == [
        "albert_build.json",
        "config.json",
        "rank0.engine",
        "rank1.engine",
    ]
    manifest = json.loads((engine / "albert_build.json").read_text())
    assert manifest["checkpoint_sha256"]["model.safetensors"] == hashlib.sha256(b"weights").hexdigest()
    assert manifest["settings"]["generator"]["dtype"] == "bf16" and len(manifest["commands"]) == 2
    assert [m for m in messages if m.startswith("[")] == [
        "[1/2] converting the checkpoint (bf16), tensor parallel 2",
        "[2/2] building the TensorRT engine (trtllm-build)",
    ]
    # The built engine is what the trtllm-engine repository serves.
    out = render_repository(tmp_path / "repo", plan(deployment))
    assert str(engine) in (out / "tensorrt_llm" / "config.pbtxt").read_text()


def test_fp8_and_int8_conversions(tmp_path: Path, tools: Path) -> None:
    build_engine(load_deployment(_deployment_file(tmp_path, "fp8", tp=1)), log=lambda _: None)
    quantize, build = _calls(tools)
    assert quantize[0] == "quantize.py"
    assert quantize[quantize.index("--qformat") + 1] == "fp8"
    assert quantize[quantize.index("--kv_cache_dtype") + 1] == "fp8"
    assert "--gemm_plugin" not in build
    tools.unlink()
    build_engine(load_deployment(_deployment_file(tmp_path, "int8", tp=1)), log=lambda _: None)
    convert, _ = _calls(tools)
    assert convert[convert.index("--weight_only_precision") + 1] == "int8"


def test_a_failed_step_keeps_the_previous_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_tools(tmp_path, monkeypatch, fail="")
    deployment = load_deployment(_deployment_file(tmp_path, "bf16"))
    engine = build_engine(deployment, log=lambda _: None)
    before = (engine / "albert_build.json").read_text()
    _install_tools(tmp_path, monkeypatch, fail="trtllm-build")
    with pytest.raises(EngineBuildError, match=r"step 2 \(building the TensorRT engine") as error:
        build_engine(deployment, log=lambda _: None)
    assert "out of memory while building" in str(error.value)
    assert (engine / "albert_build.json").read_text() == before
    assert not engine.with_name("albert.building").exists()


def test_steps_run_through_the_launcher(tmp_path: Path, tools: Path) -> None:
    """trtllm.launcher: the steps run where TensorRT-LLM is (e.g. docker exec into its container)."""
    launcher = tmp_path / "bin" / "in-container"
    launcher.write_text(f'#!/bin/sh\necho launched >> "{tmp_path / "launches"}"\nexec "$@"\n')
    launcher.chmod(0o755)
    path = _deployment_file(tmp_path, "bf16", tp=1)
    path.write_text(path.read_text() + f'launcher = ["{launcher}"]\n')
    build_engine(load_deployment(path), log=lambda _: None)
    assert (tmp_path / "launches").read_text().split() == ["launched", "launched"]
    assert [call[0] for call in _calls(tools)] == ["convert_checkpoint.py", "trtllm-build"]


def test_dry_run_prints_the_commands(tmp_path: Path, tools: Path) -> None:
    path = _deployment_file(tmp_path, "bf16")
    result = subprocess.run(
        [sys.executable, "-m", "build_engines", "build", "--config", str(path), "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    output = " ".join(result.stderr.split())
    assert "[1/2] converting the checkpoint (bf16)" in output and "trtllm-build --checkpoint_dir" in output
    assert not tools.exists()  # nothing ran
    cpu = tmp_path / "cpu.toml"
    cpu.write_text(path.read_text().replace('"trtllm-engine"', '"trtllm-llmapi"'))
    result = subprocess.run(
        [sys.executable, "-m", "build_engines", "build", "--config", str(cpu)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1 and "has no engine to build" in result.stderr
