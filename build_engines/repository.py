"""Render ``model_repository/`` (templates + python glue, in git) into the repository Triton serves.

The rendered copy lives in the cache with absolute paths to the built model files; git holds configs and
code only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, fields
from pathlib import Path

from build_engines.templates import parse_model_config, render

__all__ = ["SOURCE_REPOSITORY", "EmbedderConfig", "GeneratorConfig", "render_cpu_repository"]

SOURCE_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"


def _template_values(config: EmbedderConfig | GeneratorConfig) -> dict[str, object]:
    """The template's ``${…}`` values: the dataclass fields, paths as strings (``render`` refuses a
    missing or an unknown key, so names cannot drift apart)."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    return {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}


@dataclass(frozen=True, slots=True)
class EmbedderConfig:
    model_dir: Path
    model_file: str = "model.onnx"
    model_name: str = "e5_embedder"
    dim: int = 384
    max_batch_size: int = 64
    queue_delay_us: int = 2000
    instances: int = 1
    intra_op_threads: int = 2

    def values(self) -> dict[str, object]:
        return _template_values(self)


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    model_dir: Path
    model_name: str = "generator"
    served_model_name: str = "qwen2.5-coder-0.5b-instruct-int4-cpu"
    workers: int = 2
    max_queue: int = 16
    max_input_tokens: int = 4096
    max_output_tokens: int = 1024

    def values(self) -> dict[str, object]:
        if self.workers < 1 or self.max_queue < 1:
            raise ValueError("the generator needs at least one worker and a queue of at least one request")
        return _template_values(self)


def _render_model(source: Path, target: Path, values: dict[str, object]) -> None:
    template = source / "config.pbtxt.in"
    text = render(template.read_text(), values, name=str(template))
    config = parse_model_config(text, name=str(template))
    if config.name != target.name:
        raise ValueError(f"{template}: renders model name {config.name!r} into directory {target.name!r}")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("config.pbtxt.in", "__pycache__"))
    (target / "config.pbtxt").write_text(text)


def render_cpu_repository(out: Path, embedder: EmbedderConfig, generator: GeneratorConfig) -> Path:
    """Write the CPU-profile repository to ``out`` (replaced atomically) and return it."""
    if not (embedder.model_dir / embedder.model_file).exists():
        raise FileNotFoundError(f"embedding model {embedder.model_dir / embedder.model_file} is not built")
    if not (generator.model_dir / "genai_config.json").exists():
        raise FileNotFoundError(f"generator {generator.model_dir} is not built")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _render_model(SOURCE_REPOSITORY / "e5_embedder", tmp / embedder.model_name, embedder.values())
    _render_model(SOURCE_REPOSITORY / "generator", tmp / generator.model_name, generator.values())
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
