"""The gRPC API through the real stack (tritonserver with the embedder and the generator, the gateway process),
with the client package: same content as HTTP, streaming order, deadlines and cancellation reaching the
generator in Triton (observed on its metrics endpoint)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import msgspec
import pytest
from albert_client import TLS, AnswerBundle, AnswerClient, DeadlineExceeded, Delta, Unavailable
from albert_client.types import Answer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from config.settings import Settings
from server.triton.process import TritonProcess
from tests.support.servers import Gateway
from tests.support.stack import (
    LONG,
    QUESTION,
    cancelled_generations,
    metric_value,
    seconds_to_first_text,
    wait_cancelled,
)
from tests.support.tls import make_certificates


def _without(data: object, *keys: str) -> object:
    plain = msgspec.to_builtins(data)
    assert isinstance(plain, dict)
    return {k: v for k, v in plain.items() if k not in keys}


def test_search_and_fiche_match_http(gateway: Gateway) -> None:
    with AnswerClient(gateway.grpc_target, timeout_s=30) as rpc, AnswerClient(gateway.url, timeout_s=30) as http:
        over_grpc = rpc.search("j'ai déménagé, comment mettre à jour ma carte grise ?", audience="particuliers", k=5)
        over_http = http.search("j'ai déménagé, comment mettre à jour ma carte grise ?", audience="particuliers", k=5)
        assert [r.fiche_id for r in over_grpc.results] == [r.fiche_id for r in over_http.results]
        assert {"F12118", "F14128"} & {r.fiche_id for r in over_grpc.results}
        assert _without(over_grpc, "timings_ms") == _without(over_http, "timings_ms")
        assert rpc.get_fiche("F1759") == http.get_fiche("F1759")


def test_stream_answer_matches_the_http_bundle(drafting_gateway: Gateway) -> None:
    gateway = drafting_gateway
    http_body = httpx.post(
        f"{gateway.url}/v1/answers", json={"question": QUESTION, "audience": "particuliers"}, timeout=120
    ).json()
    with AnswerClient(gateway.grpc_target, timeout_s=120) as rpc:
        events = list(rpc.stream_answer(QUESTION, audience="particuliers"))
    assert isinstance(events[0], AnswerBundle) and isinstance(events[-1], Answer)
    assert all(isinstance(e, Delta) for e in events[1:-1]) and len(events) > 3
    final = msgspec.to_builtins(events[-1])
    keys = ("answer", "answer_kind", "sources", "related_questions", "links", "fiches", "usage", "guard", "grounding")
    for key in (*keys, "covered", "model"):
        assert final[key] == http_body[key], key
    assert "".join(e.text for e in events[1:-1] if isinstance(e, Delta)).strip()


def test_deadline_exceeded_stops_generation(drafting_gateway: Gateway, triton: TritonProcess) -> None:
    gateway = drafting_gateway
    deadline_s = seconds_to_first_text(gateway, triton) + 0.5
    cancelled = cancelled_generations(triton)
    with AnswerClient(gateway.grpc_target) as rpc:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as raised:
            rpc.answer(LONG, max_tokens=1000, timeout_s=deadline_s)
        assert raised.value.status == "DEADLINE_EXCEEDED"
        assert time.monotonic() - started < deadline_s + 2
    wait_cancelled(triton, cancelled, "generation went on after the gRPC deadline")


def test_cancelled_stream_stops_generation(drafting_gateway: Gateway, triton: TritonProcess) -> None:
    gateway = drafting_gateway
    cancelled = metric_value(triton, "albert_generator_requests_total", outcome="cancelled")
    tokens = metric_value(triton, "albert_generator_tokens_total", kind="completion")
    with AnswerClient(gateway.grpc_target, timeout_s=120) as rpc:
        events = rpc.stream_answer(LONG, max_tokens=1000)
        deltas = 0
        for event in events:
            deltas += isinstance(event, Delta)
            if deltas == 3:
                break
        events.close()
    deadline = time.monotonic() + 20
    while metric_value(triton, "albert_generator_requests_total", outcome="cancelled") == cancelled:
        assert time.monotonic() < deadline, "generation went on after the client cancelled"
        time.sleep(0.2)
    assert metric_value(triton, "albert_generator_tokens_total", kind="completion") - tokens < 100


def test_health_is_serving(gateway: Gateway) -> None:
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="albert.v1.AnswerService"), timeout=5
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_asks_and_searches(gateway: Gateway) -> None:
    def albert(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "albert_client.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ask = albert("ask", QUESTION, "--target", gateway.grpc_target, "--audience", "particuliers", "--max-tokens", "24")
    assert ask.returncode == 0, ask.stderr
    assert "Réponse vérifiée" in ask.stdout and "Sources" in ask.stdout and "service-public.fr" in ask.stdout
    found = albert("search", "carte grise déménagement", "--target", gateway.url, "-k", "2")
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("1. ")
    bad = albert("search", " ", "--target", gateway.grpc_target)
    assert bad.returncode == 1 and "empty_query" in bad.stderr


def test_mutual_tls_on_the_real_gateway(settings: Settings, triton: TritonProcess, tmp_path: Path) -> None:
    c = make_certificates(tmp_path / "certs")
    gateway = Gateway(
        settings,
        triton.grpc_url,
        tmp_path / "gateway.log",
        ALBERT_GRPC_TLS_CERT=str(c.server_cert),
        ALBERT_GRPC_TLS_KEY=str(c.server_key),
        ALBERT_GRPC_TLS_CLIENT_CA=str(c.ca),
    )
    try:
        gateway.wait_live()
        tls = TLS(ca=c.ca, cert=c.client_cert, key=c.client_key)
        with AnswerClient(gateway.grpc_target, tls=tls, timeout_s=30) as client:
            assert client.search("carte grise déménagement", k=1).results
        with (
            AnswerClient(gateway.grpc_target, tls=TLS(ca=c.ca), timeout_s=10, retries=0) as anonymous,
            pytest.raises(Unavailable),
        ):
            anonymous.search("carte grise déménagement", k=1)
    finally:
        gateway.stop()
