"""Logs keep the person's privacy: questions carrying an e-mail address, phone numbers, a social security
number (NIR) and an IBAN, asked over HTTP and gRPC to the real stack, appear in no log file and no metric;
the access log still has its line for every request (request id, route, status, duration, sizes); an
operator who sets ALBERT_LOG_QUESTIONS gets the questions, and only then."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import pytest
from albert_client import AnswerClient

from config.settings import Settings
from server.triton.process import TritonProcess
from tests.support.servers import Gateway

PLANTED = [
    "jean.dupont@exemple.fr",
    "06 12 34 56 78",
    "+33612345678",
    "1 85 05 78 006 084 36",  # a NIR
    "FR76 3000 6000 0112 3456 7890 189",  # an IBAN
]
QUESTIONS = [
    f"Madame Martin ({PLANTED[0]}, {PLANTED[1]}) a perdu sa carte d'identité, que faire ?",
    f"Mon numéro de sécurité sociale {PLANTED[3]} est faux sur ma carte Vitale, qui contacter ?",
    f"La CAF me demande un RIB, mon IBAN est {PLANTED[4]}, appelez-moi au {PLANTED[2]}",
]


def _ask_everything(gateway: Gateway) -> list[str]:
    """Every route that takes a question, over HTTP and gRPC; returns the request ids the gateway sent back."""
    ids = []
    with httpx.Client(base_url=gateway.url, timeout=120) as http:
        for question in QUESTIONS:
            response = http.get("/v1/search", params={"q": question, "audience": "particuliers"})
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
            response = http.post("/v1/answers", json={"question": question}, headers={"X-Request-ID": "advisor-42"})
            assert response.status_code == 200 and response.headers["x-request-id"] == "advisor-42"
        # Errors too: an unknown audience, an unknown route with a query string.
        assert http.get("/v1/search", params={"q": QUESTIONS[0], "audience": PLANTED[0]}).status_code == 422
        assert http.get("/v1/nowhere", params={"q": QUESTIONS[1]}).status_code == 404
        metrics = http.get("/metrics").text
    with AnswerClient(gateway.grpc_target, timeout_s=120) as rpc:
        for question in QUESTIONS:
            rpc.search(question, audience="particuliers", k=3)
            rpc.answer(question)
    assert not [p for p in PLANTED if p in metrics]
    return ids


def _planted_in(text: str) -> list[str]:
    """The planted values found in ``text``, as written, without their spaces or URL-encoded."""
    flat = " ".join(unquote_plus(text).split())
    return [p for p in PLANTED if p in flat or p.replace(" ", "") in flat.replace(" ", "")]


def test_no_question_reaches_the_logs(
    settings: Settings, triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log = tmp_path_factory.mktemp("privacy") / "gateway.log"
    gateway = Gateway(settings, triton.grpc_url, log).wait_live()
    try:
        ids = _ask_everything(gateway)
    finally:
        gateway.stop()
    text = log.read_text()
    assert not _planted_in(text), _planted_in(text)
    assert isinstance(triton.log, Path)
    assert not _planted_in(triton.log.read_bytes().decode(errors="replace"))
    # The access log has a line per request: id, method, path without its query, status, duration, sizes.
    for request_id in ids:
        assert re.search(rf"{request_id} GET /v1/search 200 [\d.]+ms in=0 out=\d+", text), text[-2000:]
    assert len(re.findall(r"advisor-42 POST /v1/answers 200 [\d.]+ms in=\d+ out=\d+", text)) == len(QUESTIONS)
    assert re.search(r" GET /v1/search 422 ", text) and re.search(r" GET /v1/nowhere 404 ", text)
    assert "?" not in "".join(line for line in text.splitlines() if "albert.access" in line)


def test_questions_are_logged_only_when_the_operator_asks(
    settings: Settings, triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log = tmp_path_factory.mktemp("privacy-opt-in") / "gateway.log"
    gateway = Gateway(settings, triton.grpc_url, log, ALBERT_LOG_QUESTIONS="1").wait_live()
    try:
        with AnswerClient(gateway.grpc_target, timeout_s=120) as rpc:
            rpc.search(QUESTIONS[0], audience="particuliers", k=3)
        httpx.get(f"{gateway.url}/v1/search", params={"q": QUESTIONS[1]}, timeout=60).raise_for_status()
    finally:
        gateway.stop()
    text = log.read_text()
    assert PLANTED[0] in text and PLANTED[3] in text
