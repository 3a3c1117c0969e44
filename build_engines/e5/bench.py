"""Side-by-side speed of built E5 model directories: ``python -m build_engines.e5.bench DIR [DIR ...]``.

Measures what the two consumers feel: the latency of one query (the gateway's path) and the throughput
of a batch of 32 passages of about 200 tokens (the indexer's path), through :class:`inference.embedding.Encoder`
so tokenisation and padding are included. The models are measured in interleaved rounds of the same run,
so a neighbour's load on a shared machine hits them alike and the printed ratios stay comparable; the
best round's throughput is reported next to the median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from build_engines.e5.french_samples import FRENCH_SAMPLES, LONG_PASSAGE_SENTENCES
from inference.embedding import Encoder

__all__ = ["BenchResult", "bench_model_dirs", "make_passages"]


@dataclass(kw_only=True)
class BenchResult:
    model_dir: Path
    query_ms: list[float] = field(default_factory=list)
    passages_per_s: list[float] = field(default_factory=list)
    passage_tokens_mean: float = 0.0

    @property
    def query_ms_median(self) -> float:
        return statistics.median(self.query_ms)

    @property
    def query_ms_p90(self) -> float:
        return statistics.quantiles(self.query_ms, n=10)[-1]


def make_passages(encoder: Encoder, n: int = 32, target_tokens: int = 200) -> list[str]:
    """``n`` distinct passages of about ``target_tokens`` tokens built from the sample sentences."""
    passages: list[str] = []
    sentences = list(LONG_PASSAGE_SENTENCES)
    for i in range(n):
        rotated = sentences[i % len(sentences) :] + sentences[: i % len(sentences)]
        words: list[str] = []
        k = 0
        while not words or encoder.count_tokens([" ".join(words)], "passage")[0] < target_tokens:
            words.extend(rotated[k % len(rotated)].split())
            k += 1
        while encoder.count_tokens([" ".join(words)], "passage")[0] > target_tokens:
            words.pop()
        passages.append(" ".join(words))
    return passages


def bench_model_dirs(model_dirs: Sequence[Path], *, threads: int = 2, rounds: int = 3) -> list[BenchResult]:
    encoders = [Encoder(d, intra_op_threads=threads) for d in model_dirs]
    passages = make_passages(encoders[0])
    results = [
        BenchResult(model_dir=d, passage_tokens_mean=statistics.mean(e.count_tokens(passages, "passage")))
        for d, e in zip(model_dirs, encoders, strict=True)
    ]
    for encoder in encoders:  # warm-up: first runs at a shape allocate
        encoder.encode(list(FRENCH_SAMPLES[:4]), "query")
        encoder.encode(passages, "passage")
    for _ in range(rounds):
        for encoder, result in zip(encoders, results, strict=True):
            for query in FRENCH_SAMPLES:
                start = time.perf_counter()
                encoder.encode([query], "query")
                result.query_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            encoder.encode(passages, "passage")
            result.passages_per_s.append(len(passages) / (time.perf_counter() - start))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m build_engines.e5.bench", description=__doc__)
    parser.add_argument("model_dirs", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = bench_model_dirs(args.model_dirs, threads=args.threads, rounds=args.rounds)
    base = results[0]
    print(f"threads={args.threads} rounds={args.rounds}: {len(FRENCH_SAMPLES)} single queries, 32 passages per batch")
    for r in results:
        best, median = max(r.passages_per_s), statistics.median(r.passages_per_s)
        print(
            f"{r.model_dir!s:32s} query median {r.query_ms_median:6.2f} ms (p90 {r.query_ms_p90:6.2f}, "
            f"x{base.query_ms_median / r.query_ms_median:4.2f})  passages best {best:5.1f}/s "
            f"median {median:5.1f}/s (x{median / statistics.median(base.passages_per_s):4.2f}, "
            f"{r.passage_tokens_mean:.0f} tokens each)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
