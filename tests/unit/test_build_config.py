"""Template rendering, the rendered repository, settings and fetch verification."""

from __future__ import annotations

from pathlib import Path

import pytest

from build_engines.fetch import Artifact, FetchError, fetch
from build_engines.repository import EmbedderConfig, GeneratorConfig, render_cpu_repository
from build_engines.templates import TemplateError, parse_model_config, placeholders, render
from server.settings import Settings, SettingsError


def test_render_fails_on_missing_and_unknown_keys() -> None:
    assert render("a ${x} b ${y}", {"x": 1, "y": "z"}) == "a 1 b z"
    with pytest.raises(TemplateError, match="missing values for y"):
        render("${x} ${y}", {"x": 1})
    with pytest.raises(TemplateError, match="unknown keys zz"):
        render("${x}", {"x": 1, "zz": 2})
    with pytest.raises(TemplateError, match="stray"):
        render("${x} $y", {"x": 1})
    assert placeholders("${a}${b}${a}") == {"a", "b"}


def test_model_config_parse_rejects_invalid() -> None:
    with pytest.raises(TemplateError, match="not a valid Triton model config"):
        parse_model_config('name: "x"\nmax_batch_size: "lots"')
    with pytest.raises(TemplateError):
        parse_model_config('name: "x"\nno_such_field: 1')


def _generator_dir(tmp_path: Path) -> Path:
    generator_dir = tmp_path / "generator"
    generator_dir.mkdir()
    (generator_dir / "genai_config.json").write_text("{}")
    return generator_dir


def test_rendered_cpu_repository(tmp_path: Path) -> None:
    model_dir = tmp_path / "e5"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(b"onnx")
    generator_dir = _generator_dir(tmp_path)
    out = render_cpu_repository(
        tmp_path / "repo",
        EmbedderConfig(model_dir=model_dir, max_batch_size=32),
        GeneratorConfig(model_dir=generator_dir, workers=2, max_queue=4),
    )
    config = parse_model_config((out / "e5_embedder" / "config.pbtxt").read_text())
    assert config.name == "e5_embedder"
    assert config.backend == "python"
    assert config.max_batch_size == 32
    assert [i.name for i in config.input] == ["text", "kind"]
    assert [o.name for o in config.output] == ["embedding"]
    assert list(config.output[0].dims) == [384]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.parameters["model_dir"].string_value == str(model_dir)
    assert (out / "e5_embedder" / "1" / "model.py").exists()
    assert not (out / "e5_embedder" / "config.pbtxt.in").exists()

    generator = parse_model_config((out / "generator" / "config.pbtxt").read_text())
    assert generator.model_transaction_policy.decoupled
    assert generator.max_batch_size == 0
    # The TensorRT-LLM tensor names the gateway uses for every profile.
    assert [i.name for i in generator.input] == [
        "text_input",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_words",
        "stream",
    ]
    assert [i.name for i in generator.input if i.optional] == ["temperature", "top_p", "stop_words", "stream"]
    assert [o.name for o in generator.output] == ["text_output", "finish_reason", "prompt_tokens", "completion_tokens"]
    assert generator.parameters["workers"].string_value == "2"
    assert generator.parameters["max_queue"].string_value == "4"
    assert generator.parameters["model_dir"].string_value == str(generator_dir)


def test_render_refuses_a_missing_model(tmp_path: Path) -> None:
    generator = GeneratorConfig(model_dir=_generator_dir(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"embedding model .* is not built"):
        render_cpu_repository(tmp_path / "repo", EmbedderConfig(model_dir=tmp_path / "nothing"), generator)
    e5_dir = tmp_path / "e5"
    e5_dir.mkdir()
    (e5_dir / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(FileNotFoundError, match=r"generator .* is not built"):
        render_cpu_repository(
            tmp_path / "repo", EmbedderConfig(model_dir=e5_dir), GeneratorConfig(model_dir=tmp_path / "none")
        )
    with pytest.raises(ValueError, match="at least one worker"):
        render_cpu_repository(
            tmp_path / "repo", EmbedderConfig(model_dir=e5_dir), GeneratorConfig(generator.model_dir, workers=0)
        )


def test_settings_from_env() -> None:
    s = Settings.from_env({"ALBERT_HTTP_PORT": "9001", "ALBERT_CACHE_DIR": "/tmp/c", "OTHER": "x"})
    assert s.http_port == 9001
    assert s.resolved_index_dir == Path("/tmp/c/index")
    with pytest.raises(SettingsError, match="ALBERT_HTTP_PORT"):
        Settings.from_env({"ALBERT_HTTP_PORT": "not-a-port"})


def test_fetch_refuses_a_wrong_checksum(tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "x.bin").write_bytes(b"tampered")
    artifact = Artifact(registry="npm", spec="@scope/does-not-exist@0.0.0", filename="x.bin", sha256="0" * 64)
    # The cached file does not verify, so a download is attempted; it fails with a clear message.
    with pytest.raises(FetchError, match="cannot fetch @scope/does-not-exist"):
        fetch(artifact, downloads)
