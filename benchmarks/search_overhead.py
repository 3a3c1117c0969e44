"""Serving overhead, side by side in one run: the embedder in-process vs through Triton vs the gateway's /v1/search.

    .venv/bin/python benchmarks/search_overhead.py            # full run (about 3 minutes)
    .venv/bin/python benchmarks/search_overhead.py --smoke    # a few seconds, to keep the script working

Measures, at concurrency 1 and 64, on the same machine and the same queries (one process tree: this
script, one tritonserver, two gateways):
  A. query embeddings with onnxruntime in this process (the same ONNX file Triton serves);
  B. query embeddings through Triton (tritonclient gRPC, binary tensors, dynamic batching);
  C. full searches through the gateway (HTTP -> micro-batched Triton embedding -> BM25 + dense + fusion);
  D. the same with the gateway's micro-batching off (ALBERT_EMBED_BATCH_MAX=1).
Both gateways run with their caches off (every query is embedded). For B, C and D, Triton's statistics
give the calls it received and the executions it ran, hence requests per execution. Prints requests/s,
p50/p95, the ratios to A, and the issue's targets; writes a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from _common import closed_loop, corpus_questions

from config.settings import Settings
from harness.gateway import GatewayProcess, local_stack
from inference.embedding import Encoder

MODEL = "embedder"
LEVELS = (1, 64)
INPROCESS = "in-process onnxruntime"
BATCHED = "gateway /v1/search"
UNBATCHED = "gateway /v1/search, no micro-batch"


def triton_counts(url: str) -> tuple[int, int, int]:
    """(calls, executions, texts) Triton has counted for the embedding model since it started."""
    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    calls = int(stats["inference_stats"]["success"].get("count", 0))
    return calls, int(stats.get("execution_count", 0)), int(stats.get("inference_count", 0))


class Result:
    def __init__(self, name: str, concurrency: int, latencies: list[float], seconds: float) -> None:
        self.name = name
        self.concurrency = concurrency
        self.triton: tuple[int, int, int] | None = None  # calls, executions, texts during the measurement
        self.n = len(latencies)
        self.rps = self.n / seconds
        ordered = sorted(latencies)
        self.p50 = statistics.median(ordered) * 1000
        self.p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000

    @property
    def per_execution(self) -> float | None:
        """Requests of this measurement per Triton execution."""
        return None if not self.triton or not self.triton[1] else self.n / self.triton[1]

    def row(self) -> dict[str, float | int | str | None]:
        calls, executions, texts = self.triton or (None, None, None)
        return {
            "path": self.name,
            "concurrency": self.concurrency,
            "requests": self.n,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50, 1),
            "p95_ms": round(self.p95, 1),
            "triton_calls": calls,
            "triton_executions": executions,
            "triton_texts": texts,
            "requests_per_execution": None if self.per_execution is None else round(self.per_execution, 2),
        }


def measured(url: str, bench: Coroutine[Any, Any, Result]) -> Result:
    """Run ``bench`` and attach what Triton counted meanwhile."""
    before = triton_counts(url)
    result = asyncio.run(bench)
    result.triton = tuple(a - b for a, b in zip(triton_counts(url), before, strict=True))  # type: ignore[assignment]
    return result


def bench_inprocess(encoder: Encoder, queries: list[str], concurrency: int) -> Result:
    """Concurrency c in-process = c callers served by one encoder; c > 1 is the batched best case."""
    latencies: list[float] = []
    started = time.perf_counter()
    if concurrency == 1:
        for q in queries:
            t0 = time.perf_counter()
            encoder.encode([q], "query")
            latencies.append(time.perf_counter() - t0)
    else:
        for i in range(0, len(queries), concurrency):
            batch = queries[i : i + concurrency]
            t0 = time.perf_counter()
            encoder.encode(batch, "query")
            latencies.extend([time.perf_counter() - t0] * len(batch))
    return Result(INPROCESS, concurrency, latencies, time.perf_counter() - started)


async def bench_triton(url: str, queries: list[str], concurrency: int) -> Result:
    client = grpcaio.InferenceServerClient(url)
    try:

        async def call(q: str) -> None:
            data = np.array([[q.encode()]], dtype=np.object_)
            inputs = [grpcaio.InferInput("text", [1, 1], "BYTES"), grpcaio.InferInput("kind", [1, 1], "BYTES")]
            inputs[0].set_data_from_numpy(data)
            inputs[1].set_data_from_numpy(np.array([[b"query"]], dtype=np.object_))
            await client.infer("embedder", inputs, client_timeout=60)

        await call(queries[0])
        latencies, seconds = await closed_loop(call, queries, concurrency)
    finally:
        await client.close()
    return Result("Triton gRPC (embedding)", concurrency, latencies, seconds)


async def bench_gateway(url: str, queries: list[str], concurrency: int, name: str) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def call(q: str) -> None:
            response = await client.get("/v1/search", params={"q": q[:2000], "k": 5})
            response.raise_for_status()

        await call(queries[0])
        latencies, seconds = await closed_loop(call, queries, concurrency)
    return Result(name, concurrency, latencies, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few requests only")
    parser.add_argument("--requests", type=int, default=320, help="requests per measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    settings = Settings.from_env()
    n = 32 if args.smoke else args.requests
    queries = corpus_questions(settings, n, seed=7)
    encoder = Encoder(settings.embedding_dir, intra_op_threads=settings.embed_threads)
    encoder.encode(queries[:4], "query")
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_stack(settings, Path(tmp), ALBERT_CACHE_ENTRIES="0") as (triton, gateway),
    ):
        unbatched = GatewayProcess(
            settings, triton.grpc_url, Path(tmp) / "unbatched.log", ALBERT_CACHE_ENTRIES="0", ALBERT_EMBED_BATCH_MAX="1"
        ).wait_live()
        try:
            url = triton.grpc_url
            for concurrency in LEVELS:
                # Interleave the paths so that machine noise hits them alike.
                results.append(bench_inprocess(encoder, queries, concurrency))
                results.append(measured(url, bench_triton(url, queries, concurrency)))
                for name, target in ((BATCHED, gateway.url), (UNBATCHED, unbatched.url)):
                    results.append(measured(url, bench_gateway(target, queries, concurrency, name)))
        finally:
            unbatched.stop()
    print(f"\n{'path':<34}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'vs in-process':>15}{'req/exec':>10}")
    report = []
    for result in results:
        base = next(r for r in results if r.concurrency == result.concurrency and r.name.startswith("in-process"))
        ratio = result.rps / base.rps
        per = "" if result.per_execution is None else f"{result.per_execution:.1f}"
        print(
            f"{result.name:<34}{result.concurrency:>5}{result.rps:>9.1f}{result.p50:>9.1f}{result.p95:>9.1f}"
            f"{ratio:>14.0%}{per:>10}"
        )
        report.append({**result.row(), "throughput_vs_inprocess": round(ratio, 3)})
    by = {(r.name, r.concurrency): r for r in results}
    top = LEVELS[-1]
    gateway_top, gateway_one = by[(BATCHED, top)], by[(BATCHED, 1)]
    targets = {
        f"gateway >= 90 % of in-process at concurrency {top}": gateway_top.rps / by[(INPROCESS, top)].rps >= 0.9,
        f">= 8 requests per Triton execution at concurrency {top}": (gateway_top.per_execution or 0) >= 8,
        f"gateway concurrency {top} >= 4x concurrency 1": gateway_top.rps >= 4 * gateway_one.rps,
    }
    print(
        f"\nmicro-batching at concurrency {top}: {gateway_top.rps / by[(UNBATCHED, top)].rps:.2f}x the throughput "
        f"without it; gateway concurrency {top} / 1 = {gateway_top.rps / gateway_one.rps:.2f}x"
    )
    for target, met in targets.items():
        print(f"target {'met    ' if met else 'NOT met'}  {target}")
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"search-overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
        meta = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()} {platform.processor()}",
            "cpus": __import__("os").cpu_count(),
            "embedding_precision": settings.embedding_precision,
        }
        path.write_text(json.dumps({"meta": meta, "results": report, "targets": targets}, indent=2))
        print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
