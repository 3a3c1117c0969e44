"""The build environment: a separate virtualenv (``<cache>/build-venv``) with torch's CPU build and
transformers, for the build steps that need them (the generator's conversion, the EmbeddingGemma export,
the embedder's fine-tuning). The serving environment never imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from rich.progress import Progress

__all__ = ["BUILD_REQUIREMENTS", "Steps", "ensure_build_venv", "no_steps", "progress_steps", "run_step"]

Log = Callable[[str], None]
Steps = Callable[[str], AbstractContextManager[None]]
"""Shows a long step while it runs: ``with steps("what"): ...``."""


@contextmanager
def no_steps(_what: str) -> Iterator[None]:
    yield


def progress_steps(progress: Progress) -> Steps:
    """Each step as a bar of its own with its elapsed time (pulsing while it runs, full when done)."""

    @contextmanager
    def step(what: str) -> Iterator[None]:
        task = progress.add_task(what, total=None)
        try:
            yield
        finally:
            progress.update(task, total=1, completed=1)

    return step


# torch's CPU build comes from the machine's local wheel.
BUILD_REQUIREMENTS = (
    ("torch==2.13.0",),
    (
        "transformers==5.24.0",
        "gguf==0.19.0",
        "accelerate==1.15.0",
        "onnxruntime-genai==0.18.0",
        "onnx==1.23.2",
        "onnx-ir==1.1.0",
    ),
)


def run_step(cmd: list[str], log: Log, *, env: dict[str, str] | None = None, what: str, steps: Steps = no_steps) -> str:
    """Run one build step; on failure raise with the tail of its output. Returns its standard output."""
    started = time.perf_counter()
    with steps(what):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=3600)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{tail}")
    log(f"{what}: {time.perf_counter() - started:.0f} s")
    return result.stdout


def ensure_build_venv(venv: Path, log: Log, steps: Steps = no_steps) -> Path:
    """The build environment's python, created (or re-created when the requirements changed) first."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = json.dumps(BUILD_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"creating the build environment {venv} (torch CPU, transformers, onnxruntime-genai)")
    shutil.rmtree(venv, ignore_errors=True)
    run_step([sys.executable, "-m", "venv", str(venv)], log, what="venv", steps=steps)
    for group in BUILD_REQUIREMENTS:
        command = [str(python), "-m", "pip", "install", "-q", *group]
        run_step(command, log, what=f"build environment: pip install {' '.join(group)}", steps=steps)
    stamp.write_text(wanted)
    return python
