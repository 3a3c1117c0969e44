"""Corpus -> search index, with progress, skip-if-unchanged, and bad files reported and counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corpus.chunk import DEFAULT_MAX_WORDS, chunk_fiche
from corpus.embed_cache import EmbeddingCache
from corpus.index import FORMAT_VERSION, DenseScope, Manifest, build_index, fingerprint, read_manifest, topic_texts
from corpus.records import Fiche
from corpus.sources import CorpusSource, Rejected, describe_source, read_source

__all__ = ["INGEST_VERSION", "IngestReport", "ingest", "load_fiches", "progress_bars"]

# Bump when parsing, chunking or unit texts change, so that existing indexes are rebuilt.
INGEST_VERSION = "2"

Embed = Callable[[Sequence[str]], NDArray[np.float32]]


@dataclass(slots=True)
class IngestReport:
    index_dir: Path
    corpus_version: str
    unchanged: bool
    fiches: int = 0
    answerable: int = 0
    chunks: int = 0
    units: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0


def progress_bars(console: Console) -> Progress:
    """The progress display of every long step (set-up's builds, the ingest): description, bar, count, time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=console.quiet,
    )


def load_fiches(sources: Sequence[Path], progress: Progress | None = None) -> tuple[list[Fiche], list[Rejected]]:
    """Parse every source; a fiche present in several audiences is kept once with all its audiences."""
    fiches: dict[str, Fiche] = {}
    rejected: list[Rejected] = []
    task = progress.add_task("Reading fiches", total=None) if progress else None
    for source in sources:
        for item in read_source(source):
            if progress is not None and task is not None:
                progress.advance(task)
            if isinstance(item, Rejected):
                rejected.append(item)
                continue
            known = fiches.get(item.id)
            if known is None:
                fiches[item.id] = item
            else:
                known.audiences.extend(a for a in item.audiences if a not in known.audiences)
    return list(fiches.values()), rejected


def ingest(
    sources: Sequence[Path],
    index_dir: Path,
    *,
    embed: Embed,
    embedding_model: str,
    dim: int,
    cache_path: Path | None = None,
    hide_titles: frozenset[str] = frozenset(),
    max_words: int = DEFAULT_MAX_WORDS,
    dense_scope: DenseScope = "heads",
    force: bool = False,
    console: Console | None = None,
) -> IngestReport:
    console = console or Console(stderr=True)
    started = time.perf_counter()
    described: list[CorpusSource] = [describe_source(p) for p in sources]
    corpus_version = "+".join(s.version for s in described)
    key = fingerprint(
        [
            str(FORMAT_VERSION),
            INGEST_VERSION,
            embedding_model,
            str(max_words),
            dense_scope,
            *(s.sha256 for s in described),
            *sorted(hide_titles),
        ]
    )
    existing = read_manifest(index_dir)
    if not force and existing is not None and existing.fingerprint == key:
        console.print(f"[green]Index up to date[/] ({corpus_version}, built {existing.built_at}): nothing to do.")
        return IngestReport(
            index_dir,
            corpus_version,
            unchanged=True,
            fiches=existing.fiches,
            answerable=existing.answerable_fiches,
            chunks=existing.chunks,
            units=existing.units,
        )
    cache = EmbeddingCache(cache_path, dim) if cache_path is not None else None
    calls = 0

    def counted(texts: Sequence[str]) -> NDArray[np.float32]:
        nonlocal calls
        calls += len(texts)
        return embed(texts)

    with progress_bars(console) as progress:
        fiches, rejected = load_fiches([s.path for s in described], progress)
        fiches.sort(key=lambda f: f.id)
        chunks = {f.id: chunk_fiche(f, max_words) for f in fiches}
        answerable = [f for f in fiches if f.answerable]
        n_units = sum(1 + len(chunks[f.id]) for f in answerable)
        n_dense = len(answerable)
        if dense_scope in ("topics", "all"):
            n_dense += sum(len(topic_texts(f, hidden=hide_titles)) for f in answerable)
        if dense_scope in ("chunks", "all"):
            n_dense += n_units - len(answerable)
        manifest = Manifest(
            format=FORMAT_VERSION,
            fingerprint=key,
            corpus_version=corpus_version,
            sources=[s.path.name for s in described],
            built_at="",
            embedding_model=embedding_model,
            dim=dim,
            fiches=len(fiches),
            answerable_fiches=len(answerable),
            chunks=sum(map(len, chunks.values())),
            units=n_units,
            rejected=[f"{r.name}: {r.reason}" for r in rejected],
            dense_scope=dense_scope,
        )
        task = progress.add_task("Embedding passages", total=n_dense)
        index = build_index(
            fiches,
            chunks,
            embed=cache.wrap(counted) if cache is not None else counted,
            manifest=manifest,
            hide_titles=hide_titles,
            progress=lambda n: progress.advance(task, n),
        )
    if cache is not None:
        cache.save()
    index.save(index_dir)
    for item in rejected:
        console.print(f"[yellow]skipped[/] {item.name}: {item.reason}")
    report = IngestReport(
        index_dir,
        corpus_version,
        unchanged=False,
        fiches=len(fiches),
        answerable=len(answerable),
        chunks=manifest.chunks,
        units=manifest.units,
        rejected=rejected,
        embedded=calls,
        seconds=time.perf_counter() - started,
    )
    console.print(
        f"[green]Index built[/] in {report.seconds:.0f} s: {report.fiches} publications, {report.answerable} "
        f"answerable fiches, {report.chunks} chunks, {report.units} search units, {report.embedded} passages "
        f"embedded, {len(rejected)} files skipped -> {index_dir}"
    )
    return report
