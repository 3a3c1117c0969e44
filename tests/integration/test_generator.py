"""The CPU generator built by set-up (int4 onnxruntime-genai), run in-process through the wrapper the
Triton model uses. Serving, streaming and cancellation through Triton: test_answers_stack.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build_engines.generator import GeneratorBuild, generator_is_built
from config.settings import Settings
from inference.generator import Finished, LocalGenerator
from server.answers.chat import ChatFormat

QUESTION = [
    {"role": "system", "content": "Réponds en français, en une phrase."},
    {"role": "user", "content": "Quelle est la capitale de la France ?"},
]


@pytest.fixture(scope="module")
def generator(settings: Settings) -> LocalGenerator:
    build = GeneratorBuild(settings.cache_dir, threads=settings.generator_threads)
    if not generator_is_built(build):
        pytest.fail(f"{build.model_dir} is not built: run scripts/test, which runs set-up first")
    return LocalGenerator(build.model_dir)


def test_build_metadata(settings: Settings) -> None:
    model_dir = GeneratorBuild(settings.cache_dir).model_dir
    config = json.loads((model_dir / "genai_config.json").read_text())
    assert config["model"]["decoder"]["session_options"]["intra_op_num_threads"] == settings.generator_threads
    assert json.loads((model_dir / "generator.json").read_text())["precision"] == "int4"
    assert Path(model_dir / "tokenizer.json").exists()


def test_greedy_answer_in_french(generator: LocalGenerator, settings: Settings) -> None:
    finished = Finished()
    prompt = generator.chat_prompt(QUESTION)
    text = "".join(generator.stream(prompt, max_tokens=40, finished=finished))
    assert "Paris" in text
    assert finished.reason == "stop"
    assert 0 < finished.completion_tokens <= 40
    assert finished.prompt_tokens == len(generator.encode(prompt))
    # The gateway formats and counts prompts with the same template and tokenizer.
    chat = ChatFormat(GeneratorBuild(settings.cache_dir).model_dir)
    assert chat.format(QUESTION) == prompt and chat.count(prompt) == finished.prompt_tokens
    # Greedy decoding is deterministic: the same request gives the same text.
    assert "".join(generator.stream(prompt, max_tokens=40)) == text


def test_max_tokens_and_stop_words(generator: LocalGenerator) -> None:
    long_request = generator.chat_prompt([{"role": "user", "content": "Écris un long texte sur l'histoire de France."}])
    finished = Finished()
    pieces = list(generator.stream(long_request, max_tokens=8, finished=finished))
    assert finished.completion_tokens == 8 and finished.reason == "length"
    assert pieces
    question = generator.chat_prompt(QUESTION)
    full = "".join(generator.stream(question, max_tokens=40))
    # A stop word longer than any token, so it arrives split: nothing of it may be returned.
    stop = full[full.index("Paris") - 8 : full.index("Paris") + 5]
    finished = Finished()
    stopped = "".join(generator.stream(question, max_tokens=40, stop=[stop], finished=finished))
    assert stopped == full[: full.index(stop)]
    assert finished.reason == "stop"


def test_leaving_the_stream_stops_generation(generator: LocalGenerator) -> None:
    long_request = generator.chat_prompt([{"role": "user", "content": "Écris un long texte sur l'histoire de France."}])
    finished = Finished()
    stream = generator.stream(long_request, max_tokens=500, finished=finished)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert all(isinstance(p, str) for p in first)
    assert finished.completion_tokens <= 4  # no token is generated once the consumer has left
    assert finished.reason == ""


def test_should_stop_ends_generation_at_the_next_token(generator: LocalGenerator) -> None:
    long_request = generator.chat_prompt([{"role": "user", "content": "Écris un long texte sur l'histoire de France."}])
    finished = Finished()
    pieces: list[str] = []
    stream = generator.stream(long_request, max_tokens=500, finished=finished, should_stop=lambda: len(pieces) >= 3)
    pieces.extend(stream)
    assert finished.reason == "cancelled"
    assert len(pieces) == 3 and finished.completion_tokens <= 4
