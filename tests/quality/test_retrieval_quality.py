"""Retrieval quality on the full corpus, with the settings the gateway serves and the embedder served by Triton.

1. The frozen ``test`` split of the everyday questions written blind, through the gateway.
2. The older hand-written situational questions, through the gateway.
3. Question-type fiches searched by their own title, with those titles hidden from every searchable text.
4. The coverage rule of /v1/answers (on-topic answered, off-topic refused).
Thresholds sit a little under the figures measured on 2026-12-03 (docs/retrieval.md), so that a
regression fails. Figures are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from rich.console import Console

from benchmarks.retrieval_eval import (
    Question,
    Scores,
    evaluate,
    first_rank,
    load_set,
    score,
    through_gateway,
    title_set,
)
from config.settings import Settings
from corpus.index import load_index
from server.answers.relevance import is_covered
from server.search.retrieval.search import HybridSearcher, SearchParams
from server.triton.process import TritonProcess
from tests.support.paths import DATA
from tests.support.servers import Gateway


def _embed_queries(triton: TritonProcess, texts: list[str]) -> np.ndarray:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    out = []
    try:
        for start in range(0, len(texts), 32):
            batch = np.array([[t.encode()] for t in texts[start : start + 32]], dtype=np.object_)
            inputs = [
                grpcclient.InferInput("text", list(batch.shape), "BYTES"),
                grpcclient.InferInput("kind", list(batch.shape), "BYTES"),
            ]
            inputs[0].set_data_from_numpy(batch)
            inputs[1].set_data_from_numpy(np.full(batch.shape, b"query", dtype=np.object_))
            out.append(client.infer("embedder", inputs, client_timeout=120).as_numpy("embedding"))
    finally:
        client.close()
    return np.concatenate(out)


def _through_gateway(gateway: Gateway, questions: list[Question]) -> tuple[Scores, dict[str, Scores]]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        rows, _, _ = evaluate(through_gateway(client), questions)
    ranks: list[int | None] = [r["rank"] for r in rows]  # type: ignore[misc]
    by_audience = {
        audience: score([r for r, q in zip(ranks, questions, strict=True) if q.audience == audience])
        for audience in ("particuliers", "professionnels", "associations")
    }
    return score(ranks), by_audience


def _print(name: str, overall: Scores, by_audience: dict[str, Scores]) -> None:
    print(
        f"\n{name}: n={overall.n} recall@5={overall.recall5:.3f} recall@10={overall.recall10:.3f} "
        f"MRR@10={overall.mrr10:.3f} " + " ".join(f"{a}={s.recall5:.2f}" for a, s in by_audience.items())
    )


def test_everyday_questions_test_split(gateway: Gateway) -> None:
    questions = load_set("test")
    assert len(questions) == 120
    overall, by_audience = _through_gateway(gateway, questions)
    _print("everyday questions, test split", overall, by_audience)
    # Measured 0.858 / 0.673, particuliers 0.846 with the query tower (2026-12-03, the judgments extended over
    # the current rankers' pools: tests/data/README.md); on the first judgments alone 0.825 / 0.652. Without
    # it (ALBERT_QUERY_TOWER=0) 0.800 / 0.618 / 0.782.
    assert overall.recall5 >= 0.83
    assert overall.mrr10 >= 0.64
    assert by_audience["particuliers"].recall5 >= 0.81


def test_situational_questions(gateway: Gateway) -> None:
    questions = load_set("situational")
    assert {q.audience for q in questions} == {"particuliers", "professionnels", "associations"}
    overall, by_audience = _through_gateway(gateway, questions)
    _print("situational questions", overall, by_audience)
    # Measured 0.924 / 0.723 with the query tower (0.937 / 0.764 without it), 2026-12-03; 0.899 / 0.723 with the
    # models, index and tower rebuilt by set-up from empty caches on 2026-12-07 (same code and seed: two of the
    # 79 questions fell from rank 5 to 6-10, while test, dev and select rose a little), hence the margin.
    assert overall.recall5 >= 0.88
    assert overall.mrr10 >= 0.70


def test_hidden_title_questions(settings: Settings, triton: TritonProcess) -> None:
    index, questions = title_set(settings, Console(quiet=True))
    assert len(questions) >= 200
    assert index.manifest.hidden_titles == len(questions)
    searcher = HybridSearcher(index, SearchParams.from_settings(settings))
    vectors = _embed_queries(triton, [searcher.dense_text(q.question) for q in questions])
    ranks = [
        first_rank([h.fiche.id for h in searcher.search(q.question, v, audience=q.audience, k=10)], q.expected)
        for q, v in zip(questions, vectors, strict=True)
    ]
    result = score(ranks)
    print(f"\nhidden-title questions: n={result.n} recall@5={result.recall5:.3f} MRR@10={result.mrr10:.3f}")
    assert result.recall5 >= 0.95


def test_nothing_relevant_rule(settings: Settings, triton: TritonProcess) -> None:
    """The coverage rule of /v1/answers with the served embedder: situational questions and one-word queries are
    answered, off-topic questions are not (tests/data/off_topic_questions.json)."""
    index = load_index(settings.resolved_index_dir)
    searcher = HybridSearcher(index, SearchParams.from_settings(settings))
    situational = [q for name in ("situational", "test") for q in load_set(name)]
    on_topic = [(q.question, q.audience) for q in situational] + [
        (q, None) for q in ("RSA", "carte grise", "APL", "passeport", "chômage", "retraite", "divorce", "CAF")
    ]
    off_topic = [(q, None) for q in json.loads((DATA / "off_topic_questions.json").read_text())["questions"]]

    def covered(questions: list[tuple[str, str | None]]) -> list[bool]:
        vectors = _embed_queries(triton, [searcher.dense_text(q) for q, _ in questions])
        return [
            is_covered(
                searcher.retrieve(q, vector, audience=audience, k=5),
                min_dense=settings.min_dense_cosine,
                min_lexical=settings.relevance_min_lexical,
            )
            for (q, audience), vector in zip(questions, vectors, strict=True)
        ]

    on, off = covered(on_topic), covered(off_topic)
    print(f"\ncoverage rule: on-topic covered {sum(on)}/{len(on)}, off-topic refused {len(off) - sum(off)}/{len(off)}")
    assert sum(on) / len(on) >= 0.97
    assert (len(off) - sum(off)) / len(off) >= 0.85


pytestmark = pytest.mark.quality
