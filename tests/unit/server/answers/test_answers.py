"""/v1/answers over the mini corpus with a scripted generator: coverage rule, prompt budget, citation
checks, output guard, bundle order, SSE events and error mapping. The real generator in Triton is covered
by tests/integration/test_answers_stack.py."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from rich.console import Console

from config.settings import Settings
from corpus.ingest import ingest
from server.answers.chat import ChatFormat
from server.answers.grounding import NOTHING_SUPPORTED
from server.answers.prompt import NO_ANSWER
from server.errors import BackendTimeout, BackendUnavailable, Overloaded
from server.http.app import create_app
from server.runtime import serving
from server.triton.generator import GenerationParams
from tests.support.fixtures import (
    HashEmbedder,
    ScriptedGenerator,
    hashing_embed,
    write_mini_corpus,
    write_word_tokenizer,
)

QUESTION = "Ma carte d'identité a été volée en France, que faire ?"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("answers")
    corpus = write_mini_corpus(root / "corpus")
    ingest([corpus], root / "index", embed=hashing_embed, embedding_model="hash", dim=384, console=Console(quiet=True))
    return root / "index", write_word_tokenizer(root / "tokenizer")


def _client(setup: tuple[Path, Path], **overrides: Any) -> tuple[TestClient[Any], ScriptedGenerator]:
    index_dir, tokenizer_dir = setup
    values: dict[str, Any] = {
        "generator_tokenizer_dir": tokenizer_dir,
        "relevance_min_dense": 0.0,  # the hashing embedder's cosines mean nothing: everything is covered
        "answer_prompt_tokens": 400,
        "grpc_port": 0,
        "answer_mode": "drafted",  # the scripted generator's text, checked
        "grounding_min_semantic": 0.4,  # bag-of-words cosines: a sentence sharing most words with a passage
    }
    values.update(overrides)
    generator = ScriptedGenerator()
    app = create_app(
        partial(serving, Settings(**values), embedder=HashEmbedder(), generator=generator, index_dir=index_dir)
    )
    return TestClient(app), generator


@pytest.fixture
def api(setup: tuple[Path, Path]) -> Iterator[tuple[TestClient[Any], ScriptedGenerator]]:
    client, generator = _client(setup)
    with client:
        yield client, generator


def _events(body: str) -> list[tuple[str, Any]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        name = lines[0].removeprefix("event: ")
        data = "\n".join(line.removeprefix("data: ") for line in lines[1:])
        events.append((name, msgspec.json.decode(data)))
    return events


@pytest.mark.parametrize(("max_tokens", "reason"), [(200, "stop"), (6, "length")])
def test_usage_and_finish_reason_the_model_does_not_report(
    api: tuple[TestClient[Any], ScriptedGenerator], max_tokens: int, reason: str
) -> None:
    """TensorRT-LLM's models return neither token counts nor (the ensemble) a finish reason: the gateway
    counts with the checkpoint's tokenizer and says "length" when the answer used all its tokens."""
    client, generator = api
    generator.reports_usage = False
    generator.pieces = ["Déclarez le vol ", "au commissariat [1]."]
    body = client.post("/v1/answers", json={"question": QUESTION, "k": 1, "max_tokens": max_tokens}).json()
    assert body["finish_reason"] == reason
    prompt = generator.prompts[-1][0]
    # The word tokenizer of the fixtures: one token per whitespace-separated word (6 in the answer).
    assert body["usage"] == {"prompt_tokens": len(prompt.split()), "completion_tokens": 6}


def test_answer_bundle_checks_citations_and_guards_contacts(api: tuple[TestClient[Any], ScriptedGenerator]) -> None:
    client, generator = api
    generator.pieces = [
        "Déclarez le vol au commissariat [1]. ",
        "Faites une pré-plainte en ligne sur https://www.service-public.fr/pre-plainte [2][7]. ",
        "Appelez le 01 23 45 67 89 ou écrivez à aide@example.com, voir https://arnaque.example.org/x [2]. ",
        "Votre carte a été volée en France, que faire ?",
    ]
    response = client.post("/v1/answers", json={"question": QUESTION, "audience": "particuliers", "k": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["covered"] is True and body["model"] == "scripted" and body["finish_reason"] == "stop"
    assert body["answer_kind"] == "drafted"
    # Source 1 says to report the theft at the police station and holds the pre-complaint téléservice (the
    # fiche's own question "Votre carte a été volée ?" is not a passage of its own). [2] and [7] do not
    # support the second sentence; the contacts are not the fiche's.
    assert body["sources"][0]["excerpt"].startswith("Vous devez déclarer le vol au commissariat")
    assert body["answer"] == (
        "Déclarez le vol au commissariat [1]. "
        "Faites une pré-plainte en ligne sur https://www.service-public.fr/pre-plainte [1]."
    )
    assert [(s["status"], s["citations"]) for s in body["grounding"]["sentences"]] == [
        ("supported", [1]),
        ("supported", [1]),
        ("unsupported", []),
        ("echo", []),
    ]
    # [2] and [7] of the second sentence replaced by the passage that supports it, the unsupported sentence's
    # [2] removed.
    assert body["guard"] == {
        "citations_removed": 3,
        "citations_added": 1,
        "urls_removed": 1,
        "emails_removed": 1,
        "phones_removed": 1,
    }
    grounding = {k: v for k, v in body["grounding"].items() if k != "sentences"}
    assert grounding == {
        "kept": 2,
        "unverified": 0,
        "removed_unsupported": 1,
        "removed_echo": 1,
        "citations_removed": 2,
        "citations_added": 1,
    }
    n_sources = len(body["sources"])
    assert [s["n"] for s in body["sources"]] == list(range(1, n_sources + 1))
    assert {s["fiche_id"] for s in body["sources"]} == {"F1759"}
    assert body["fiches"] == [
        {
            "id": "F1759",
            "title": "Carte d'identité volée",
            "url": "https://www.service-public.fr/particuliers/vosdroits/F1759",
            "audience": "particuliers",
            "updated": "2023-05-02",
            "cited": True,
        }
    ]
    assert body["related_questions"] == [
        {
            "question": "Est-on obligé d'avoir une carte d'identité ?",
            "fiche_id": "F11601",
            "url": "https://www.service-public.fr/particuliers/vosdroits/F11601",
        }
    ]
    assert {link["type"] for link in body["links"]} == {"teleservice", "formulaire", "simulateur"}
    assert all(link["fiche_id"] == "F1759" for link in body["links"])
    assert body["usage"]["completion_tokens"] == 4  # one per scripted piece
    timings = body["timings_ms"]
    assert timings["first_token"] is not None and timings["total"] >= timings["embed"] + timings["retrieve"]


def test_prompt_respects_the_budget_and_carries_the_situation(setup: tuple[Path, Path]) -> None:
    client, generator = _client(setup, answer_prompt_tokens=140)
    generator.pieces = ["Réponse [1]."]
    with client:
        response = client.post(
            "/v1/answers", json={"question": QUESTION, "audience": "particuliers", "k": 1, "max_tokens": 64}
        )
    assert response.status_code == 200, response.text
    prompt, params = generator.prompts[-1]
    assert ChatFormat(setup[1]).count(prompt) <= 140
    assert params == GenerationParams(max_tokens=64, temperature=0.0)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith(
        f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    # The quoted answer's passages come first; the situation a passage applies to is shown with it.
    assert "Extrait [1] : Carte d'identité volée (Vol en France > Déclarer le vol)" in prompt
    assert "\nSituation : Vol en France" in prompt
    # Every source in the response is one the prompt shows.
    for source in response.json()["sources"]:
        assert f"Extrait [{source['n']}] : {source['title']}" in prompt


def test_streaming_sends_sources_first_then_deltas_then_the_same_answer(
    api: tuple[TestClient[Any], ScriptedGenerator],
) -> None:
    client, generator = api
    generator.pieces = ["Déclarez ", "le vol [1]", " puis refaites la carte [2]."]
    request = {"question": QUESTION, "audience": "particuliers", "k": 2}
    plain = client.post("/v1/answers", json=request).json()
    streamed = client.post("/v1/answers", json={**request, "stream": True})
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    names = [name for name, _ in events]
    assert names == ["sources", "delta", "delta", "delta", "answer"]
    first, final = events[0][1], events[-1][1]
    assert "answer" not in first and first["sources"] and first["fiches"] and first["id"] == final["id"]
    assert "".join(data["text"] for name, data in events if name == "delta") == "".join(generator.pieces)
    for key in ("answer", "sources", "related_questions", "links", "fiches", "guard", "usage", "covered"):
        assert final[key] == plain[key], key


def test_a_repeating_answer_is_cut_and_generation_stopped(api: tuple[TestClient[Any], ScriptedGenerator]) -> None:
    client, generator = api
    loop = "Vous devez déclarer le vol au commissariat [1]. "
    generator.pieces = ["Bonjour. ", loop, loop, loop, loop]
    for stream in (False, True):
        response = client.post("/v1/answers", json={"question": QUESTION, "stream": stream})
        body = response.json() if not stream else _events(response.text)[-1][1]
        # The draft is cut after its first repetition; the check then drops "Bonjour." (no source says it)
        # and keeps the citation of the passage that says the rest.
        assert body["answer"] == "Vous devez déclarer le vol au commissariat [1]."
        assert body["finish_reason"] == "repetition"
        assert body["usage"]["completion_tokens"] == 1 + len(loop.split())  # the word-level test tokenizer
    assert generator.closed_early == 2  # the stream was left: in Triton, that cancels the request


def test_an_empty_generation_says_so(api: tuple[TestClient[Any], ScriptedGenerator]) -> None:
    client, generator = api
    generator.pieces = ["  ", "[9]"]  # whitespace and an invalid citation: nothing left after the checks
    body = client.post("/v1/answers", json={"question": QUESTION}).json()
    assert body["answer"] == NOTHING_SUPPORTED and body["covered"] is True and body["sources"]
    assert body["answer_kind"] == "none"


def test_nothing_relevant_answers_without_generating(setup: tuple[Path, Path]) -> None:
    client, generator = _client(setup, relevance_min_dense=1.01, relevance_min_lexical=1e9)
    with client:
        body = client.post("/v1/answers", json={"question": "recette de la tarte tatin"}).json()
    assert body["covered"] is False and body["answer"] == NO_ANSWER
    assert body["sources"] == body["fiches"] == body["links"] == body["related_questions"] == []
    assert body["model"] is None and body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert generator.prompts == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"question": ""}, 422, "empty_query"),
        ({"question": "vol", "max_tokens": 0}, 422, "max_tokens_out_of_range"),
        ({"question": "vol", "max_tokens": 5000}, 422, "max_tokens_out_of_range"),
        ({"question": "vol", "temperature": 3}, 422, "temperature_out_of_range"),
        ({"question": "vol", "audience": "martiens"}, 422, "unknown_audience"),
        ({"question": "vol", "colour": "blue"}, 400, "invalid_request"),
        ({"question": 12}, 400, "invalid_request"),
        ({"question": "vol", "stream": "yes"}, 400, "invalid_request"),
    ],
)
def test_answers_reject_bad_input(
    api: tuple[TestClient[Any], ScriptedGenerator], body: dict[str, Any], status: int, code: str
) -> None:
    client, generator = api
    response = client.post("/v1/answers", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert generator.prompts == []


def test_generator_failures_map_to_clear_errors(api: tuple[TestClient[Any], ScriptedGenerator]) -> None:
    client, generator = api
    generator.not_ready = BackendUnavailable(
        "the generator model 'generator' is not available", code="generator_unavailable"
    )
    down = client.post("/v1/answers", json={"question": QUESTION})
    assert down.status_code == 503 and down.json()["error"]["code"] == "generator_unavailable"
    streamed_down = client.post("/v1/answers", json={"question": QUESTION, "stream": True})
    assert streamed_down.status_code == 503  # refused before the stream starts: no half-open event stream
    assert client.get("/v1/search", params={"q": QUESTION}).status_code == 200  # search does not need it
    generator.not_ready = None

    generator.pieces = ["Déclarez le vol", " au commissariat"]
    generator.fail_after_first = BackendTimeout("the generator did not finish within 120 s", code="generator_timeout")
    assert client.post("/v1/answers", json={"question": QUESTION}).status_code == 504
    events = _events(client.post("/v1/answers", json={"question": QUESTION, "stream": True}).text)
    assert [name for name, _ in events] == ["sources", "delta", "error"]
    assert events[-1][1]["error"]["code"] == "generator_timeout"

    generator.fail_after_first = Overloaded("generator overloaded", code="generator_overloaded")
    busy = client.post("/v1/answers", json={"question": QUESTION})
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "generator_overloaded"


def test_missing_tokenizer_leaves_search_working(setup: tuple[Path, Path], tmp_path: Path) -> None:
    client, _ = _client(setup, generator_tokenizer_dir=tmp_path / "nothing")
    with client:
        response = client.post("/v1/answers", json={"question": QUESTION})
        assert response.status_code == 503 and "tokenizer" in response.json()["error"]["message"]
        assert client.get("/v1/search", params={"q": QUESTION}).status_code == 200
        ready = client.get("/health/ready").json()
        assert ready["checks"]["generator_tokenizer"] == "missing"
