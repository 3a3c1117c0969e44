"""``${var}`` templates for Triton configs: one renderer that refuses unknown and missing keys.

A silent blank in a config.pbtxt is a deployment outage; a typo in a settings key is a setting that never
applies. Both fail the build instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

__all__ = ["TemplateError", "parse_model_config", "placeholders", "render"]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    pass


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def render(template: str, values: Mapping[str, object], *, name: str = "template") -> str:
    wanted = placeholders(template)
    missing = sorted(wanted - values.keys())
    unknown = sorted(values.keys() - wanted)
    if missing:
        raise TemplateError(f"{name}: missing values for {', '.join(missing)}")
    if unknown:
        raise TemplateError(f"{name}: unknown keys {', '.join(unknown)} (not used by the template)")
    if "$" in _PLACEHOLDER.sub("", template):
        raise TemplateError(f"{name}: stray '$' that is not a ${{var}} placeholder")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def parse_model_config(text: str, *, name: str = "config.pbtxt") -> model_config_pb2.ModelConfig:
    """Parse with Triton's own ModelConfig protobuf, so a rendered config that Triton would reject fails here."""
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise TemplateError(f"{name}: not a valid Triton model config: {exc}") from exc
    return config
