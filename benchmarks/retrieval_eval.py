"""Retrieval quality of the configuration the gateway serves, on the evaluation sets.

    python -m benchmarks.retrieval_eval [--sets dev,test,select,situational,cross,titles] [--out FILE]

Prints recall@5 (an acceptable fiche in the top 5), recall@10 and MRR@10 per set and per audience, and the
cost per query (query embedding + retrieval, one query at a time, in this process with the same model
files Triton serves), and writes every question's rank to a JSON file. Settings come from the environment
exactly as for ``python -m server`` (``ALBERT_*``), so a lever is measured by setting its variable.
``--via URL`` measures a running gateway's /v1/search instead (any deployment, e.g. a GPU host).

Sets (tests/data/README.md): ``dev`` and ``test`` — situational questions written blind, one per fiche drawn
at random, split once by fiche (tune on dev; test is frozen); ``select`` — 120 more, written and judged the
same way later, to decide what dev and test disagree on; ``situational`` — the older hand-written set
(79); ``cross`` — questions asked for one audience whose answer is published for another only (21, written
blind); ``titles`` — question-type fiches searched by their own title with those titles hidden from every
searchable text (needs an index of its own, built once into the cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from rich.console import Console

from config.settings import Settings
from corpus.index import SearchIndex, load_index
from corpus.questions import evaluation_fiches
from server.search.retrieval.search import HybridSearcher, SearchParams

__all__ = ["Question", "Scores", "evaluate", "load_set", "score"]

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SET_FILES = {
    "dev": "everyday_dev.json",
    "test": "everyday_test.json",
    "select": "everyday_select.json",
    "situational": "situational_questions.json",
    "cross": "cross_audience.json",
}
ALL_SETS = (*SET_FILES, "titles")


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    audience: str | None
    question: str
    expected: frozenset[str]
    # The first judgments where the set was judged again over later rankers' pools (tests/data/README.md).
    expected_first: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Scores:
    n: int
    recall5: float
    recall10: float
    mrr10: float


def load_set(name: str) -> list[Question]:
    rows = json.loads((DATA / SET_FILES[name]).read_text())
    return [
        Question(
            r["id"],
            r["audience"],
            r["question"],
            frozenset(r["expected"]),
            frozenset(r["expected_first"]) if "expected_first" in r else None,
        )
        for r in rows
    ]


def first_rank(ranked: list[str], expected: frozenset[str]) -> int | None:
    return next((i + 1 for i, fiche_id in enumerate(ranked) if fiche_id in expected), None)


def score(ranks: list[int | None]) -> Scores:
    n = len(ranks)
    if n == 0:
        return Scores(0, 0.0, 0.0, 0.0)
    return Scores(
        n,
        sum(r is not None and r <= 5 for r in ranks) / n,
        sum(r is not None and r <= 10 for r in ranks) / n,
        sum(1.0 / r for r in ranks if r is not None and r <= 10) / n,
    )


class QueryEncoder:
    """The query side of the served embedder, in this process (same model directory, same code as Triton)."""

    def __init__(self, settings: Settings) -> None:
        from inference.embedding import Encoder

        self._encoder = Encoder(
            settings.embedding_dir,
            intra_op_threads=settings.embed_threads,
            query_model_dir=settings.query_embedding_dir,
        )

    def __call__(self, text: str) -> NDArray[np.float32]:
        vector: NDArray[np.float32] = self._encoder.encode([text], "query")[0]
        return vector


# A ranker: question -> (the top 10 fiche ids, embed ms, retrieve ms).
Ranker = Callable[[Question], tuple[list[str], float, float]]


def in_process(searcher: HybridSearcher, encode: QueryEncoder) -> Ranker:
    def rank(q: Question) -> tuple[list[str], float, float]:
        started = time.perf_counter()
        vector = encode(searcher.dense_text(q.question))
        embedded = time.perf_counter()
        hits = searcher.search(q.question, vector, audience=q.audience, k=10)
        done = time.perf_counter()
        return [h.fiche.id for h in hits], (embedded - started) * 1000, (done - embedded) * 1000

    return rank


def through_gateway(client: httpx.Client) -> Ranker:
    """A running deployment's /v1/search (its own settings, caches and models: e.g. a GPU host's)."""

    def rank(q: Question) -> tuple[list[str], float, float]:
        params: dict[str, str | int] = {"q": q.question, "k": 10, **({"audience": q.audience} if q.audience else {})}
        response = client.get("/v1/search", params=params)
        response.raise_for_status()
        body = response.json()
        timings = body["timings_ms"]
        return [r["fiche_id"] for r in body["results"]], timings["embed"], timings["retrieve"]

    return rank


def evaluate(rank: Ranker, questions: list[Question]) -> tuple[list[dict[str, object]], list[float], list[float]]:
    """Rank every question (top 10); return the per-question rows and the embed / retrieve times (ms)."""
    rows: list[dict[str, object]] = []
    embed_ms: list[float] = []
    retrieve_ms: list[float] = []
    for q in questions:
        ranked, embed, retrieve = rank(q)
        embed_ms.append(embed)
        retrieve_ms.append(retrieve)
        rows.append(
            {
                "id": q.id,
                "audience": q.audience,
                "rank": first_rank(ranked, q.expected),
                "expected": sorted(q.expected),
                **({"rank_first": first_rank(ranked, q.expected_first)} if q.expected_first is not None else {}),
                "top10": ranked,
            }
        )
    return rows, embed_ms, retrieve_ms


def title_set(settings: Settings, console: Console) -> tuple[SearchIndex, list[Question]]:
    """The hidden-title set and its index: the served index's settings with the set's titles hidden (built once
    per corpus, model and scope into the cache, next to the index it mirrors)."""
    from build_engines.fetch import CORPUS, fetch
    from corpus.cli import run_ingest

    chosen = evaluation_fiches(load_index(settings.resolved_index_dir).fiches)
    out = settings.cache_dir / "eval" / f"hidden-titles-{settings.resolved_index_dir.name}"
    corpus = fetch(CORPUS, settings.cache_dir / "downloads")
    run_ingest(settings, [corpus], out, hide_titles=frozenset(f.id for f in chosen), console=console)
    questions = [Question(f.id, f.audience, f.title, frozenset({f.id})) for f in chosen]
    return load_index(out), questions


def _line(name: str, s: Scores) -> str:
    return f"{name:<28} {s.n:>4} {s.recall5:>9.3f} {s.recall10:>9.3f} {s.mrr10:>7.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.retrieval_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sets", default="dev,test,select,situational,cross,titles", help=f"comma-separated, of {ALL_SETS}"
    )
    parser.add_argument("--via", help="a running gateway's URL: measure its /v1/search instead (not the titles set)")
    parser.add_argument("--out", type=Path, help="per-question ranks (default: benchmarks/results/retrieval_eval.json)")
    parser.add_argument("--label", default="", help="a name for this configuration, written into the report")
    parser.add_argument("--table", nargs="+", type=Path, metavar="REPORT", help="print earlier reports as one table")
    args = parser.parse_args(argv)
    if args.table:
        reports = [
            {"label": path.stem} | {k: v for k, v in json.loads(path.read_text()).items() if v} for path in args.table
        ]
        print(markdown_table(reports))
        return 0
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in ALL_SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {ALL_SETS}")
    if args.via and "titles" in sets:
        parser.error("the titles set needs its own index: leave it out with --via")
    settings = Settings.from_env()
    console = Console(stderr=True)
    report: dict[str, Any] = {
        "label": args.label,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python -m benchmarks.retrieval_eval", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {} if args.via else {k: str(getattr(settings, k)) for k in settings.__struct_fields__},
        "via": args.via or "in-process",
        "sets": {},
    }
    client = httpx.Client(base_url=args.via, timeout=60) if args.via else None
    encode = None if client else QueryEncoder(settings)
    params = SearchParams.from_settings(settings)
    print(f"{'set':<28} {'n':>4} {'recall@5':>9} {'recall@10':>9} {'MRR@10':>7}")
    all_embed: list[float] = []
    all_retrieve: list[float] = []
    for name in sets:
        if client is not None:
            rank, questions = through_gateway(client), load_set(name)
        else:
            assert encode is not None
            if name == "titles":
                set_index, questions = title_set(settings, console)
            else:
                set_index, questions = load_index(settings.resolved_index_dir), load_set(name)
            rank = in_process(HybridSearcher(set_index, params), encode)
        rows, embed_ms, retrieve_ms = evaluate(rank, questions)
        all_embed += embed_ms
        all_retrieve += retrieve_ms
        overall = score([r["rank"] for r in rows])  # type: ignore[misc]
        print(_line(name, overall))
        per_audience = {}
        for audience in sorted({q.audience for q in questions if q.audience}):
            scores = score([r["rank"] for r in rows if r["audience"] == audience])  # type: ignore[misc]
            per_audience[audience] = _as_dict(scores)
            print(_line(f"  {audience}", scores))
        report["sets"][name] = {"scores": _as_dict(overall), "by_audience": per_audience, "questions": rows}
        if all("rank_first" in r for r in rows):
            first = score([r["rank_first"] for r in rows])  # type: ignore[misc]
            print(_line("  (first judgments)", first))
            report["sets"][name]["scores_first"] = _as_dict(first)
    if client is not None:
        client.close()
    cost = {
        "embed_ms_mean": round(statistics.fmean(all_embed), 2),
        "retrieve_ms_mean": round(statistics.fmean(all_retrieve), 2),
        "total_ms_p50": round(statistics.median(e + r for e, r in zip(all_embed, all_retrieve, strict=True)), 2),
    }
    report["cost_per_query"] = cost
    where = f"through {args.via}" if args.via else "in-process"
    print(
        f"cost per query: embed {cost['embed_ms_mean']:.1f} ms + retrieve {cost['retrieve_ms_mean']:.1f} ms "
        f"(mean; p50 total {cost['total_ms_p50']:.1f} ms; one query at a time, {where})"
    )
    out = args.out or Path(__file__).resolve().parent / "results" / "retrieval_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    print(f"per-question ranks -> {out}")
    return 0


def markdown_table(reports: list[dict[str, Any]]) -> str:
    """One row per report: recall@5 / MRR@10 per set (particuliers of the test split apart; the test split on
    its first judgments too), cost, date."""

    def cell(
        report: dict[str, Any], name: str, audience: str | None = None, mrr: bool = True, of: str = "scores"
    ) -> str:
        entry = report["sets"].get(name)
        if entry is None or of not in entry:
            return "–"
        scores = entry["by_audience"][audience] if audience else entry[of]
        return f"{scores['recall@5']:.3f} / {scores['mrr@10']:.3f}" if mrr else f"{scores['recall@5']:.3f}"

    lines = [
        "| lever | dev | test | test particuliers | test, first judgments | select | situational | cross-audience"
        " | titles | ms/query | date |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: | --- |",
    ]
    for r in reports:
        cells = [cell(r, "dev"), cell(r, "test"), cell(r, "test", "particuliers", mrr=False)]
        cells += [cell(r, "test", of="scores_first"), cell(r, "select")]
        cells += [cell(r, "situational"), cell(r, "cross"), cell(r, "titles", mrr=False)]
        lines.append(
            f"| {r['label']} | {' | '.join(cells)} | {r['cost_per_query']['total_ms_p50']:.0f} | {r['date']} |"
        )
    return "\n".join(lines)


def _as_dict(s: Scores) -> dict[str, float]:
    return {"n": s.n, "recall@5": round(s.recall5, 4), "recall@10": round(s.recall10, 4), "mrr@10": round(s.mrr10, 4)}


if __name__ == "__main__":
    raise SystemExit(main())
