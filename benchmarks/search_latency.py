"""Search latency of the served retrieval next to the previous pipeline, side by side in one run.

    .venv/bin/python benchmarks/search_latency.py            # full run (a few minutes; first run builds e5)
    .venv/bin/python benchmarks/search_latency.py --smoke    # a few requests, to keep the script working

Two stacks (tritonserver + gateway each) on this machine: the current settings (EmbeddingGemma, score fusion,
audience preferred) and the previous pipeline (e5-small over fiche heads, rank fusion, strict audience). The
previous pipeline's e5 model, index and rendered repository are built into the cache on the first run.
Queries are corpus question titles (never the evaluation sets), sent one at a time (concurrency 1), caches
off, alternating between the two stacks so that machine noise hits both alike. Prints p50/p95 of the HTTP
round trip and of the gateway's own embed + retrieve time (what an answer adds before generating), and the
ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _common import corpus_questions
from rich.console import Console

from build_engines.cli import build_embedder, render
from build_engines.fetch import CORPUS, fetch
from config.settings import Settings
from corpus.cli import run_ingest
from harness.gateway import GatewayProcess
from server.triton.process import TritonPorts, TritonProcess

PREVIOUS = {"ALBERT_EMBEDDER": "e5-small", "ALBERT_DENSE_SCOPE": "heads", "ALBERT_AUDIENCE_FILTER": "strict"}


def previous_pipeline(settings: Settings, console: Console) -> dict[str, str]:
    """Build (once) what the previous pipeline serves; return the gateway's environment for it."""
    previous = Settings.from_env(
        embedder="e5-small", dense_scope="heads", index_dir=str(settings.cache_dir / "eval" / "index-e5-heads")
    )
    build_embedder(previous, console)
    repository = render(previous, out=settings.cache_dir / "eval" / "repository-e5")
    corpus = fetch(CORPUS, settings.cache_dir / "downloads")
    run_ingest(previous, [corpus], previous.resolved_index_dir, console=console)
    return {
        **PREVIOUS,
        "ALBERT_INDEX_DIR": str(previous.resolved_index_dir),
        "ALBERT_MODEL_INTERFACE": str(repository / "albert_interface.json"),
        "ALBERT_REPOSITORY": str(repository),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few requests only")
    parser.add_argument("--requests", type=int, default=200, help="searches per pipeline")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    settings = Settings.from_env()
    console = Console(stderr=True)
    n = 8 if args.smoke else args.requests
    queries = corpus_questions(settings, n + 2, seed=11)
    old_env = previous_pipeline(settings, console)
    repositories = {"current": settings.repository_dir, "previous": Path(old_env.pop("ALBERT_REPOSITORY"))}
    envs = {"current": {}, "previous": old_env}
    round_trip: dict[str, list[float]] = {name: [] for name in envs}
    server_side: dict[str, list[float]] = {name: [] for name in envs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tritons: dict[str, TritonProcess] = {}
        gateways: dict[str, GatewayProcess] = {}
        try:
            for name, repository in repositories.items():
                tritons[name] = TritonProcess(repository, work / name, TritonPorts.free(), log=work / f"{name}.log")
                tritons[name].start().wait_ready(timeout=300)
                gateways[name] = GatewayProcess(
                    settings, tritons[name].grpc_url, work / f"{name}-gw.log", ALBERT_CACHE_ENTRIES="0", **envs[name]
                ).wait_live()
            clients = {name: httpx.Client(base_url=g.url, timeout=60) for name, g in gateways.items()}
            for i, query in enumerate(queries):
                order = list(clients) if i % 2 == 0 else list(reversed(clients))
                for name in order:
                    started = time.perf_counter()
                    response = clients[name].get("/v1/search", params={"q": query, "k": 5})
                    elapsed = (time.perf_counter() - started) * 1000
                    response.raise_for_status()
                    if i >= 2:  # the first two warm both stacks up
                        timings = response.json()["timings_ms"]
                        round_trip[name].append(elapsed)
                        server_side[name].append(timings["embed"] + timings["retrieve"])
            for client in clients.values():
                client.close()
        finally:
            for gateway in gateways.values():
                gateway.stop()
            for triton in tritons.values():
                triton.stop()
    rows = {}
    print(f"\n{'pipeline':<10}{'searches':>9}{'p50 ms':>9}{'p95 ms':>9}{'embed+retrieve p50':>20}{'p95':>8}")
    for name in envs:
        rows[name] = {
            "searches": len(round_trip[name]),
            "p50_ms": round(statistics.median(round_trip[name]), 1),
            "p95_ms": round(percentile(round_trip[name], 0.95), 1),
            "server_p50_ms": round(statistics.median(server_side[name]), 1),
            "server_p95_ms": round(percentile(server_side[name], 0.95), 1),
        }
        r = rows[name]
        print(
            f"{name:<10}{r['searches']:>9}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['server_p50_ms']:>20}{r['server_p95_ms']:>8}"
        )
    ratio = rows["current"]["p50_ms"] / rows["previous"]["p50_ms"]
    print(f"\ncurrent / previous p50: {ratio:.2f}x; target: current p50 < 80 ms ({rows['current']['p50_ms']} ms)")
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"search-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
        report = {"date": time.strftime("%Y-%m-%d"), "previous": PREVIOUS, "rows": rows, "p50_ratio": round(ratio, 3)}
        path.write_text(json.dumps(report, indent=2))
        print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
