"""The persisted search index: fiches, chunks, search units, BM25 and dense vectors.

A *search unit* is one piece of text that can point a query to a fiche: each chunk (with its fiche title
and section path as context) and one "head" per fiche (title, description, breadcrumb, and the titles of
the questions the fiche lists as related). BM25 ranks every unit. A second BM25 index holds each
answerable fiche as one document (head and whole body), which rewards fiches whose text as a whole matches
rather than one passage.

Dense vectors say what a fiche is about. Their rows are set by the index's *dense scope*:
- ``heads`` (the default): one vector per fiche head (3,615 rows);
- ``topics``: the heads, plus one short vector per *topic* of the fiche — its title with its description,
  each heading path (chapters, situations and cases: "Rupture conventionnelle > Conditions > Salarié
  protégé") and each related question — so that a question about one situation the fiche covers meets that
  situation's own vector rather than an average of the whole fiche (46,916 rows; about 16 minutes of
  EmbeddingGemma on two cores, and no gain on the dev split: benchmarks/README.md);
- ``chunks``: the heads and every chunk (37,758 more rows);
- ``all``: the topics and every chunk (for GPU hosts).
A fiche's dense score is its best row. The retriever fuses the rankings by fiche.

Everything is written to one directory with a manifest; loading reads arrays and msgpack, no parsing, so
the gateway starts in seconds.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import bm25s
import msgspec
import numpy as np
from numpy.typing import NDArray

from corpus.analysis import FrenchAnalyzer
from corpus.chunk import chunk_context
from corpus.records import AUDIENCES, Chunk, Fiche

__all__ = [
    "FORMAT_VERSION",
    "Manifest",
    "SearchIndex",
    "Unit",
    "build_index",
    "load_index",
    "topic_texts",
    "unit_text",
]

FORMAT_VERSION = 3
DenseScope = Literal["heads", "topics", "chunks", "all"]
Embed = Callable[[Sequence[str]], NDArray[np.float32]]
Progress = Callable[[int], None]


class Unit(msgspec.Struct, frozen=True, array_like=True):
    fiche_id: str
    chunk_id: str  # "" for a fiche head
    kind: Literal["head", "chunk"]


class Manifest(msgspec.Struct, kw_only=True):
    format: int
    fingerprint: str
    corpus_version: str
    sources: list[str]
    built_at: str
    embedding_model: str
    dim: int
    fiches: int
    answerable_fiches: int
    chunks: int
    units: int
    rejected: list[str]
    dense_scope: DenseScope = "heads"
    hidden_titles: int = 0


def topic_texts(fiche: Fiche, *, hidden: frozenset[str] = frozenset()) -> list[str]:
    """The short texts of what ``fiche`` is about, beyond its head: title with description, every heading path
    (prefixed by the title), every related question. De-duplicated, in the fiche's order."""
    title = None if fiche.id in hidden else fiche.title
    texts = [" : ".join(p for p in (title, fiche.description) if p)]
    for block in fiche.blocks:
        for depth in range(1, len(block.path) + 1):
            texts.append(" > ".join(((title,) if title else ()) + block.path[:depth]))
    texts.extend(q.question for q in fiche.related_questions if q.id not in hidden)
    return [t for t in dict.fromkeys(texts) if t.strip()]


def unit_text(fiche: Fiche, chunk: Chunk | None, *, hidden: frozenset[str] = frozenset()) -> str:
    """The text a unit is found by, for BM25 and for the dense vector alike.

    ``hidden``: fiches whose titles must not be searchable (the evaluation of question-type fiches hides
    their titles everywhere: in their own units and in the related-question lists of other fiches).
    """
    title = None if fiche.id in hidden else fiche.title
    if chunk is not None:
        return chunk_context(title, chunk)
    parts = [title or "", fiche.description, " > ".join(b for b in fiche.breadcrumb if b != fiche.title)]
    parts.extend(q.question for q in fiche.related_questions if q.id not in hidden)
    return "\n".join(p for p in parts if p)


@dataclass(slots=True)
class SearchIndex:
    manifest: Manifest
    fiches: dict[str, Fiche]
    chunks: dict[str, Chunk]
    units: list[Unit]
    unit_fiche: NDArray[np.int32]  # int32 [units] -> position in fiche_ids
    fiche_ids: list[str]
    audience_bits: NDArray[np.uint8]  # uint8 [units], bit i = AUDIENCES[i]
    bm25: bm25s.BM25
    vectors: NDArray[np.float32]  # float32 [dense rows, dim], L2-normalised
    dense_units: NDArray[np.int32]  # int32 [dense rows] -> unit position, -1 for a topic row
    dense_fiche: NDArray[np.int32]  # int32 [dense rows] -> position in fiche_ids
    fiche_bm25: bm25s.BM25  # one document per answerable fiche
    fiche_docs: NDArray[np.int32]  # int32 [fiche documents] -> position in fiche_ids
    fiche_doc_bits: NDArray[np.uint8]  # uint8 [fiche documents], audience bits as audience_bits
    fiche_bits: NDArray[np.uint8]  # uint8 [fiche_ids], audience bits as audience_bits
    head_rows: NDArray[np.bool_]  # bool [dense rows]: the row is a fiche head
    chunk_rows: NDArray[np.bool_]  # bool [dense rows]: the row is a chunk
    dense_groups: NDArray[np.intp]  # first row of each run of dense rows of one fiche
    dense_group_fiche: NDArray[np.int32]  # the fiche of each run
    unit_groups: NDArray[np.intp]  # first unit of each run of units of one fiche
    unit_group_fiche: NDArray[np.int32]  # the fiche of each run

    def dense_audience_mask(self, audience: str | None) -> NDArray[np.bool_] | None:
        return _mask(self.fiche_bits[self.dense_fiche], audience)

    def fiche_audience_mask(self, audience: str | None) -> NDArray[np.bool_] | None:
        return _mask(self.fiche_doc_bits, audience)

    def audience_mask(self, audience: str | None) -> NDArray[np.bool_] | None:
        return _mask(self.audience_bits, audience)

    def fiche_ids_audience_mask(self, audience: str | None) -> NDArray[np.bool_] | None:
        """Per fiche (in ``fiche_ids`` order): published for ``audience``."""
        return _mask(self.fiche_bits, audience)

    def save(self, directory: Path) -> None:
        """Write atomically: a half-written index is never left where the gateway looks."""
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        enc = msgspec.msgpack.Encoder()
        (tmp / "fiches.msgpack").write_bytes(enc.encode(list(self.fiches.values())))
        (tmp / "chunks.msgpack").write_bytes(enc.encode(list(self.chunks.values())))
        (tmp / "units.msgpack").write_bytes(enc.encode(self.units))
        np.save(tmp / "vectors.npy", self.vectors)
        np.save(tmp / "dense_units.npy", self.dense_units)
        np.save(tmp / "dense_fiche.npy", self.dense_fiche)
        self.bm25.save(str(tmp / "bm25"), show_progress=False)
        self.fiche_bm25.save(str(tmp / "bm25_fiches"), show_progress=False)
        (tmp / "manifest.json").write_bytes(msgspec.json.format(msgspec.json.encode(self.manifest)))
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)


def _mask(bits: NDArray[np.uint8], audience: str | None) -> NDArray[np.bool_] | None:
    if audience is None:
        return None
    mask: NDArray[np.bool_] = (bits & (1 << AUDIENCES.index(audience))) != 0
    return mask


def _quiet_bm25s() -> None:
    """bm25s sets its own logger to DEBUG; its messages would flood any root handler a library installs."""
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def read_manifest(directory: Path) -> Manifest | None:
    try:
        return msgspec.json.decode((directory / "manifest.json").read_bytes(), type=Manifest)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def load_index(directory: Path) -> SearchIndex:
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"no search index in {directory} (run the ingest command first)")
    if manifest.format != FORMAT_VERSION:
        raise ValueError(f"index in {directory} has format {manifest.format}, expected {FORMAT_VERSION}")
    fiches = msgspec.msgpack.decode((directory / "fiches.msgpack").read_bytes(), type=list[Fiche])
    chunks = msgspec.msgpack.decode((directory / "chunks.msgpack").read_bytes(), type=list[Chunk])
    units = msgspec.msgpack.decode((directory / "units.msgpack").read_bytes(), type=list[Unit])
    _quiet_bm25s()
    bm25 = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
    fiche_bm25 = bm25s.BM25.load(str(directory / "bm25_fiches"), show_progress=False)
    vectors, dense_units = np.load(directory / "vectors.npy"), np.load(directory / "dense_units.npy")
    dense_fiche = np.load(directory / "dense_fiche.npy")
    return _assemble(manifest, fiches, chunks, units, vectors, dense_units, dense_fiche, bm25, fiche_bm25)


def _assemble(
    manifest: Manifest,
    fiches: list[Fiche],
    chunks: list[Chunk],
    units: list[Unit],
    vectors: NDArray[np.float32],
    dense_units: NDArray[np.int32],
    dense_fiche: NDArray[np.int32],
    bm25: bm25s.BM25,
    fiche_bm25: bm25s.BM25,
) -> SearchIndex:
    by_id = {f.id: f for f in fiches}
    fiche_ids = list(by_id)
    position = {fid: i for i, fid in enumerate(fiche_ids)}
    bits = {fid: sum(1 << AUDIENCES.index(a) for a in f.audiences) for fid, f in by_id.items()}
    answerable = [f for f in by_id.values() if f.answerable]
    unit_fiche = np.fromiter((position[u.fiche_id] for u in units), dtype=np.int32, count=len(units))
    dense_starts, unit_starts = _runs(dense_fiche), _runs(unit_fiche)
    return SearchIndex(
        manifest=manifest,
        fiches=by_id,
        chunks={c.id: c for c in chunks},
        units=units,
        unit_fiche=unit_fiche,
        fiche_ids=fiche_ids,
        audience_bits=np.fromiter((bits[u.fiche_id] for u in units), dtype=np.uint8, count=len(units)),
        bm25=bm25,
        vectors=vectors.astype(np.float32, copy=False),
        dense_units=dense_units.astype(np.int32, copy=False),
        dense_fiche=dense_fiche.astype(np.int32, copy=False),
        fiche_bm25=fiche_bm25,
        fiche_docs=np.array([position[f.id] for f in answerable], dtype=np.int32),
        fiche_doc_bits=np.array([bits[f.id] for f in answerable], dtype=np.uint8),
        fiche_bits=np.array([bits[fid] for fid in fiche_ids], dtype=np.uint8),
        head_rows=np.array([u >= 0 and units[u].kind == "head" for u in dense_units.tolist()], dtype=np.bool_),
        chunk_rows=np.array([u >= 0 and units[u].kind == "chunk" for u in dense_units.tolist()], dtype=np.bool_),
        dense_groups=dense_starts,
        dense_group_fiche=dense_fiche[dense_starts].astype(np.int32),
        unit_groups=unit_starts,
        unit_group_fiche=unit_fiche[unit_starts],
    )


def _runs(owner: NDArray[np.int32]) -> NDArray[np.intp]:
    """First position of each run of equal values (for ``np.maximum.reduceat``: a fiche's best row or unit)."""
    return np.flatnonzero(np.diff(owner, prepend=-1) != 0) if len(owner) else np.zeros(0, np.intp)


def fingerprint(parts: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def build_index(
    fiches: Sequence[Fiche],
    chunks_by_fiche: dict[str, list[Chunk]],
    *,
    embed: Embed,
    manifest: Manifest,
    hide_titles: frozenset[str] = frozenset(),
    progress: Progress | None = None,
    batch_size: int = 64,
) -> SearchIndex:
    """Build units, BM25 and vectors. ``embed`` maps passages (without prefix) to normalised vectors."""
    by_id = {f.id: f for f in fiches}
    units: list[Unit] = []
    texts: list[str] = []
    documents: list[str] = []
    for fiche in fiches:
        if not fiche.answerable:
            continue
        head = unit_text(fiche, None, hidden=hide_titles)
        units.append(Unit(fiche.id, "", "head"))
        texts.append(head)
        body = []
        for chunk in chunks_by_fiche.get(fiche.id, []):
            units.append(Unit(fiche.id, chunk.id, "chunk"))
            texts.append(unit_text(fiche, chunk, hidden=hide_titles))
            body.append(chunk.text)
        documents.append("\n".join([head, *body]))
    analyzer = FrenchAnalyzer()
    _quiet_bm25s()
    bm25 = bm25s.BM25()
    bm25.index([analyzer(t) or [""] for t in texts], show_progress=False)
    # Whole-fiche documents are long: a lower b penalises length less, a lower k1 saturates repeats sooner.
    fiche_bm25 = bm25s.BM25(k1=0.9, b=0.4)
    fiche_bm25.index([analyzer(t) or [""] for t in documents], show_progress=False)
    # Dense rows: (unit position or -1, fiche id, text).
    rows: list[tuple[int, str, str]] = []
    for position, unit in enumerate(units):
        if unit.kind == "head":
            rows.append((position, unit.fiche_id, texts[position]))
            if manifest.dense_scope in ("topics", "all"):
                fiche = by_id[unit.fiche_id]
                rows.extend((-1, fiche.id, t) for t in topic_texts(fiche, hidden=hide_titles))
        elif manifest.dense_scope in ("chunks", "all"):
            rows.append((position, unit.fiche_id, texts[position]))
    vectors = np.zeros((len(rows), manifest.dim), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        vectors[start : start + len(batch)] = embed([text for _, _, text in batch])
        if progress is not None:
            progress(len(batch))
    manifest.units = len(units)
    manifest.hidden_titles = len(hide_titles)
    manifest.built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    all_chunks = [c for f in fiches for c in chunks_by_fiche.get(f.id, [])]
    fiche_position = {f.id: i for i, f in enumerate(fiches)}
    return _assemble(
        manifest,
        list(fiches),
        all_chunks,
        units,
        vectors,
        np.array([unit for unit, _, _ in rows], dtype=np.int32),
        np.array([fiche_position[fiche_id] for _, fiche_id, _ in rows], dtype=np.int32),
        bm25,
        fiche_bm25,
    )
