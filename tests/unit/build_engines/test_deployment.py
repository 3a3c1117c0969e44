"""The deployment settings file: type checks, unknown keys, consistency rules, and the CPU rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from build_engines.cli import render
from build_engines.deployment import Deployment, DeploymentError, load_deployment
from build_engines.generator import GeneratorBuild
from build_engines.templates import parse_model_config
from config.settings import Settings


@pytest.fixture
def model_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    genai, hf, e5 = tmp_path / "genai", tmp_path / "hf", tmp_path / "e5"
    for directory in (genai, hf, e5):
        directory.mkdir()
    (genai / "genai_config.json").write_text("{}")
    (hf / "config.json").write_text("{}")
    (e5 / "embedder.json").write_text(json.dumps({"dim": 384}))
    (e5 / "model.onnx").write_bytes(b"onnx")
    return genai, hf, e5


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(text)
    return path


def _cpu(genai: Path, e5: Path, generator_extra: str = "", top_extra: str = "") -> str:
    batch = "" if "max_batch_size" in generator_extra else "max_batch_size = 3\n"
    return (
        f'{top_extra}profile = "cpu"\n\n[generator]\ncheckpoint = "{genai}"\n{batch}max_queue = 5\n'
        f'{generator_extra}\n[embedder]\nmodel_dir = "{e5}"\nmax_batch_size = 16\n'
    )


def test_a_cpu_deployment_renders_its_values(tmp_path: Path, model_dirs: tuple[Path, Path, Path]) -> None:
    genai, _, e5 = model_dirs
    deployment = load_deployment(_write(tmp_path, _cpu(genai, e5)))
    assert deployment.generator.max_batch_size == 3 and deployment.embedder.max_batch_size == 16
    out = render(Settings(cache_dir=tmp_path / "cache"), deployment, tmp_path / "repo")
    generator = parse_model_config((out / "generator" / "config.pbtxt").read_text())
    assert generator.parameters["workers"].string_value == "3"
    assert generator.parameters["max_queue"].string_value == "5"
    assert generator.parameters["model_dir"].string_value == str(genai)
    embedder = parse_model_config((out / "embedder" / "config.pbtxt").read_text())
    assert embedder.max_batch_size == 16


def test_a_query_tower_is_rendered_for_the_cpu_embedder_only(
    tmp_path: Path, model_dirs: tuple[Path, Path, Path]
) -> None:
    genai, _, e5 = model_dirs
    tower = tmp_path / "tower"
    text = _cpu(genai, e5) + f'query_model_dir = "{tower}"\n'
    with pytest.raises(FileNotFoundError, match="query tower"):
        render(Settings(cache_dir=tmp_path / "cache"), load_deployment(_write(tmp_path, text)), tmp_path / "repo")
    tower.mkdir()
    (tower / "model.onnx").write_bytes(b"onnx")
    out = render(Settings(cache_dir=tmp_path / "cache"), load_deployment(_write(tmp_path, text)), tmp_path / "repo")
    embedder = parse_model_config((out / "embedder" / "config.pbtxt").read_text())
    assert embedder.parameters["query_model_dir"].string_value == str(tower)
    plain = render(
        Settings(cache_dir=tmp_path / "c2"), load_deployment(_write(tmp_path, _cpu(genai, e5))), tmp_path / "r2"
    )
    assert (
        parse_model_config((plain / "embedder" / "config.pbtxt").read_text()).parameters["query_model_dir"].string_value
        == ""
    )
    with pytest.raises(DeploymentError, match="CPU embedder only"):
        load_deployment(_write(tmp_path, text + 'kind = "gpu"\n'))


def test_the_default_deployment_is_the_embedded_cpu_profile(settings: Settings) -> None:
    default = Deployment.default(settings)
    assert default.profile == "cpu" and default.generator.checkpoint == GeneratorBuild(settings.cache_dir).model_dir
    assert default.embedder.model_dir == settings.embedding_dir


@pytest.mark.parametrize(
    ("generator_extra", "top_extra", "message"),
    [
        ("colour = 'blue'\n", "", "unknown field `colour`"),
        ("max_batch_size = 'eight'\n", "", r"Expected `int`, got `str` - at `generator.max_batch_size`"),
        ("", "registry = 'x'\n", "unknown field `registry`"),
        ("streaming = true\ndecoupled = false\n", "", "streaming needs generator.decoupled"),
        ("dtype = 'fp8'\n", "", "the cpu profile serves an int4"),
        ("tensor_parallel = 2\n", "", "tensor_parallel must be 1"),
        ("kv_cache_fraction = 1.5\n", "", "kv_cache_fraction must be in"),
        ("instances = 0\n", "", "generator.instances must be at least 1"),
        ("name = 'embedder'\n", "", "both 'embedder'"),
    ],
)
def test_bad_settings_are_refused_with_the_key(
    tmp_path: Path, model_dirs: tuple[Path, Path, Path], generator_extra: str, top_extra: str, message: str
) -> None:
    genai, _, e5 = model_dirs
    with pytest.raises(DeploymentError, match=message):
        load_deployment(_write(tmp_path, _cpu(genai, e5, generator_extra, top_extra)))


def test_checkpoints_and_profiles(tmp_path: Path, model_dirs: tuple[Path, Path, Path]) -> None:
    genai, hf, e5 = model_dirs
    with pytest.raises(DeploymentError, match=r"holds no genai_config\.json"):
        load_deployment(_write(tmp_path, _cpu(tmp_path / "missing", e5)))
    gpu = (
        f'profile = "trtllm-llmapi"\n[generator]\ncheckpoint = "{hf}"\ndtype = "bf16"\n'
        f'[embedder]\nmodel_dir = "{e5}"\nkind = "gpu"\n'
    )
    with pytest.raises(DeploymentError, match=r"takes generator\.dtype in bf16, fp8, int8"):
        load_deployment(_write(tmp_path, gpu.replace('"bf16"', '"int4"')))
    with pytest.raises(DeploymentError, match="not a Hugging Face checkpoint"):
        load_deployment(_write(tmp_path, gpu.replace(str(hf), str(genai))))
    (hf / "tokenizer.json").write_text("{}")
    with pytest.raises(DeploymentError, match=r"needs a \[trtllm\] section"):
        load_deployment(_write(tmp_path, gpu))


def test_the_cli_reports_bad_files(tmp_path: Path) -> None:
    path = _write(tmp_path, "profile = \n")
    result = subprocess.run(
        [sys.executable, "-m", "build_engines", "render", "--config", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not valid TOML" in " ".join(result.stderr.split())
