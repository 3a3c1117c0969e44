"""Gateway micro-batching through the real stack: 64 concurrent searches, fewer Triton calls than
searches (read from Triton's own statistics), each caller with its own results."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import tritonclient.grpc as grpcclient

from config.settings import Settings
from server.triton.process import TritonProcess
from tests.support.servers import Gateway

QUERIES = [
    "carte d'identité volée",
    "renouveler son passeport",
    "allocation logement étudiant",
    "perte du permis de conduire",
    "inscription sur les listes électorales",
    "congé de maternité durée",
    "déclarer une naissance",
    "acte de décès demande",
    "carte grise changement d'adresse",
    "prime d'activité conditions",
    "rupture conventionnelle indemnité",
    "chômage après une démission",
    "RSA montant personne seule",
    "APL colocation",
    "bourse collège",
    "pension de réversion",
    "contester une amende",
    "casier judiciaire extrait",
    "se pacser en mairie",
    "divorce par consentement mutuel",
    "nationalité française par mariage",
    "titre de séjour étudiant",
    "arrêt maladie indemnités",
    "mutuelle complémentaire santé solidaire",
    "retraite progressive",
    "impôt sur le revenu déclaration en ligne",
    "taxe foncière exonération",
    "créer une micro-entreprise",
    "permis de construire délai",
    "déclaration préalable de travaux",
    "succession notaire frais",
    "don du sang conditions",
]


def _stats(triton: TritonProcess) -> tuple[int, int]:
    """(requests, inferences) Triton has counted for the embedding model: calls vs texts."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    stats = client.get_inference_statistics("embedder", as_json=True)["model_stats"][0]
    return int(stats["inference_stats"]["success"].get("count", 0)), int(stats.get("inference_count", 0))


def _top(body: dict[str, Any]) -> list[str]:
    return [r["fiche_id"] for r in body["results"]]


async def _search_all(url: str, queries: list[str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        responses = await asyncio.gather(*(client.get("/v1/search", params={"q": q, "k": 5}) for q in queries))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


def test_64_concurrent_searches_make_fewer_triton_calls(
    settings: Settings, triton: TritonProcess, tmp_path: Path
) -> None:
    # Caches off: every search needs its own query vector.
    gateway = Gateway(settings, triton.grpc_url, tmp_path / "gateway.log", ALBERT_CACHE_ENTRIES="0")
    try:
        gateway.wait_live()
        queries = [f"{q} {suffix}" for suffix in ("", "?") for q in QUERIES]  # 64 distinct texts
        alone = {
            q: _top(httpx.get(f"{gateway.url}/v1/search", params={"q": q, "k": 5}, timeout=60).json()) for q in queries
        }
        calls_before, texts_before = _stats(triton)
        bodies = asyncio.run(_search_all(gateway.url, queries))
        calls, texts = (a - b for a, b in zip(_stats(triton), (calls_before, texts_before), strict=True))
        assert texts == 64
        assert calls < 64 / 4, f"{calls} Triton calls for 64 searches"
        assert [body["query"] for body in bodies] == [" ".join(q.split()) for q in queries]
        # Each caller got its own results: the same fiches as alone (a mix-up would agree on almost none).
        # int8 activations are quantised per batch, so a near tie may swap: with EmbeddingGemma, 59 of the 64
        # first fiches agreed in one run.
        same_first = sum(_top(body)[0] == alone[query][0] for body, query in zip(bodies, queries, strict=True))
        assert same_first >= 54, f"{same_first}/64 searches found the same first fiche as alone"
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        assert "albert_embed_batch_size_count" in metrics
    finally:
        gateway.stop()
