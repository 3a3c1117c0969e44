"""Ingestion, the persisted index, hybrid search and the HTTP contract, over a small corpus.

The embedder here is a deterministic bag-of-words stand-in; the real e5 model through Triton is covered by
tests/integration.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from rich.console import Console

from config.settings import Settings
from corpus.index import load_index, unit_text
from corpus.ingest import ingest
from server.errors import BackendTimeout, BackendUnavailable
from server.http.app import create_app
from server.runtime import serving
from server.search.retrieval.search import HybridSearcher
from tests.fixtures import RRF, HashEmbedder, hashing_embed, write_mini_corpus


def _ingest(corpus: Path, out: Path, **kwargs: Any) -> Any:
    return ingest(
        [corpus], out, embed=hashing_embed, embedding_model="hash", dim=384, console=Console(quiet=True), **kwargs
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mini")
    corpus = write_mini_corpus(root / "corpus")
    report = _ingest(corpus, root / "index")
    assert not report.unchanged
    return corpus, root / "index"


def test_ingest_counts_and_reports_bad_files(built: tuple[Path, Path]) -> None:
    index = load_index(built[1])
    manifest = index.manifest
    assert (manifest.fiches, manifest.answerable_fiches) == (4, 3)
    assert len(manifest.rejected) == 1 and "F666.xml" in manifest.rejected[0]
    assert manifest.corpus_version.startswith("corpus@")
    assert manifest.built_at.endswith("Z")
    assert set(index.fiches) == {"F1759", "F11601", "F23961", "N358"}


def test_reingest_is_a_noop_until_the_corpus_changes(tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    first = _ingest(corpus, tmp_path / "index")
    again = _ingest(corpus, tmp_path / "index")
    assert again.unchanged and again.units == first.units
    (corpus / "particuliers" / "F11601.xml").unlink()
    changed = _ingest(corpus, tmp_path / "index")
    assert not changed.unchanged and changed.answerable == first.answerable - 1


def test_embedding_cache_embeds_only_what_changed(tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    seen: list[str] = []

    def embed(texts: Any) -> np.ndarray:
        seen.extend(texts)
        return hashing_embed(texts)

    cache = tmp_path / "cache.npz"
    kwargs = {
        "embed": embed,
        "embedding_model": "hash",
        "dim": 384,
        "cache_path": cache,
        "console": Console(quiet=True),
    }
    ingest([corpus], tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    total = len(seen)
    seen.clear()
    ingest([corpus], tmp_path / "b", hide_titles=frozenset({"F11601"}), **kwargs)  # type: ignore[arg-type]
    # Only F11601's units and F1759's head (which lists F11601 as a related question) change.
    assert 0 < len(seen) < total
    assert all("Est-on obligé" not in text for text in seen)


def test_hidden_titles_disappear_from_every_unit(built: tuple[Path, Path]) -> None:
    index = load_index(built[1])
    hidden = frozenset({"F11601"})
    title = index.fiches["F11601"].title
    for fiche in index.fiches.values():
        assert title not in unit_text(fiche, None, hidden=hidden)
    assert title in unit_text(index.fiches["F1759"], None)


def test_hybrid_search_ranks_and_filters(built: tuple[Path, Path]) -> None:
    index = load_index(built[1])
    searcher = HybridSearcher(index, RRF)
    query = "carte d'identité volée que faire"
    vector = hashing_embed([searcher.dense_text(query)])[0]
    hits = searcher.search(query, vector, audience=None, k=3)
    assert hits[0].fiche.id == "F1759"
    assert hits[0].excerpts and all(e.chunk.fiche_id == "F1759" for e in hits[0].excerpts)
    # The audience is a preference: the requested audience's fiche first, the others after it.
    pro = searcher.search("déclaration embauche salarié", None, audience="professionnels", k=5)
    assert pro[0].fiche.id == "F23961" and "F1759" in [h.fiche.id for h in pro]
    assert searcher.search("carte volée", None, audience="associations", k=5)[0].fiche.id == "F1759"
    # ...or a wall, when the deployment asks for it.
    strict = HybridSearcher(index, replace(RRF, audience_filter="strict"))
    assert [
        h.fiche.id for h in strict.search("déclaration embauche salarié", None, audience="professionnels", k=5)
    ] == ["F23961"]
    assert strict.search("carte volée", None, audience="associations", k=5) == []


@pytest.mark.parametrize("fusion", ["scores", "rrf"])
def test_both_fusions_rank_the_matching_fiche_first(built: tuple[Path, Path], fusion: str) -> None:
    index = load_index(built[1])
    searcher = HybridSearcher(index, replace(RRF, fusion=fusion))  # type: ignore[arg-type]
    query = "carte d'identité volée que faire"
    vector = hashing_embed([searcher.dense_text(query)])[0]
    hits = searcher.search(query, vector, audience="particuliers", k=3)
    assert hits[0].fiche.id == "F1759"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.fixture(scope="module")
def client(built: tuple[Path, Path]) -> Any:
    embedder = HashEmbedder()
    app = create_app(partial(serving, Settings(grpc_port=0), embedder=embedder, index_dir=built[1]))
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


def test_embedding_cache_round_trips_every_key(tmp_path: Path) -> None:
    """Keys are raw digests; some end with NUL bytes, which must survive saving and loading."""
    from corpus.embed_cache import EmbeddingCache

    texts = [f"passage {i}" for i in range(600)]  # ~2 of 600 digests end with a NUL byte
    cache = EmbeddingCache(tmp_path / "c.npz", 384)
    cache.wrap(hashing_embed)(texts)
    cache.save()
    calls: list[str] = []

    def embed(batch: Any) -> np.ndarray:
        calls.extend(batch)
        return hashing_embed(batch)

    reloaded = EmbeddingCache(tmp_path / "c.npz", 384)
    assert len(reloaded) == 600
    np.testing.assert_array_equal(reloaded.wrap(embed)(texts), hashing_embed(texts))
    assert calls == []


def test_an_index_of_another_width_than_the_served_embedder_is_refused(
    built: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from contract.model_interface import load_interface
    from server.runtime import _check_index

    golden = load_interface(Path(__file__).parents[1] / "golden" / "cpu" / "albert_interface.json")
    interface = msgspec.structs.replace(golden, embedder=msgspec.structs.replace(golden.embedder, dim=768))
    manifest = load_index(built[1]).manifest  # the hashing embedder's 384-d vectors
    with pytest.raises(RuntimeError, match=r"384-d vectors\) but the served embedder 'embedder' gives 768-d"):
        _check_index(Settings(cache_dir=tmp_path), manifest, interface)
    model_dir = Settings(cache_dir=tmp_path).embedding_dir
    model_dir.mkdir(parents=True)
    (model_dir / "embedder.json").write_text('{"files": {"model.onnx": {"sha256": "ab12"}}}')
    same_width = msgspec.structs.replace(manifest, dim=768)
    with caplog.at_level("WARNING"):
        _check_index(Settings(cache_dir=tmp_path), same_width, interface)
    assert "embeddinggemma-int8:ab12:max128" in caplog.text and "rankings will be wrong" in caplog.text
