"""``python -m build_engines build``: the TensorRT engine of a trtllm-engine deployment (TensorRT-LLM 1.2.x).

Runs inside the TensorRT-LLM container (or next to the matching wheel), on the GPU host:

1. checkpoint conversion into TensorRT-LLM's format — ``examples/models/core/<family>/convert_checkpoint.py``
   (bf16; int8 = weight-only int8) or ``examples/quantization/quantize.py`` (fp8 weights and KV cache,
   ModelOpt calibration);
2. ``trtllm-build`` with a paged KV cache and paged context FMHA (what KV-cache reuse and chunked context
   need), the deployment's batch and length limits, one engine per tensor-parallel rank;
3. ``albert_build.json`` in the engine directory: what was built from what (checkpoint file hashes),
   with which settings and commands, and how long each step took.

The engine is written beside its destination and renamed into place when every step passed; each step's
output goes to ``<engine_dir>.build.log`` and its tail is shown when it fails. ``--dry-run`` prints the
commands only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from build_engines.deployment import Deployment, DeploymentError
from build_engines.fetch import sha256_file

__all__ = ["BuildStep", "EngineBuildError", "build_engine", "engine_steps"]

# HF model_type -> the examples/models/core/<dir> whose convert_checkpoint.py handles it.
FAMILIES = {"qwen2": "qwen", "qwen": "qwen", "llama": "llama", "mistral": "llama"}
_CONVERT_DTYPE = "bfloat16"


class EngineBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildStep:
    title: str
    command: list[str]


def _family(checkpoint: Path) -> str:
    model_type = json.loads((checkpoint / "config.json").read_text()).get("model_type", "")
    if model_type not in FAMILIES:
        raise DeploymentError(
            f"generator.checkpoint is a {model_type!r} model; the engine build knows {', '.join(sorted(FAMILIES))} "
            "(other families: use profile trtllm-llmapi)"
        )
    return FAMILIES[model_type]


def engine_steps(deployment: Deployment, work: Path, engine_out: Path) -> list[BuildStep]:
    """The commands that turn the checkpoint into an engine in ``engine_out`` (``work`` holds the converted
    checkpoint)."""
    g, t = deployment.generator, deployment.trtllm
    if deployment.profile != "trtllm-engine" or t is None:
        raise DeploymentError(f"profile {deployment.profile} has no engine to build (only trtllm-engine has)")
    if t.examples is None:
        raise DeploymentError("the engine build needs trtllm.examples (the checkout's examples/ directory)")
    converted = work / "checkpoint"
    python = [*t.launcher, "python3"]
    if g.dtype == "fp8":
        script = t.examples / "quantization" / "quantize.py"
        convert = [
            *python, str(script), "--model_dir", str(g.checkpoint), "--output_dir", str(converted),
            "--dtype", _CONVERT_DTYPE, "--qformat", "fp8", "--kv_cache_dtype", "fp8", "--calib_size", "512",
            "--tp_size", str(g.tensor_parallel),
        ]  # fmt: skip
        title = "quantising to fp8 (ModelOpt calibration, fp8 KV cache)"
    else:
        script = t.examples / "models" / "core" / _family(g.checkpoint) / "convert_checkpoint.py"
        convert = [
            *python, str(script), "--model_dir", str(g.checkpoint), "--output_dir", str(converted),
            "--dtype", _CONVERT_DTYPE, "--tp_size", str(g.tensor_parallel),
        ]  # fmt: skip
        if g.dtype == "int8":
            convert += ["--use_weight_only", "--weight_only_precision", "int8"]
        title = f"converting the checkpoint ({g.dtype}{', weight-only' if g.dtype == 'int8' else ''})"
    if not script.is_file():
        raise DeploymentError(f"trtllm.examples {t.examples} has no {script.relative_to(t.examples)}")
    build = [
        *t.launcher, "trtllm-build", "--checkpoint_dir", str(converted), "--output_dir", str(engine_out),
        "--max_batch_size", str(g.max_batch_size), "--max_input_len", str(g.max_input_len),
        "--max_seq_len", str(g.max_input_len + g.max_output_len), "--max_num_tokens", str(t.max_num_tokens),
        "--kv_cache_type", "paged", "--use_paged_context_fmha", "enable", "--remove_input_padding", "enable",
        "--workers", str(g.tensor_parallel),
    ]  # fmt: skip
    if g.dtype == "bf16":
        build += ["--gemm_plugin", "auto"]
    return [
        BuildStep(f"{title}, tensor parallel {g.tensor_parallel}", convert),
        BuildStep("building the TensorRT engine (trtllm-build)", build),
    ]


def _checkpoint_record(checkpoint: Path) -> dict[str, str]:
    names = sorted(p.name for p in checkpoint.iterdir() if p.suffix in (".json", ".safetensors", ".jinja"))
    return {name: sha256_file(checkpoint / name) for name in names}


def build_engine(deployment: Deployment, *, dry_run: bool = False, log: Callable[[str], None] = print) -> Path:
    """Build the engine of ``deployment`` into ``trtllm.engine_dir``; return it."""
    t = deployment.trtllm
    if t is None or t.engine_dir is None:
        raise DeploymentError("the engine build needs [trtllm] engine_dir")
    engine_dir = t.engine_dir
    staging = engine_dir.with_name(engine_dir.name + ".building")
    steps = engine_steps(deployment, staging / "work", staging / "engine")
    if dry_run:
        for n, step in enumerate(steps, 1):
            log(f"[{n}/{len(steps)}] {step.title}\n    {shlex.join(step.command)}")
        return engine_dir
    tool = t.launcher[0] if t.launcher else "trtllm-build"
    if shutil.which(tool) is None:
        raise EngineBuildError(
            f"{tool} is not on PATH: run the build inside the TensorRT-LLM container, or set trtllm.launcher "
            "to a command that runs there"
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log_path = engine_dir.with_name(engine_dir.name + ".build.log")
    timings: dict[str, float] = {}
    try:
        with log_path.open("w") as build_log:
            for n, step in enumerate(steps, 1):
                log(f"[{n}/{len(steps)}] {step.title}")
                build_log.write(f"$ {shlex.join(step.command)}\n")
                build_log.flush()
                started = time.perf_counter()
                result = subprocess.run(step.command, stdout=build_log, stderr=subprocess.STDOUT, check=False)
                timings[step.title] = round(time.perf_counter() - started, 1)
                if result.returncode != 0:
                    build_log.flush()
                    tail = "\n".join(log_path.read_text().splitlines()[-20:])
                    raise EngineBuildError(
                        f"step {n} ({step.title}) failed with exit code {result.returncode}; "
                        f"last lines of {log_path}:\n{tail}"
                    )
                log(f"      done in {timings[step.title]:.0f} s")
        built = staging / "engine"
        missing = [f"rank{r}.engine" for r in range(deployment.generator.tensor_parallel)]
        missing = [name for name in missing if not (built / name).is_file()]
        if missing or not (built / "config.json").is_file():
            raise EngineBuildError(f"trtllm-build finished but {built} lacks {', '.join(missing) or 'config.json'}")
        manifest = {
            "profile": deployment.profile,
            "checkpoint": str(deployment.generator.checkpoint),
            "checkpoint_sha256": _checkpoint_record(deployment.generator.checkpoint),
            "settings": {
                "generator": msgspec.to_builtins(deployment.generator, enc_hook=str),
                "trtllm": msgspec.to_builtins(t, enc_hook=str),
            },
            "commands": [step.command for step in steps],
            "seconds": timings,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (built / "albert_build.json").write_text(json.dumps(manifest, indent=2) + "\n")
        old = engine_dir.with_name(engine_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if engine_dir.exists():
            os.rename(engine_dir, old)
        os.rename(built, engine_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"engine ready: {engine_dir} (log: {log_path})")
    return engine_dir
