"""Capacity model: how many GPUs and gateway workers serve the customer's peak, and ten times it, with a
p95 time to first token under 1 s. Prints the arithmetic.

    .venv/bin/python benchmarks/capacity.py            # measures the gateway's CPU cost here (~1 minute)
    .venv/bin/python benchmarks/capacity.py --smoke

Inputs:
- measured on this machine, in this process: the gateway's own CPU time per search and per streamed
  answer (the real index; query vectors and generated text from stand-ins, so Triton's work is not
  counted — it runs elsewhere): route, validation, retrieval, prompt, checks, SSE framing of every piece;
- published TensorRT-LLM figures for an 8B model in FP8 on one H200 (NVIDIA's published TensorRT-LLM
  performance overview):
  3,538 output tokens/s at 2,048 input / 128 output tokens offline, and about 32 ms to the first token of
  a 2,048-token prompt;
- the load: 800,000 requests a month = 1.1 requests/s over office hours, 5.6 at peak; answers of at most
  ``answer_prompt_tokens`` in and ``answer_default_max_tokens`` out (the settings).

Rules (stated, not measured): a server is kept at or below 70 % utilisation so that queueing keeps the p95
wait short (for an M/M/c queue at 70 % the wait is a fraction of a service time); the first token then
costs one scheduling step plus the prompt's prefill, well under 1 s.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec

from config.settings import Settings
from contract.model_interface import load_interface
from server.answers.generator import Generated
from server.http.app import create_app
from server.runtime import serving

if TYPE_CHECKING:
    import httpx

PUBLISHED_TOKENS_PER_S = 3538.0  # TensorRT-LLM, Llama-3.1-8B FP8, one H200, offline 2048/128
PUBLISHED_TTFT_2048_S = 0.032
AVERAGE, PEAK = 1.1, 5.6
UTILISATION = 0.7


class _Vectors:
    """Stand-in embedder: one fixed unit vector (retrieval costs the same whatever the vector)."""

    def __init__(self, dim: int) -> None:
        import numpy as np

        self.vector = np.full((1, dim), 1 / math.sqrt(dim), dtype=np.float32)

    async def embed(self, texts: list[str], *_: Any, **__: Any) -> Any:
        return self.vector.repeat(len(texts), axis=0)


class _Writer:
    """Stand-in generator: ``tokens`` pieces of about one token each, at once."""

    def __init__(self, tokens: int) -> None:
        self.pieces = ["mot "] * tokens

    async def ensure_ready(self) -> None:
        return None

    async def served_name(self) -> str:
        return "stand-in"

    async def stream(self, *_: Any, **__: Any) -> Any:
        for piece in self.pieces:
            yield piece
        yield Generated("length", None, None)


def measure(settings: Settings, questions: list[str], tokens: int) -> tuple[float, float]:
    """Gateway CPU seconds per search and per streamed answer of ``tokens`` pieces, through the app (the
    test client in place of uvicorn), with the caches off and every question treated as covered."""
    from litestar.testing import TestClient

    interface = load_interface(settings.resolved_model_interface)
    measured = msgspec.structs.replace(
        settings,
        cache_entries=0,
        grpc_port=0,
        relevance_min_dense=0.0,
        generator_tokenizer_dir=settings.generator_tokenizer_dir or interface.generator.tokenizer_dir,
    )
    app = create_app(partial(serving, measured, embedder=_Vectors(interface.embedder.dim), generator=_Writer(tokens)))
    results = []
    with TestClient(app) as client:
        calls: tuple[Callable[[str], httpx.Response], ...] = (
            lambda q: client.get("/v1/search", params={"q": q, "k": 5}),
            lambda q: client.post("/v1/answers", json={"question": q, "max_tokens": tokens, "stream": True}),
        )
        for call in calls:
            call(questions[0]).raise_for_status()  # warm-up
            started = time.process_time()
            for q in questions:
                call(q).raise_for_status()
            results.append((time.process_time() - started) / len(questions))
    return results[0], results[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    from _common import corpus_questions

    settings = Settings.from_env()
    questions = corpus_questions(settings, 10 if args.smoke else 200, seed=13)
    out_tokens, in_tokens = settings.answer_default_max_tokens, settings.answer_prompt_tokens
    search_cpu, answer_cpu = measure(settings, questions, out_tokens)
    per_token = PUBLISHED_TOKENS_PER_S * UTILISATION
    prefill = PUBLISHED_TTFT_2048_S * in_tokens / 2048
    print("Measured here (gateway CPU time, one process):")
    print(f"  per search {search_cpu * 1000:.1f} ms")
    print(f"  per streamed answer of {out_tokens} tokens {answer_cpu * 1000:.1f} ms")
    print("Published (TensorRT-LLM, 8B FP8, one H200):")
    print(f"  {PUBLISHED_TOKENS_PER_S:,.0f} output tokens/s, {per_token:,.0f} at {UTILISATION:.0%} utilisation")
    ttft_ms = PUBLISHED_TTFT_2048_S * 1000
    print(f"  prefill of {in_tokens} tokens = {ttft_ms:.0f} ms x {in_tokens}/2048 = {prefill * 1000:.0f} ms")
    print(f"\n{'load':<18}{'req/s':>7}{'tokens/s':>10}{'GPUs':>6}{'gateway cores':>15}{'workers':>9}")
    for label, rate in (("customer average", AVERAGE), ("customer peak", PEAK), ("10 x peak", 10 * PEAK)):
        tokens_per_s = rate * out_tokens
        gpus = max(1, math.ceil(tokens_per_s / per_token))
        cores = rate * answer_cpu / UTILISATION
        workers = max(1, math.ceil(cores))  # a gateway process uses one core (the GIL)
        print(f"{label:<18}{rate:>7.1f}{tokens_per_s:>10,.0f}{gpus:>6}{cores:>15.2f}{workers:>9}")
    print(
        f"\nGPUs = ceil(rate x {out_tokens} tokens / {per_token:,.0f} tokens/s). Gateway cores = rate x "
        f"{answer_cpu * 1000:.1f} ms / {UTILISATION:.0%}; workers = ceil(cores), plus one for redundancy. "
        f"First token at <= {UTILISATION:.0%} load: a scheduling step + {prefill * 1000:.0f} ms prefill + "
        "retrieval (tens of ms), under 1 s at p95 while the in-flight batch stays below max_batch_size."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
