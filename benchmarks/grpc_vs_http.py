"""Search over gRPC vs HTTP, side by side in one run: calls per second and p50/p99 latency.

    .venv/bin/python benchmarks/grpc_vs_http.py            # 640 searches per row (about 1 minute)
    .venv/bin/python benchmarks/grpc_vs_http.py --smoke    # a few seconds (run by the tests)

Starts its own tritonserver and gateway, then sends the same real questions (titles of the corpus's
question-type fiches) as `Search` RPCs (grpc.aio) and as `GET /v1/search` (httpx), k=5, at concurrency 1
and 64, interleaving the two transports. Both go through the same service layer, Triton embedding and
retrieval; the difference is the transport and the encoding (protobuf vs JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from _common import closed_loop, corpus_questions
from albert_proto.v1 import answers_pb2 as pb
from albert_proto.v1 import answers_pb2_grpc as pb_grpc

from config.settings import Settings
from harness.gateway import local_stack


async def _measure(call: Callable[[str], Awaitable[None]], queries: list[str], concurrency: int) -> dict[str, float]:
    latencies, seconds = await closed_loop(call, queries, concurrency)
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": round(len(ordered) / seconds, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
    }


async def bench_grpc(target: str, queries: list[str], concurrency: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.AnswerServiceStub(channel)  # type: ignore[no-untyped-call]

        async def call(query: str) -> None:
            await stub.Search(pb.SearchRequest(query=query, k=5), timeout=60)

        await call(queries[0])
        return await _measure(call, queries, concurrency)


async def bench_http(url: str, queries: list[str], concurrency: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def call(query: str) -> None:
            (await client.get("/v1/search", params={"q": query, "k": 5})).raise_for_status()

        await call(queries[0])
        return await _measure(call, queries, concurrency)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    settings = Settings.from_env()
    queries = corpus_questions(settings, 32 if args.smoke else args.requests, seed=5)
    rows: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        local_stack(settings, Path(tmp), ALBERT_CACHE_ENTRIES="0", ALBERT_ANSWER_MODE="drafted") as (_, gateway),
    ):
        for concurrency in (1, 64):
            grpc_row = asyncio.run(bench_grpc(gateway.grpc_target, queries, concurrency))
            http_row = asyncio.run(bench_http(gateway.url, queries, concurrency))
            rows.append({"transport": "gRPC Search", "concurrency": concurrency, **grpc_row})
            rows.append({"transport": "HTTP GET /v1/search", "concurrency": concurrency, **http_row})
    print(f"\n{'transport':<22}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'gRPC / HTTP':>13}")
    for row in rows:
        pair = [r for r in rows if r["concurrency"] == row["concurrency"]]
        ratio = float(pair[0]["rps"]) / float(pair[1]["rps"])  # type: ignore[arg-type]
        shown = f"{ratio:>12.2f}x" if str(row["transport"]).startswith("gRPC") else ""
        print(
            f"{row['transport']:<22}{row['concurrency']:>5}{row['rps']:>9}{row['p50_ms']:>9}{row['p99_ms']:>9}{shown}"
        )
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"grpc-vs-http-{time.strftime('%Y%m%d-%H%M%S')}.json"
        meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {platform.processor()}"}
        path.write_text(json.dumps({"meta": {**meta, "cpus": os.cpu_count()}, "results": rows}, indent=2))
        print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
