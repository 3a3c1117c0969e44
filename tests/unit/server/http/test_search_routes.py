"""``/v1/search`` and ``/v1/fiches/{id}`` over the mini index with a deterministic bag-of-words embedder:
results, bad input, backend errors, the OpenAPI document, the advisors' page, the index width check. The real
models through Triton: tests/integration."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from config.settings import Settings
from corpus.index import load_index
from server.errors import BackendTimeout, BackendUnavailable
from server.http.app import create_app
from server.runtime import serving
from tests.support.fixtures import HashEmbedder
from tests.support.paths import GOLDEN


@pytest.fixture(scope="module")
def client(mini_built: tuple[Path, Path]) -> Any:
    embedder = HashEmbedder()
    # The CPU deployment's interface file (golden copy): the generator's client is built but never called.
    settings = Settings(grpc_port=0, model_interface=GOLDEN / "cpu" / "albert_interface.json")
    app = create_app(partial(serving, settings, embedder=embedder, index_dir=mini_built[1]))
    with TestClient(app) as test_client:
        test_client.embedder = embedder
        yield test_client


def test_search_get_and_post_agree(client: Any) -> None:
    got = client.get("/v1/search", params={"q": "carte d'identité volée", "k": 2})
    posted = client.post("/v1/search", json={"q": "carte d'identité volée", "k": 2})
    assert got.status_code == posted.status_code == 200
    body = got.json()
    assert [r["fiche_id"] for r in body["results"]] == [r["fiche_id"] for r in posted.json()["results"]]
    top = body["results"][0]
    assert top["fiche_id"] == "F1759" and top["rank"] == 1
    assert top["url"] == "https://www.service-public.fr/particuliers/vosdroits/F1759"
    assert {link["type"] for link in top["links"]} == {"teleservice", "formulaire", "simulateur"}
    # The API's schemas, not the stored records: the names of the gRPC messages.
    assert all(link["fiche_id"] == "F1759" for link in top["links"])
    assert [link["number"] for link in top["links"] if link["type"] == "formulaire"] == ["14011"]
    assert "id" not in top["links"][0]
    assert top["related_questions"][0] == {
        "question": top["related_questions"][0]["question"],
        "fiche_id": "F11601",
        "url": "https://www.service-public.fr/particuliers/vosdroits/F11601",
    }
    assert top["excerpts"][0]["text"]
    assert body["corpus_version"] and body["k"] == 2
    assert set(body["timings_ms"]) == {"embed", "retrieve", "total"}


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"q": ""}, 422, "empty_query"),
        ({"q": "   "}, 422, "empty_query"),
        ({"q": "x" * 2001}, 422, "query_too_long"),
        ({"q": "a", "k": 0}, 422, "k_out_of_range"),
        ({"q": "a", "k": 51}, 422, "k_out_of_range"),
        ({"q": "a", "k": "deux"}, 400, "invalid_request"),
        ({"q": "a", "audience": "entreprises"}, 422, "unknown_audience"),
        ({}, 400, "invalid_request"),
    ],
)
def test_search_rejects_bad_input(client: Any, params: dict[str, Any], status: int, code: str) -> None:
    response = client.get("/v1/search", params=params)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"q": "a", "extra": 1}', "unknown field `extra`"),
        ('{"q": 3}', "Expected `str`"),
        ('{"q": "a", "k": [3]}', "Expected `int | null`"),
        ("{not json", "malformed"),
        ("[]", "Expected `object`"),
    ],
)
def test_search_post_rejects_malformed_bodies(client: Any, body: str, message: str) -> None:
    response = client.post("/v1/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_fiche_route(client: Any) -> None:
    fiche = client.get("/v1/fiches/F1759").json()
    assert fiche["title"] == "Carte d'identité volée" and fiche["blocks"]
    assert fiche["related_questions"][0]["fiche_id"] == "F11601"
    assert {link["fiche_id"] for link in fiche["links"]} == {"F1759"}
    assert client.get("/v1/fiches/N358").json()["answerable"] is False
    missing = client.get("/v1/fiches/F424242")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "fiche_not_found"
    assert client.get("/v1/fiches/..%2F..%2Fetc").status_code == 404


def test_backend_errors_map_to_503_and_504(client: Any) -> None:
    client.embedder.error = BackendUnavailable("embedding: Triton is unreachable")
    try:
        response = client.get("/v1/search", params={"q": "carte"})
        assert response.status_code == 503
        assert response.json()["error"] == {
            "type": "backend_unavailable",
            "message": "embedding: Triton is unreachable",
            "code": "backend_unavailable",
        }
        client.embedder.error = BackendTimeout("embedding: Triton did not answer in time")
        assert client.get("/v1/search", params={"q": "carte"}).status_code == 504
        client.embedder.error = RuntimeError("a bug")
        response = client.get("/v1/search", params={"q": "carte"})
        assert response.status_code == 500
        assert "a bug" not in response.text and response.json()["error"]["type"] == "internal_error"
    finally:
        client.embedder.error = None


def test_openapi_document_lists_routes(client: Any) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert {"/v1/search", "/v1/fiches/{fiche_id}", "/health/live", "/health/ready"} <= set(paths)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=2100), k=st.integers(-5, 60), audience=st.sampled_from([None, "particuliers", "x", ""]))
def test_search_never_fails_with_a_server_error(client: Any, q: str, k: int, audience: str | None) -> None:
    body: dict[str, Any] = {"q": q, "k": k}
    if audience is not None:
        body["audience"] = audience
    response = client.post("/v1/search", json=body)
    assert response.status_code in (200, 400, 422)
    if response.status_code != 200:
        assert response.json()["error"]["message"]


def test_search_page_is_served_in_french(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in page.text
    assert "Situation ou question de l'usager" in page.text
    assert "/v1/search" in page.text and "/v1/answers" in page.text and "Rédiger une réponse" in page.text
    # Results are written with textContent, never parsed as HTML (fiche text cannot inject markup).
    assert "innerHTML" not in page.text
    assert "/" not in client.get("/schema/openapi.json").json()["paths"]


def test_an_index_of_another_width_than_the_served_embedder_is_refused(
    mini_built: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from contract.model_interface import load_interface
    from server.runtime import _check_index

    golden = load_interface(GOLDEN / "cpu" / "albert_interface.json")
    interface = msgspec.structs.replace(golden, embedder=msgspec.structs.replace(golden.embedder, dim=768))
    manifest = load_index(mini_built[1]).manifest  # the hashing embedder's 384-d vectors
    with pytest.raises(RuntimeError, match=r"384-d vectors\) but the served embedder 'embedder' gives 768-d"):
        _check_index(Settings(cache_dir=tmp_path), manifest, interface)
    model_dir = Settings(cache_dir=tmp_path).embedding_dir
    model_dir.mkdir(parents=True)
    (model_dir / "embedder.json").write_text('{"files": {"model.onnx": {"sha256": "ab12"}}}')
    same_width = msgspec.structs.replace(manifest, dim=768)
    with caplog.at_level("WARNING"):
        _check_index(Settings(cache_dir=tmp_path), same_width, interface)
    assert "embeddinggemma-int8:ab12:max128" in caplog.text and "rankings will be wrong" in caplog.text
