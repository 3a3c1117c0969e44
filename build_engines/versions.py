"""Versioned model releases and their deployment with Triton's EXPLICIT model control.

``publish_version`` copies one rendered model's code into a new version directory ``<repo>/<model>/<N+1>``
(written aside, then renamed into place) with a ``manifest.json``: what was built from what (the model
directory's own metadata, e.g. the checkpoint or GGUF sha256), the parameters this version runs with
(they override the config's parameters for this version only, so versions do not share a model
directory by accident), the config's sha256, the tool versions and the date.

``deploy`` asks Triton to (re)load the model. Triton loads the newest version; when it fails to load,
Triton keeps serving the version that was loaded, and ``deploy`` raises with Triton's reason. The
procedure for platform teams is in build_engines/README.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from build_engines.templates import parse_model_config

__all__ = ["DeployError", "deploy", "publish_version", "versions"]

_TOOLS = ("tritonclient", "onnxruntime", "onnxruntime-genai", "tokenizers", "nvidia-pytriton")
_METADATA_FILES = ("embedder.json", "generator.json")


class DeployError(RuntimeError):
    pass


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def publish_version(source_model: Path, repository: Path, *, parameters: dict[str, str] | None = None) -> int:
    """Copy the rendered model ``source_model`` (config.pbtxt + version 1) into ``repository`` as a new
    version; the first publication also copies the config. Return the new version number."""
    config_text = (source_model / "config.pbtxt").read_text()
    config = parse_model_config(config_text, name=str(source_model / "config.pbtxt"))
    params = {key: value.string_value for key, value in config.parameters.items()}
    params.update(parameters or {})
    target = repository / config.name
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "config.pbtxt").exists():
        (target / "config.pbtxt").write_text(config_text)
    number = max(versions(target), default=0) + 1
    tmp = target / f".{number}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source_model / "1", tmp, ignore=shutil.ignore_patterns("__pycache__", "manifest.json"))
    model_dir = Path(params.get("model_dir", ""))
    built_from: dict[str, Any] = {}
    for name in _METADATA_FILES:
        if (model_dir / name).is_file():
            built_from = json.loads((model_dir / name).read_text())
    manifest = {
        "model": config.name,
        "version": number,
        "published_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "parameters": params,
        "built_from": built_from,
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "tools": _tool_versions(),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    tmp.rename(target / str(number))
    return number


def deploy(grpc_url: str, model: str, *, timeout_s: float = 600.0) -> str:
    """Load the newest version of ``model`` on a Triton started with ``--model-control-mode=explicit``.
    Return the version now serving; raise ``DeployError`` (the old version keeps serving) on failure."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        try:
            client.load_model(model, client_timeout=timeout_s)
        except InferenceServerException as exc:
            serving = [
                m.version for m in client.get_model_repository_index().models if m.name == model and m.state == "READY"
            ]
            still = f"; still serving version(s) {', '.join(serving)}" if serving else "; no version is serving"
            reason = " ".join((exc.message() or str(exc)).split()).rstrip(";")
            raise DeployError(f"loading {model} failed: {reason}{still}") from exc
        ready: list[str] = [
            m.version for m in client.get_model_repository_index().models if m.name == model and m.state == "READY"
        ]
        return max(ready, key=int)
    finally:
        client.close()
