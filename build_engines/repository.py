"""Render ``model_repository/`` (templates + python glue, in git) into the repository Triton serves.

A profile (build_engines/profiles.py) turns a deployment into a ``RepositoryPlan``: which template
directories become which models with which values, plus the interface the gateway reads. Rendering fills
every ``*.in`` file of a model (config.pbtxt.in, model.yaml.in, …) with one renderer that refuses missing
and unknown keys, parses every config with Triton's ModelConfig protobuf, then checks the repository as a
whole before it replaces the previous one:

- every tensor the interface names exists on the model it names, with the data type the gateway sends
  or reads, and every required input of that model is one the gateway sends;
- the batch dimension the interface assumes matches ``max_batch_size``; a streaming generator is
  decoupled (itself, or for an ensemble a model it calls);
- every ensemble step calls a model of the repository, with tensors that model has.

The rendered copy (in the cache, or ``--out``) holds absolute paths to the built model files; git holds
templates and code only.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from build_engines.templates import TemplateError, parse_model_config, placeholders, render
from contract.model_interface import ModelInterface

__all__ = [
    "SOURCE_REPOSITORY",
    "ModelSpec",
    "RepositoryError",
    "RepositoryPlan",
    "check_repository",
    "render_model",
    "render_repository",
]

SOURCE_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"

_DTYPES = model_config_pb2.DataType
# What the gateway sends and reads, per interface field.
_GENERATOR_INPUT_TYPES = {
    "text": _DTYPES.TYPE_STRING,
    "max_tokens": _DTYPES.TYPE_INT32,
    "temperature": _DTYPES.TYPE_FP32,
    "top_p": _DTYPES.TYPE_FP32,
    "stop_words": _DTYPES.TYPE_STRING,
    "stream": _DTYPES.TYPE_BOOL,
}
_GENERATOR_OUTPUT_TYPES = {
    "text": _DTYPES.TYPE_STRING,
    "finish_reason": _DTYPES.TYPE_STRING,
    "prompt_tokens": _DTYPES.TYPE_INT32,
    "completion_tokens": _DTYPES.TYPE_INT32,
}


@dataclass(frozen=True)
class ModelSpec:
    template: str
    """A directory under model_repository/ holding config.pbtxt.in (and any version files)."""
    name: str
    """The rendered model's name (its directory; the config's ``name`` must say the same)."""
    values: Mapping[str, object]
    """The ``${…}`` values of all the template's ``*.in`` files together."""
    files: Mapping[str, Path] = field(default_factory=dict)
    """Files copied in from elsewhere, by path inside the model (e.g. TensorRT-LLM's ``1/model.py``)."""
    upstream: Path | None = None
    """The config.pbtxt template of the same model in the TensorRT-LLM checkout: every tensor of ours must be
    one of its tensors with the same type (a checkout of another version fails the render, naming them)."""
    exact_outputs: bool = False
    """With ``upstream``: the outputs must be exactly the checkout's (its model.py produces all of them)."""


@dataclass(frozen=True)
class RepositoryPlan:
    models: tuple[ModelSpec, ...]
    interface: ModelInterface


class RepositoryError(ValueError):
    pass


def _value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"  # what both protobuf text and YAML read as booleans
    return str(value) if isinstance(value, Path) else value


def render_model(spec: ModelSpec, target: Path) -> model_config_pb2.ModelConfig:
    """Render one model into ``target`` and return its parsed config (``render_repository`` renders them all
    and then checks the repository as a whole)."""
    source = SOURCE_REPOSITORY / spec.template
    templates = sorted(source.rglob("*.in"))
    used = set().union(*(placeholders(t.read_text()) for t in templates))
    values = {k: _value(v) for k, v in spec.values.items()}
    if unknown := sorted(values.keys() - used):
        raise TemplateError(f"{source}: unknown keys {', '.join(unknown)} (not used by its templates)")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.in", "__pycache__"))
    for template in templates:
        text = template.read_text()
        wanted = {k: v for k, v in values.items() if k in placeholders(text)}
        rendered = target / template.relative_to(source).with_suffix("")
        rendered.parent.mkdir(parents=True, exist_ok=True)
        rendered.write_text(render(text, wanted, name=str(template)))
        if rendered.suffix == ".yaml":
            try:
                yaml.safe_load(rendered.read_text())
            except yaml.YAMLError as exc:
                raise TemplateError(f"{template}: renders invalid YAML: {exc}") from exc
    for relative, origin in spec.files.items():
        if not origin.is_file():
            raise FileNotFoundError(f"{spec.name}: {origin} (its {relative}) does not exist")
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, target / relative)
    config_path = target / "config.pbtxt"
    config = parse_model_config(config_path.read_text(), name=str(source / "config.pbtxt.in"))
    if config.name != spec.name:
        raise RepositoryError(f"{source}: renders model name {config.name!r} into directory {spec.name!r}")
    if spec.upstream is not None:
        _compare_upstream(spec, config)
    return config


def _read_upstream(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a TensorRT-LLM config template: its ``${…}`` left as they are would not parse, so data types get
    a placeholder type, strings keep them, and numbers and booleans get 1."""
    if not path.is_file():
        raise RepositoryError(f"the TensorRT-LLM checkout has no {path}: is trtllm.all_models right?")
    text = re.sub(r"(data_type:\s*)\$\{\w+\}", r"\1TYPE_FP32", path.read_text())
    text = re.sub(r'("[^"\n]*)\$\{(\w+)\}', r"\1<\2>", text)
    text = re.sub(r"\$\{\w+\}", "1", text)
    try:
        config = model_config_pb2.ModelConfig()
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise RepositoryError(f"cannot read the TensorRT-LLM checkout's {path}: {exc}") from exc
    return config


def _compare_upstream(spec: ModelSpec, config: model_config_pb2.ModelConfig) -> None:
    assert spec.upstream is not None
    theirs = _read_upstream(spec.upstream)
    problems = []
    for kind, ours_list, theirs_list in (
        ("input", config.input, theirs.input),
        ("output", config.output, theirs.output),
    ):
        ours_t, theirs_t = _tensors(ours_list), _tensors(theirs_list)
        for name, tensor in ours_t.items():
            if name not in theirs_t:
                problems.append(f"{kind} {name} is not in the checkout's config")
            elif tensor.data_type != theirs_t[name].data_type:
                got, want = _DTYPES.Name(tensor.data_type), _DTYPES.Name(theirs_t[name].data_type)
                problems.append(f"{kind} {name} is {got} here, {want} in the checkout")
        required = [n for n, t in theirs_t.items() if kind == "input" and not t.optional and n not in ours_t]
        problems += [f"the checkout requires input {n}" for n in required]
        if kind == "output" and spec.exact_outputs:
            problems += [f"the checkout's model also produces output {n}" for n in theirs_t if n not in ours_t]
    if problems:
        raise RepositoryError(
            f"model {spec.name}: the template model_repository/{spec.template} (TensorRT-LLM 1.2.x) does not "
            f"match {spec.upstream}: {'; '.join(problems)}. Use the checkout of the release the container runs."
        )


def _tensors(
    tensors: Iterable[model_config_pb2.ModelInput | model_config_pb2.ModelOutput],
) -> dict[str, model_config_pb2.ModelInput | model_config_pb2.ModelOutput]:
    return {t.name: t for t in tensors}


def check_repository(configs: Mapping[str, model_config_pb2.ModelConfig], interface: ModelInterface) -> None:
    """Raise ``RepositoryError`` when the gateway could not talk to the rendered models (see module doc)."""
    generator, embedder = interface.generator, interface.embedder
    for role, name in (("generator", generator.model), ("embedder", embedder.model)):
        if name not in configs:
            raise RepositoryError(f"the interface's {role} model {name!r} is not in the repository")
    config = configs[generator.model]
    inputs, outputs = _tensors(config.input), _tensors(config.output)
    where = f"generator model {generator.model!r}"
    sent = set()
    for fields_, served, types, kind in (
        (generator.inputs, inputs, _GENERATOR_INPUT_TYPES, "input"),
        (generator.outputs, outputs, _GENERATOR_OUTPUT_TYPES, "output"),
    ):
        for key, tensor_name in msgspec.structs.asdict(fields_).items():
            if tensor_name is None:
                continue
            if tensor_name not in served:
                raise RepositoryError(f"{where} has no {kind} {tensor_name!r} (the gateway's {key})")
            if served[tensor_name].data_type != types[key]:
                wanted, got = _DTYPES.Name(types[key]), _DTYPES.Name(served[tensor_name].data_type)
                raise RepositoryError(f"{where}: {kind} {tensor_name!r} is {got}, the gateway uses {wanted}")
            if kind == "input" and key != "stop_words":
                sent.add(tensor_name)
    if generator.batched != (config.max_batch_size > 0):
        raise RepositoryError(
            f"{where} has max_batch_size {config.max_batch_size} but the interface says batched={generator.batched}"
        )
    for flag in generator.flags:
        if flag not in inputs or inputs[flag].data_type != _DTYPES.TYPE_BOOL:
            raise RepositoryError(f"{where} has no BOOL input {flag!r} (an interface flag)")
        sent.add(flag)
    # An ensemble streams when a model it calls is decoupled (TensorRT-LLM's tensorrt_llm step).
    called = [configs[s.model_name] for s in config.ensemble_scheduling.step if s.model_name in configs]
    decoupled = any(c.model_transaction_policy.decoupled for c in (config, *called))
    if generator.streaming and not decoupled:
        raise RepositoryError(f"{where} is not decoupled, so it cannot stream (generator.streaming)")
    if required := sorted(n for n, t in inputs.items() if not t.optional and n not in sent):
        raise RepositoryError(f"{where} requires input {', '.join(required)}, which the gateway does not send")
    e_config = configs[embedder.model]
    e_inputs, e_outputs = _tensors(e_config.input), _tensors(e_config.output)
    for tensor_name, served in ((embedder.text_input, e_inputs), (embedder.kind_input, e_inputs)):
        if tensor_name not in served:
            raise RepositoryError(f"embedder model {embedder.model!r} has no input {tensor_name!r}")
    if embedder.max_batch_size > e_config.max_batch_size:
        raise RepositoryError(
            f"the interface sends up to {embedder.max_batch_size} texts per call; embedder model "
            f"{embedder.model!r} takes {e_config.max_batch_size}"
        )
    if embedder.output not in e_outputs or list(e_outputs[embedder.output].dims) != [embedder.dim]:
        raise RepositoryError(
            f"embedder model {embedder.model!r} has no output {embedder.output!r} of [{embedder.dim}]"
        )
    for name, model in configs.items():
        for step in model.ensemble_scheduling.step:
            if step.model_name not in configs:
                raise RepositoryError(f"ensemble {name!r} calls {step.model_name!r}, which is not in the repository")
            callee = configs[step.model_name]
            for tensor in step.input_map:
                if tensor not in _tensors(callee.input):
                    raise RepositoryError(f"ensemble {name!r} feeds {step.model_name!r} an unknown input {tensor!r}")
            for tensor in step.output_map:
                if tensor not in _tensors(callee.output):
                    raise RepositoryError(
                        f"ensemble {name!r} reads an unknown output {tensor!r} of {step.model_name!r}"
                    )


def render_repository(out: Path, plan: RepositoryPlan) -> Path:
    """Render ``plan`` into ``out`` (replaced only once everything rendered and checked) and return it."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if len({spec.name for spec in plan.models}) != len(plan.models):
            raise RepositoryError(f"two models share a name: {sorted(spec.name for spec in plan.models)}")
        configs = {spec.name: render_model(spec, tmp / spec.name) for spec in plan.models}
        check_repository(configs, plan.interface)
        plan.interface.write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
