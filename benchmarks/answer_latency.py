"""Answer latency on the CPU profile: time to first streamed token and total answer time, by concurrency.

    .venv/bin/python benchmarks/answer_latency.py            # 8 answers at concurrency 1, 12 at 4 (~4 min)
    .venv/bin/python benchmarks/answer_latency.py --smoke    # 2 short answers, to keep the script working

Starts its own tritonserver (the rendered CPU repository: the embedder + the int4 generator) and gateway, then sends
streaming POST /v1/answers requests (greedy, the default max_tokens) with real questions: titles of the
corpus's "Fiche Question-réponse" fiches, picked with a fixed seed. For each request it records, on the
client side, the time to the `sources` event, to the first `delta` event (first token) and to the final
`answer` event, and from the final event the server's per-stage timings and token counts. Prints p50/p95
per concurrency and each stage's share of the total, and writes a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from _common import corpus_questions

from config.settings import Settings
from harness.gateway import local_stack


@dataclass
class Sample:
    concurrency: int
    sources_s: float
    first_token_s: float | None
    total_s: float
    embed_ms: float
    retrieve_ms: float
    generate_ms: float
    prompt_tokens: int
    completion_tokens: int
    covered: bool


async def _ask(client: httpx.AsyncClient, question: str, concurrency: int, max_tokens: int | None) -> Sample:
    started = time.perf_counter()
    sources = first = None
    final: dict[str, object] = {}
    event = ""
    body = {"question": question, "stream": True, **({"max_tokens": max_tokens} if max_tokens else {})}
    async with client.stream("POST", "/v1/answers", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                now = time.perf_counter() - started
                if event == "sources":
                    sources = now
                elif event == "delta" and first is None:
                    first = now
                elif event == "error":
                    raise RuntimeError(f"answer failed: {line}")
            elif line.startswith("data: ") and event == "answer":
                final = json.loads(line.removeprefix("data: "))
    total = time.perf_counter() - started
    timings, usage = final["timings_ms"], final["usage"]
    assert isinstance(timings, dict) and isinstance(usage, dict) and sources is not None
    return Sample(
        concurrency=concurrency,
        sources_s=sources,
        first_token_s=first,
        total_s=total,
        embed_ms=timings["embed"],
        retrieve_ms=timings["retrieve"],
        generate_ms=timings["generate"],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        covered=bool(final["covered"]),
    )


async def run(url: str, questions: list[str], concurrency: int, max_tokens: int | None) -> list[Sample]:
    pending = list(reversed(questions))
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def worker() -> None:
            while pending:
                samples.append(await _ask(client, pending.pop(), concurrency, max_tokens))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(samples: list[Sample]) -> dict[str, float | int]:
    answered = [s for s in samples if s.covered and s.first_token_s is not None]
    ttft = [s.first_token_s for s in answered if s.first_token_s is not None]
    total = [s.total_s for s in samples]
    stage_total = sum(s.total_s for s in answered) * 1000 or 1.0
    # After the first token: (tokens - 1) over the time from first token to the end, as the client saw it.
    decode = [
        (s.completion_tokens - 1) / (s.total_s - s.first_token_s)
        for s in answered
        if s.first_token_s is not None and s.completion_tokens > 1 and s.total_s > s.first_token_s
    ]
    return {
        "requests": len(samples),
        "answered": len(answered),
        "sources_p50_s": round(statistics.median(s.sources_s for s in samples), 3),
        "first_token_p50_s": round(statistics.median(ttft), 2) if ttft else -1,
        "first_token_p95_s": round(_pct(ttft, 0.95), 2) if ttft else -1,
        "total_p50_s": round(statistics.median(total), 2),
        "total_p95_s": round(_pct(total, 0.95), 2),
        "prompt_tokens_mean": round(statistics.mean(s.prompt_tokens for s in answered)) if answered else 0,
        "completion_tokens_mean": round(statistics.mean(s.completion_tokens for s in answered)) if answered else 0,
        "decode_tokens_per_s": round(statistics.median(decode), 1) if decode else 0,
        "share_embed": round(sum(s.embed_ms for s in answered) / stage_total, 4),
        "share_retrieve": round(sum(s.retrieve_ms for s in answered) / stage_total, 4),
        "share_generate": round(sum(s.generate_ms for s in answered) / stage_total, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="two short answers only")
    parser.add_argument("--requests", type=int, default=8, help="answers at concurrency 1 (x1.5 at 4)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    settings = Settings.from_env()
    plan = [(1, 2)] if args.smoke else [(1, args.requests), (4, args.requests * 3 // 2)]
    max_tokens = 16 if args.smoke else None
    questions = corpus_questions(settings, sum(n for _, n in plan) + 1, seed=11)
    summaries: dict[int, dict[str, float | int]] = {}
    samples: list[Sample] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_stack(settings, Path(tmp), ALBERT_CACHE_ENTRIES="0", ALBERT_ANSWER_MODE="drafted") as (_, gateway),
    ):
        asyncio.run(run(gateway.url, questions[-1:], 1, 8))  # warm-up
        offset = 0
        for concurrency, n in plan:
            batch = asyncio.run(run(gateway.url, questions[offset : offset + n], concurrency, max_tokens))
            offset += n
            samples.extend(batch)
            summaries[concurrency] = summarise(batch)
    print(
        f"\n{'conc':>4}{'n':>4}{'sources p50':>13}{'TTFT p50':>10}{'TTFT p95':>10}{'total p50':>11}{'total p95':>11}"
        f"{'prompt tok':>12}{'out tok':>9}{'tok/s':>7}{'embed':>8}{'retr.':>8}{'gen.':>8}"
    )
    for concurrency, s in summaries.items():
        print(
            f"{concurrency:>4}{s['requests']:>4}{s['sources_p50_s']:>12.2f}s{s['first_token_p50_s']:>9.2f}s"
            f"{s['first_token_p95_s']:>9.2f}s{s['total_p50_s']:>10.2f}s{s['total_p95_s']:>10.2f}s"
            f"{s['prompt_tokens_mean']:>12}{s['completion_tokens_mean']:>9}{s['decode_tokens_per_s']:>7}"
            f"{s['share_embed']:>8.1%}{s['share_retrieve']:>8.1%}{s['share_generate']:>8.1%}"
        )
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"answer-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
        meta = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()} {platform.processor()}",
            "cpus": os.cpu_count(),
            "generator_workers": settings.generator_workers,
            "generator_threads": settings.generator_threads,
            "answer_prompt_tokens": settings.answer_prompt_tokens,
        }
        report = {"meta": meta, "summary": summaries, "samples": [asdict(s) for s in samples]}
        path.write_text(json.dumps(report, indent=2))
        print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
