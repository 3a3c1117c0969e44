"""What the gateway calls in Triton: model names and tensor names, read from the rendered repository.

``python -m build_engines render`` writes ``albert_interface.json`` at the root of every repository it
renders (Triton ignores files there), from the same definitions the configs are rendered with. The gateway
reads it at start-up, so one gateway talks to every profile — the CPU python models, TensorRT-LLM's
ensemble, the LLM-API model — without a name written twice. On first use the gateway also checks the
names against the generator's metadata as Triton serves it (``TritonGenerator``).

Profiles differ in what the generator returns: the CPU model and the LLM-API model send a finish reason,
the CPU model also sends token counts; when an output is ``None`` the gateway derives it (the stream's end,
its own tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "INTERFACE_FILE",
    "EmbedderInterface",
    "GeneratorInputs",
    "GeneratorInterface",
    "GeneratorOutputs",
    "InterfaceError",
    "ModelInterface",
    "load_interface",
]

INTERFACE_FILE = "albert_interface.json"
SCHEMA_VERSION = 2


class InterfaceError(ValueError):
    pass


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class GeneratorInputs(_Strict, kw_only=True, frozen=True):
    """Input tensor names; ``None``: the model has no such input (the gateway then never sends it)."""

    text: str
    max_tokens: str
    temperature: str | None = None
    top_p: str | None = None
    stop_words: str | None = None
    stream: str | None = None


class GeneratorOutputs(_Strict, kw_only=True, frozen=True):
    text: str
    finish_reason: str | None = None
    prompt_tokens: str | None = None
    completion_tokens: str | None = None


class GeneratorInterface(_Strict, kw_only=True, frozen=True):
    model: str
    """The model the gateway calls (the CPU model, TensorRT-LLM's ``ensemble``, the LLM-API model)."""
    served_model_name: str
    """What users see as the answer's ``model``."""
    batched: bool
    """True when the model has a batch dimension (``max_batch_size`` > 0): tensors get a leading 1."""
    streaming: bool
    """Ask for the answer piece by piece (needs a decoupled model); false: one response with the whole text."""
    text_mode: Literal["delta", "cumulative"]
    """What each response's text holds: the new piece (CPU model, TensorRT-LLM ensemble) or the whole text
    so far (the LLM-API model); the gateway turns the latter into pieces."""
    flags: dict[str, bool] = {}
    """Boolean inputs sent as they are with every request (e.g. the LLM-API model's ``return_finish_reason``)."""
    inputs: GeneratorInputs
    outputs: GeneratorOutputs
    tokenizer_dir: Path
    """The checkpoint's tokenizer and chat template (the gateway formats and counts prompts with it)."""
    max_input_tokens: int
    max_output_tokens: int
    max_concurrency: int = 1
    """Sequences the deployment generates at the same time (batch size x instances): the gateway admits that
    many answers at once by default (``answers_max_active``)."""


class EmbedderInterface(_Strict, kw_only=True, frozen=True):
    model: str
    text_input: str
    kind_input: str
    output: str
    dim: int
    max_batch_size: int
    """Texts per call the model accepts (the gateway's micro-batches stay within it)."""
    instances: int = 1
    """Model instances: quoted answers (whose cost is embedding their candidate sentences) are admitted that
    many at once by default (``answers_max_active``)."""


class ModelInterface(_Strict, kw_only=True, frozen=True):
    schema_version: int = SCHEMA_VERSION
    profile: str
    generator: GeneratorInterface
    embedder: EmbedderInterface

    def write(self, repository: Path) -> Path:
        path = repository / INTERFACE_FILE
        path.write_bytes(msgspec.json.format(msgspec.json.encode(self, enc_hook=str), indent=2) + b"\n")
        return path


def load_interface(path: Path) -> ModelInterface:
    """Read the interface file; a missing, older or malformed one raises ``InterfaceError`` saying why."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InterfaceError(
            f"no {INTERFACE_FILE} at {path}: render the model repository (set-up, or "
            "`python -m build_engines render`) or point ALBERT_MODEL_INTERFACE at the deployment's file"
        ) from exc
    try:
        interface = msgspec.json.decode(raw, type=ModelInterface, dec_hook=_decode)
    except msgspec.DecodeError as exc:
        raise InterfaceError(f"{path}: {exc}") from exc
    if interface.schema_version != SCHEMA_VERSION:
        raise InterfaceError(
            f"{path}: schema version {interface.schema_version}, this gateway reads {SCHEMA_VERSION}; render again"
        )
    return interface


def _decode(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError
