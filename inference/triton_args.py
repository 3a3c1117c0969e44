"""The parameters a python-backend model runs with: its config's ``parameters``, overridden by the
``parameters`` of its version's ``manifest.json`` when the version was published by
``build_engines.versions`` (so that each version carries its own model directory and settings)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["model_parameters"]


def model_parameters(args: Mapping[str, Any]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
    manifest = Path(args.get("model_repository", "")) / str(args.get("model_version", "")) / "manifest.json"
    if manifest.is_file():
        params.update({k: str(v) for k, v in json.loads(manifest.read_text()).get("parameters", {}).items()})
    return params
