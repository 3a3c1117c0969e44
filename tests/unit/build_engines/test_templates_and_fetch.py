"""Template rendering (unknown and missing keys), Triton's model config parse, and the fetch's checksum."""

from __future__ import annotations

from pathlib import Path

import pytest

from build_engines.fetch import Artifact, FetchError, fetch
from build_engines.templates import TemplateError, parse_model_config, placeholders, render


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


def test_fetch_refuses_a_wrong_checksum(tmp_path: Path) -> None:
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "x.bin").write_bytes(b"tampered")
    artifact = Artifact(registry="npm", spec="@scope/does-not-exist@0.0.0", filename="x.bin", sha256="0" * 64)
    # The cached file does not verify, so a download is attempted; it fails with a clear message.
    with pytest.raises(FetchError, match="cannot fetch @scope/does-not-exist"):
        fetch(artifact, downloads)
