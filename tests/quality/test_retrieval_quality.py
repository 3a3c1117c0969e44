"""Retrieval quality on the full corpus, through the real e5 model served by Triton.

1. Question-type fiches searched by their own title, with those titles hidden from every searchable text.
2. Situational questions written by hand (tests/data/situational_questions.json), through the gateway.
Figures are printed (run pytest with -s to see them) and recorded in the README.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from rich.console import Console

from corpus.cli import run_ingest
from corpus.index import load_index
from corpus.questions import evaluation_fiches
from server.answers.relevance import is_covered
from server.retrieval.search import HybridSearcher
from server.settings import Settings
from server.tritonserver import TritonProcess
from tests.servers import Gateway

DATA = Path(__file__).resolve().parent.parent / "data"


def _scores(ranked: list[list[str]], expected: list[set[str]]) -> tuple[float, float]:
    recall = mrr = 0.0
    for ids, wanted in zip(ranked, expected, strict=True):
        rank = next((i + 1 for i, fid in enumerate(ids) if fid in wanted), None)
        recall += rank is not None and rank <= 5
        mrr += 1.0 / rank if rank else 0.0
    return recall / len(ranked), mrr / len(ranked)


def _embed_queries(triton: TritonProcess, texts: list[str]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    out = []
    for start in range(0, len(texts), 32):
        batch = np.array([[t.encode()] for t in texts[start : start + 32]], dtype=np.object_)
        inputs = [
            grpcclient.InferInput("text", list(batch.shape), "BYTES"),
            grpcclient.InferInput("kind", list(batch.shape), "BYTES"),
        ]
        inputs[0].set_data_from_numpy(batch)
        inputs[1].set_data_from_numpy(np.full(batch.shape, b"query", dtype=np.object_))
        out.append(client.infer("e5_embedder", inputs, client_timeout=120).as_numpy("embedding"))
    return np.concatenate(out)


def test_hidden_title_questions(settings: Settings, corpus_tarball: Path, triton: TritonProcess) -> None:
    full = load_index(settings.resolved_index_dir)
    chosen = evaluation_fiches(full)
    assert len(chosen) >= 200
    hidden = frozenset(f.id for f in chosen)
    out = settings.cache_dir / "eval" / "index-hidden-questions"
    run_ingest(settings, [corpus_tarball], out, hide_titles=hidden, console=Console(quiet=True))
    index = load_index(out)
    assert index.manifest.hidden_titles == len(hidden)
    searcher = HybridSearcher(index)
    vectors = _embed_queries(triton, [searcher.dense_text(f.title) for f in chosen])
    ranked = [
        [h.fiche.id for h in searcher.search(f.title, vector, audience=f.audience, k=10)]
        for f, vector in zip(chosen, vectors, strict=True)
    ]
    recall, mrr = _scores(ranked, [{f.id} for f in chosen])
    print(f"\nhidden-title questions: n={len(chosen)} recall@5={recall:.3f} MRR@10={mrr:.3f}")
    assert recall >= 0.85


def test_situational_questions(gateway: Gateway) -> None:
    questions = json.loads((DATA / "situational_questions.json").read_text())
    assert len(questions) >= 60
    assert {q["audience"] for q in questions} == {"particuliers", "professionnels", "associations"}
    ranked = []
    for q in questions:
        response = httpx.get(
            f"{gateway.url}/v1/search", params={"q": q["question"], "audience": q["audience"], "k": 10}, timeout=30
        )
        assert response.status_code == 200, response.text
        ranked.append([r["fiche_id"] for r in response.json()["results"]])
    recall, mrr = _scores(ranked, [set(q["expected"]) for q in questions])
    by_audience = {
        audience: _scores(
            [r for r, q in zip(ranked, questions, strict=True) if q["audience"] == audience],
            [set(q["expected"]) for q in questions if q["audience"] == audience],
        )[0]
        for audience in ("particuliers", "professionnels", "associations")
    }
    print(
        f"\nsituational questions: n={len(questions)} recall@5={recall:.3f} MRR@10={mrr:.3f} "
        + " ".join(f"{a}={r:.2f}" for a, r in by_audience.items())
    )
    assert recall >= 0.6


def test_nothing_relevant_rule(settings: Settings, triton: TritonProcess) -> None:
    """The coverage rule of /v1/answers with the served e5 model: situational questions and one-word queries
    are answered, off-topic questions are not (tests/data/off_topic_questions.json)."""
    index = load_index(settings.resolved_index_dir)
    searcher = HybridSearcher(index)
    situational = json.loads((DATA / "situational_questions.json").read_text())
    on_topic = [(q["question"], q["audience"]) for q in situational] + [
        (q, None) for q in ("RSA", "carte grise", "APL", "passeport", "chômage", "retraite", "divorce", "CAF")
    ]
    off_topic = [(q, None) for q in json.loads((DATA / "off_topic_questions.json").read_text())["questions"]]

    def covered(questions: list[tuple[str, str | None]]) -> list[bool]:
        vectors = _embed_queries(triton, [searcher.dense_text(q) for q, _ in questions])
        return [
            is_covered(
                searcher.retrieve(q, vector, audience=audience, k=5),
                min_dense=settings.relevance_min_dense,
                min_lexical=settings.relevance_min_lexical,
            )
            for (q, audience), vector in zip(questions, vectors, strict=True)
        ]

    on, off = covered(on_topic), covered(off_topic)
    print(f"\ncoverage rule: on-topic covered {sum(on)}/{len(on)}, off-topic refused {len(off) - sum(off)}/{len(off)}")
    assert sum(on) / len(on) >= 0.97
    assert (len(off) - sum(off)) / len(off) >= 0.85


pytestmark = pytest.mark.quality
