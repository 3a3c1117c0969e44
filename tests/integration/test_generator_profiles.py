"""The gateway's generator client on the GPU profiles' tensor layouts, through the real tritonserver.

TensorRT-LLM cannot run here, so each profile's rendered generator config (the LLM-API model's as it is;
the ensemble's inputs and outputs on a python model) serves a stand-in model (tests/data/profile_double)
that answers in that profile's way: whole-text-so-far responses with a character split over two of them
and "None" finish reasons (LLM-API), or new-text responses with no finish reason at all (ensemble). The
client must turn both into the same pieces and ending, sending the flags the interface names.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import msgspec
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from build_engines.profiles import plan
from build_engines.repository import render_repository
from build_engines.templates import parse_model_config
from contract.model_interface import GeneratorInterface, load_interface
from server.errors import BackendUnavailable
from server.triton.generator import Generated, GenerationParams, TritonGenerator
from server.triton.process import TritonPorts, TritonProcess
from tests.support.paths import DATA
from tests.support.profiles import CASES, load_case, make_dirs

DOUBLE = DATA / "profile_double" / "1" / "model.py"
TEXT = ["Le", "café", "du", "coin", "ouvre", "à", "huit", "heures", "et", "ferme", "à", "midi", "le", "samedi"]
LAYOUTS = {
    "llmapi": ("trtllm-llmapi-bf16", {"text_mode": "cumulative", "finish": "llmapi"}),
    "ensemble": ("trtllm-engine-fp8-tp2", {"text_mode": "delta", "finish": "none"}),
}


def _stand_in(
    config: model_config_pb2.ModelConfig, name: str, interface: GeneratorInterface, mode: dict[str, str]
) -> str:
    """The rendered generator config as a decoupled python model, with the stand-in's parameters."""
    config.name = name
    config.ClearField("platform")
    config.ClearField("ensemble_scheduling")
    config.backend = "python"
    config.model_transaction_policy.decoupled = True
    config.ClearField("parameters")
    params = {**mode, "flags": ",".join(interface.flags), "max_tokens_name": interface.inputs.max_tokens}
    for key, value in params.items():
        config.parameters[key].string_value = value
    return text_format.MessageToString(config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonProcess, dict[str, GeneratorInterface]]]:
    root = tmp_path_factory.mktemp("profiles")
    make_dirs(root)
    repository, interfaces = root / "triton", {}
    for layout, (case, mode) in LAYOUTS.items():
        rendered = render_repository(root / case, plan(load_case(root, CASES[case])))
        interface = load_interface(rendered / "albert_interface.json").generator
        config = parse_model_config((rendered / interface.model / "config.pbtxt").read_text())
        (repository / layout / "1").mkdir(parents=True)
        shutil.copyfile(DOUBLE, repository / layout / "1" / "model.py")
        (repository / layout / "config.pbtxt").write_text(_stand_in(config, layout, interface, mode))
        interfaces[layout] = msgspec.structs.replace(interface, model=layout)
    with TritonProcess(repository, root / "work", TritonPorts.free(), log=root / "triton.log") as triton:
        yield triton, interfaces


async def _generate(url: str, interface: GeneratorInterface, max_tokens: int) -> tuple[list[str], Generated]:
    generator = TritonGenerator(url, interface, timeout_s=30)
    try:
        await generator.ensure_ready()
        pieces: list[str] = []
        async for item in generator.stream("Quand ouvre le café ?", GenerationParams(max_tokens=max_tokens)):
            if isinstance(item, Generated):
                return pieces, item
            pieces.append(item)
        raise AssertionError("no end of generation")
    finally:
        await generator.close()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("max_tokens", [5, 100])
def test_each_layout_gives_the_same_pieces(
    served: tuple[TritonProcess, dict[str, GeneratorInterface]], layout: str, max_tokens: int
) -> None:
    triton, interfaces = served
    pieces, done = asyncio.run(_generate(triton.grpc_url, interfaces[layout], max_tokens))
    assert "".join(pieces) == " ".join(TEXT[:max_tokens])
    assert not any("\ufffd" in piece for piece in pieces)  # the split "é" was held back, not sent broken
    assert len(pieces) >= min(max_tokens, len(TEXT))  # streamed, not one block at the end
    if layout == "llmapi":
        assert done == Generated("length" if max_tokens < len(TEXT) else "stop", None, None)
    else:
        assert done == Generated(None, None, None)  # the answer service counts and derives the reason


def test_missing_flag_and_unknown_tensor_are_clear_errors(
    served: tuple[TritonProcess, dict[str, GeneratorInterface]],
) -> None:
    triton, interfaces = served
    no_flags = msgspec.structs.replace(interfaces["llmapi"], flags={})
    with pytest.raises(BackendUnavailable, match="flag sampling_param_exclude_input_from_output was not sent"):
        asyncio.run(_generate(triton.grpc_url, no_flags, 5))
    renamed = msgspec.structs.replace(
        interfaces["ensemble"], inputs=msgspec.structs.replace(interfaces["ensemble"].inputs, text="prompt")
    )
    with pytest.raises(BackendUnavailable, match="has no tensor prompt") as error:
        asyncio.run(_generate(triton.grpc_url, renamed, 5))
    assert error.value.code == "generator_mismatch"
