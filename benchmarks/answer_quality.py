"""Answer quality: what an advisor reads, measured on the blind answer sets, per answer configuration.

    .venv/bin/python -m benchmarks.answer_quality                      # test split, every configuration
    .venv/bin/python -m benchmarks.answer_quality --set dev --configs quoted,auto
    .venv/bin/python -m benchmarks.answer_quality --via http://127.0.0.1:8080 --configs served

For each configuration it starts tritonserver (the rendered repository) and a gateway with that
configuration's settings (``--via``: measures a running gateway instead), asks every question of the set
(``tests/data/answers_{dev,tune,test}.json``: blind questions with their key points, benchmarks/answer_sets.py) and
the off-topic questions, one at a time, streaming, and scores what the final event says:

- **faithfulness**: share of the shown sentences supported by a passage they cite (the project's own check,
  ``server/answers/grounding.py``, re-applied to the final text); **draft support**: share of the drafted
  sentences that the check kept (before it removed anything; 1.0 for quoted answers);
- **citation precision** (share of ``[n]`` whose passage supports the sentence) and **citation recall** (share
  of shown sentences with a citation);
- **key-point recall**: share of the writers' key points that the shown answer states (numbers exact, content
  words and meaning close: ``key_point_stated``);
- **echo rate**: share of answers with a shown sentence that repeats the question; **refusals**: on-topic
  questions answered with "nothing" (not covered, or nothing verifiable), off-topic questions refused;
- **latency**: first visible answer text (first streamed piece) and total, p50 / p95, at concurrency 1;
- **fiche hit**: the question's fiche among the cited fiches.

Prints one table row per configuration and writes the per-question answers and verdicts to JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from benchmarks.answer_sets import DATA, load_answer_set
from build_engines.cli import render
from build_engines.deployment import Deployment
from config.settings import Settings
from contract.model_interface import load_interface
from harness.gateway import local_stack
from server.answers.extractive import HEADING_LINE, QUOTED_HEADING
from server.answers.grounding import Claim, GroundingRules, is_echo, measure_support, normalized
from server.answers.sentences import citation_numbers, split_sentences, strip_citations
from server.triton.embedder import TritonEmbedder

__all__ = ["CONFIGS", "Scorer"]

# name -> (gateway settings, CPU generator). A configuration whose generator is not the one set-up rendered
# is served from a repository rendered for it here (the generator must have been built:
# ALBERT_GENERATOR_MODEL=... python -m build_engines setup).
CONFIGS: dict[str, tuple[dict[str, str], str | None]] = {
    "quoted": ({"ALBERT_ANSWER_MODE": "quoted"}, None),
    "drafted": ({"ALBERT_ANSWER_MODE": "drafted"}, None),
    "auto": ({"ALBERT_ANSWER_MODE": "auto"}, None),
    "drafted-1.5b": ({"ALBERT_ANSWER_MODE": "drafted"}, "qwen2.5-coder-1.5b"),
    "auto-1.5b": ({"ALBERT_ANSWER_MODE": "auto"}, "qwen2.5-coder-1.5b"),
}
OFF_TOPIC = 12  # off-topic questions asked per configuration (the first ones of the set)
KEY_POINT_LEXICAL = 0.4  # a key point is a writer's paraphrase: fewer of its words are the fiche's own


@dataclass(frozen=True, slots=True)
class Asked:
    body: dict[str, Any]
    first_text_s: float | None
    total_s: float


# Answers that got 503/504 (the gateway's deadline on a busy machine) are asked again this many times; each
# retry is counted in the report (``retried``) and its latency is that of the answer that came.
RETRIES = 2


async def _ask(client: httpx.AsyncClient, question: str, audience: str | None, retried: list[str]) -> Asked:
    for attempt in range(RETRIES + 1):
        try:
            return await _ask_once(client, question, audience)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in (503, 504) or attempt == RETRIES:
                raise
            retried.append(f"{exc.response.status_code}: {question[:60]}")
            await asyncio.sleep(5)
    raise AssertionError("unreachable")


async def _ask_once(client: httpx.AsyncClient, question: str, audience: str | None) -> Asked:
    started = time.perf_counter()
    first = None
    final: dict[str, Any] = {}
    event = ""
    payload = {"question": question, "audience": audience, "stream": True}
    async with client.stream("POST", "/v1/answers", json=payload) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                if event == "delta" and first is None:
                    first = time.perf_counter() - started
            elif line.startswith("data: ") and event == "answer":
                final = json.loads(line.removeprefix("data: "))
            elif line.startswith("data: ") and event == "error":
                raise RuntimeError(line)
    return Asked(final, first, time.perf_counter() - started)


class Scorer:
    """The grounding check's measures, applied to final answers (embeddings from the served model)."""

    def __init__(self, embedder: TritonEmbedder, rules: GroundingRules) -> None:
        self.embedder = embedder
        self.rules = rules
        self.cache: dict[str, NDArray[np.float32]] = {}

    async def vectors(self, texts: list[str]) -> NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for start in range(0, len(missing), 32):
            batch = missing[start : start + 32]
            for text, vector in zip(batch, normalized(await self.embedder.embed(batch, "passage")), strict=True):
                self.cache[text] = vector
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)

    async def support(self, claim: Claim, evidence: list[Claim], rules: GroundingRules) -> bool:
        if not evidence:
            return False
        if (claim.stems or claim.numbers) and " ".join(claim.text.split()) in " ".join(e.text for e in evidence):
            return True  # a copy of the passage (as the check itself rules)
        vectors = await self.vectors([claim.text, *(e.text for e in evidence)])
        return measure_support(claim, vectors[0], evidence, vectors[1:], rules).supported

    async def score(self, row: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        lines = body["answer"].removeprefix(QUOTED_HEADING).strip().splitlines()
        answer = "\n".join(line for line in lines if not HEADING_LINE.match(line))
        shown = [s for s in split_sentences(answer) if strip_citations(s.text)] if body["answer_kind"] != "none" else []
        passages = {s["n"]: [Claim.of(p.text) for p in split_sentences(s["excerpt"])] for s in body["sources"]}
        question = Claim.of(row["question"])
        supported = cited_ok = cited_total = with_citation = echo = 0
        claims = []
        for sentence in shown:
            claim = Claim.of(sentence.text)
            claims.append(claim)
            numbers = [n for n in citation_numbers(sentence.text) if n in passages]
            with_citation += bool(numbers)
            verdicts = [await self.support(claim, passages[n], self.rules) for n in numbers]
            cited_total += len(numbers)
            cited_ok += sum(verdicts)
            supported += any(verdicts)
            echo += is_echo(claim, question, self.rules)
        points = [await self.key_point_stated(point, claims) for point in row["key_points"]]
        grounding = body["grounding"]
        drafted = (
            grounding["kept"] + grounding["unverified"] + grounding["removed_unsupported"] + grounding["removed_echo"]
        )
        cited_fiches = [f["id"] for f in body["fiches"] if f["cited"]]
        return {
            "sentences": len(shown),
            "supported": supported,
            "citations": cited_total,
            "citations_supported": cited_ok,
            "with_citation": with_citation,
            "echo": echo,
            "key_points": points,
            "draft_sentences": drafted,
            "draft_kept": grounding["kept"],
            "refused": body["answer_kind"] == "none",
            "fiche_cited": any(f in cited_fiches for f in row["expected"]),
            "fiche_top5": any(f["id"] in row["expected"] for f in body["fiches"][:5]),
        }

    async def key_point_stated(self, point: str, answer: list[Claim]) -> bool:
        rules = GroundingRules(
            min_lexical=KEY_POINT_LEXICAL, min_semantic=self.rules.min_semantic, unsupported=self.rules.unsupported
        )
        claim = Claim.of(point)
        if not answer:
            return False
        vectors = await self.vectors([claim.text, *(a.text for a in answer)])
        support = measure_support(claim, vectors[0], answer, vectors[1:], rules)
        # The key point's negation words are the writer's, not a claim about the answer's polarity.
        return support.numbers_match and support.lexical >= rules.min_lexical and support.semantic >= rules.min_semantic


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 2)


def summarize(
    scored: list[dict[str, Any]], off_topic: list[bool], first: list[float], total: list[float]
) -> dict[str, Any]:
    sentences = sum(s["sentences"] for s in scored)
    points = [p for s in scored for p in s["key_points"]]
    return {
        "questions": len(scored),
        "faithfulness": _ratio(sum(s["supported"] for s in scored), sentences),
        "draft_support": _ratio(sum(s["draft_kept"] for s in scored), sum(s["draft_sentences"] for s in scored)),
        "citation_precision": _ratio(
            sum(s["citations_supported"] for s in scored), sum(s["citations"] for s in scored)
        ),
        "citation_recall": _ratio(sum(s["with_citation"] for s in scored), sentences),
        "key_point_recall": _ratio(sum(points), len(points)),
        "echo_rate": _ratio(sum(s["echo"] > 0 for s in scored), len(scored)),
        "refusal_on_topic": _ratio(sum(s["refused"] for s in scored), len(scored)),
        "refusal_off_topic": _ratio(sum(off_topic), len(off_topic)),
        "fiche_cited": _ratio(sum(s["fiche_cited"] for s in scored), len(scored)),
        "sentences_per_answer": _ratio(sentences, len(scored)),
        "first_text_p50_s": _p(first, 50),
        "first_text_p95_s": _p(first, 95),
        "total_p50_s": _p(total, 50),
    }


async def run_config(url: str, rows: list[dict[str, Any]], scorer: Scorer) -> dict[str, Any]:
    off_topic_questions = json.loads((DATA / "off_topic_questions.json").read_text())["questions"][:OFF_TOPIC]
    answers, scored, first, total, refused = [], [], [], [], []
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        retried: list[str] = []
        await _ask(client, "Carte d'identité perdue : que faire ?", None, retried)  # warm-up, not counted
        for n, row in enumerate(rows, start=1):
            asked = await _ask(client, row["question"], row["audience"], retried)
            verdict = await scorer.score(row, asked.body)
            scored.append(verdict)
            total.append(asked.total_s)
            if asked.first_text_s is not None:
                first.append(asked.first_text_s)
            answers.append(
                {
                    "id": row["id"],
                    "answer": asked.body["answer"],
                    "kind": asked.body["answer_kind"],
                    "sources": [
                        {"n": s["n"], "fiche_id": s["fiche_id"], "excerpt": s["excerpt"]} for s in asked.body["sources"]
                    ],
                    "grounding": asked.body["grounding"],
                    "verdict": verdict,
                    "first_text_s": asked.first_text_s,
                    "total_s": round(asked.total_s, 2),
                }
            )
            print(
                f"  {n}/{len(rows)} {row['id']} {asked.body['answer_kind']:7} {asked.total_s:5.1f}s "
                f"key points {sum(verdict['key_points'])}/{len(verdict['key_points'])}",
                flush=True,
            )
        for question in off_topic_questions:
            asked = await _ask(client, question, None, retried)
            refused.append(not asked.body["covered"] or asked.body["answer_kind"] == "none")
    summary = {**summarize(scored, refused, first, total), "retried": len(retried)}
    return {"summary": summary, "answers": answers, "retried": retried}


TABLE = (
    "faithfulness",
    "draft_support",
    "citation_precision",
    "citation_recall",
    "key_point_recall",
    "echo_rate",
    "refusal_on_topic",
    "refusal_off_topic",
    "fiche_cited",
    "first_text_p50_s",
    "first_text_p95_s",
    "total_p50_s",
)


def print_table(results: dict[str, dict[str, Any]], split: str) -> None:
    print(f"\nset: answers_{split} ({next(iter(results.values()))['summary']['questions']} questions)")
    print("| configuration | " + " | ".join(TABLE) + " |")
    print("| --- |" + " ---: |" * len(TABLE))
    for name, result in results.items():
        summary = result["summary"]
        print(f"| {name} | " + " | ".join("" if summary[k] is None else f"{summary[k]}" for k in TABLE) + " |")
    for name, result in results.items():
        if result["summary"]["retried"]:
            print(f"{name}: {result['summary']['retried']} answers asked again after a 503/504 (a busy machine?)")


async def _main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    rows = load_answer_set(args.set)[: args.limit or None]
    results: dict[str, dict[str, Any]] = {}
    rules = GroundingRules.from_settings(settings)
    interface = load_interface(settings.resolved_model_interface).embedder
    for name in args.configs.split(","):
        print(f"{name}: {len(rows)} questions", flush=True)
        if args.via:
            embedder = TritonEmbedder(args.triton or settings.triton_grpc_url, interface, timeout_s=60)
            results[name] = await run_config(args.via, rows, Scorer(embedder, rules))
            continue
        env, generator = CONFIGS[name]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) if args.logs is None else args.logs / name
            work.mkdir(parents=True, exist_ok=True)
            repository = None
            if generator is not None and generator != settings.generator_model:
                served = Settings.from_env(generator_model=generator)
                repository = render(served, Deployment.default(served), Path(tmp) / "repository")
            with local_stack(settings, work, repository, **env) as (triton, gateway):
                embedder = TritonEmbedder(triton.grpc_url, interface, timeout_s=60)
                results[name] = await run_config(gateway.url, rows, Scorer(embedder, rules))
    print_table(results, args.set)
    report = {
        "date": date.today().isoformat(),
        "command": "python -m benchmarks.answer_quality " + " ".join(args.argv),
        "set": args.set,
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    print(f"report: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.answer_quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--set", choices=["dev", "tune", "test"], default="test")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--limit", type=int, default=0, help="the first N questions only")
    parser.add_argument("--logs", type=Path, help="keep each configuration's tritonserver and gateway logs here")
    parser.add_argument("--via", help="measure this running gateway (its own configuration) instead")
    parser.add_argument("--triton", help="with --via: Triton's gRPC address for the scorer's embeddings")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "answer_quality.json")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if not args.via:
        unknown = set(args.configs.split(",")) - set(CONFIGS)
        if unknown:
            parser.error(f"unknown configuration(s) {sorted(unknown)}: choose among {', '.join(CONFIGS)}")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
