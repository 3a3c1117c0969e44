"""The cost of the GPU embedder's design, side by side: the embedder's tokenisation in this process vs through the GPU
profile's tokenizer model (``embedder_tokenize``, python backend) in the real tritonserver.

    .venv/bin/python benchmarks/embedder_tokenize_hop.py            # full run (about a minute)
    .venv/bin/python benchmarks/embedder_tokenize_hop.py --smoke    # a few seconds

On GPU hosts the embedder is an ensemble: this python model tokenises (CPU), then the encoder (fp16, or
fp32 for EmbeddingGemma) runs on Triton's onnxruntime backend (C++, no python hop). The python hop is what
the design adds over a model that takes token ids; this script measures it on this machine (the encoder
itself needs a GPU). Same queries, concurrency 1 and 16; prints requests/s, p50/p95 and the added latency per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcaio
from _common import closed_loop, corpus_questions

from build_engines.repository import ModelSpec, render_model
from config.settings import Settings
from inference.embedding import EncoderTokenizer, bucket_width
from server.triton.process import TritonPorts, TritonProcess

MODEL = "embedder_tokenize"


def _repository(root: Path, model_dir: Path) -> Path:
    """A repository holding only the tokenizer model, rendered from its template as a deployment would."""
    max_length = int(json.loads((model_dir / "embedder.json").read_text())["max_length"])
    values = {"model_dir": model_dir, "max_length": max_length, "max_batch_size": 64, "queue_delay_us": 2000}
    out = root / "repository"
    spec = ModelSpec("embedder_gpu/tokenize", MODEL, {"model_name": MODEL, "instances": 1, **values})
    render_model(spec, out / MODEL)
    return out


def _row(name: str, concurrency: int, latencies: list[float], seconds: float) -> dict[str, object]:
    ordered = sorted(latencies)
    return {
        "path": name,
        "concurrency": concurrency,
        "requests": len(ordered),
        "rps": round(len(ordered) / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
    }


async def _run(settings: Settings, queries: list[str], levels: list[int], work: Path) -> list[dict[str, object]]:
    tokenizer = EncoderTokenizer(settings.embedding_dir)

    async def in_process(query: str) -> None:
        rows = tokenizer.ids([query], "query")
        tokenizer.pad(rows, bucket_width(len(rows[0]), tokenizer.max_length))

    repository = _repository(work, settings.embedding_dir)
    rows: list[dict[str, object]] = []
    with TritonProcess(repository, work / "triton", TritonPorts.free(), log=work / "triton.log") as triton:
        client = grpcaio.InferenceServerClient(triton.grpc_url)

        async def through_triton(query: str) -> None:
            tensors = []
            for name, value in (("text", query), ("kind", "query")):
                tensor = grpcaio.InferInput(name, [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=np.object_))
                tensors.append(tensor)
            await client.infer(MODEL, tensors)

        try:
            for concurrency in levels:
                await closed_loop(through_triton, queries[:8], concurrency)  # warm-up
                for name, call in (("in-process", in_process), ("triton python model", through_triton)):
                    latencies, seconds = await closed_loop(call, queries, concurrency)
                    rows.append(_row(name, concurrency, latencies, seconds))
        finally:
            await client.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few queries, to check the script works")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(f"benchmarks/results/embedder-tokenize-hop-{time.strftime('%Y%m%d-%H%M%S')}.json"),
    )
    args = parser.parse_args()
    settings = Settings.from_env()
    queries = corpus_questions(settings, 40 if args.smoke else 800, seed=7)
    levels = [1, 16]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        rows = asyncio.run(_run(settings, queries, levels, Path(tmp)))
    print(f"{'path':<22}{'conc':>6}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for row in rows:
        print(f"{row['path']:<22}{row['concurrency']:>6}{row['rps']:>9}{row['p50_ms']:>9}{row['p95_ms']:>9}")
    by = {(r["path"], r["concurrency"]): r for r in rows}
    for concurrency in levels:
        local, hop = by[("in-process", concurrency)], by[("triton python model", concurrency)]
        added = float(hop["p50_ms"]) - float(local["p50_ms"])  # type: ignore[arg-type]
        ratio = float(hop["rps"]) / float(local["rps"])  # type: ignore[arg-type]
        print(f"concurrency {concurrency}: python hop adds {added:.2f} ms at p50; triton / in-process rps {ratio:.3f}")
    if not args.smoke:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report: dict[str, object] = {"machine": platform.platform(), "processor": platform.processor(), "rows": rows}
        report["seconds"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
