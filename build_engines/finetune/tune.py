"""``python -m build_engines finetune-embedder``: contrastive fine-tuning of the embedder on pairs mined from the
corpus (``pairs``) and/or given by a platform team (advisors' feedback), then the same export, int8
quantisation and checks as the base model (``build_engines.gemma.build``): the result is a model directory
served by Triton exactly like the base one (``ALBERT_EMBEDDER_FINETUNED=1`` serves it and re-indexes).

The training itself (``train``) runs in the build environment (torch); on two CPU cores most of its time is
the one pass of the frozen layers over every text, which a GPU host runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from build_engines.buildenv import Steps, ensure_build_venv, no_steps
from build_engines.finetune.pairs import Pair, mine_pairs, read_pairs, write_bundle
from build_engines.gemma.build import (
    PREFIXES,
    GemmaBuild,
    build_env,
    built_model_meta,
    export_model_dir,
    fetch_checkpoint,
)
from corpus.index import SearchIndex
from corpus.records import Fiche

__all__ = [
    "QUERY_TOWER",
    "FinetuneOptions",
    "finetune_embedder",
    "finetuned_is_built",
    "is_finetuned",
    "train_query_tower",
]

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]
FINETUNE_VERSION = "2"  # 2: texts truncated by the tokenizer (end-of-text kept)


@dataclass(frozen=True, slots=True)
class FinetuneOptions:
    corpus_pairs: bool = True
    pairs_file: Path | None = None
    max_pairs: int | None = None
    layers: int = 2
    epochs: int = 1
    batch: int = 32
    lr: float = 2e-5
    seed: int = 0
    threads: int = 2
    passage_tokens: int = 128
    # "both": queries and fiches through the trained layers (the index is rebuilt with the result);
    # "query": the query tower, trained against the fixed vectors of an index (``train_query_tower``).
    side: str = "both"


# The query tower's options: untuned first choices (batch 64 against the whole corpus, 2.5 x the learning rate
# of the two-sided tuning, which sees far fewer negatives per step).
QUERY_TOWER = FinetuneOptions(side="query", batch=64, lr=5e-5)


def _fingerprint(pairs: list[Pair], options: FinetuneOptions) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(asdict(pair), ensure_ascii=False).encode())
    settings = {k: v for k, v in asdict(options).items() if k not in ("pairs_file", "threads")}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(FINETUNE_VERSION.encode())
    return digest.hexdigest()


def _finetune_meta(out: Path) -> dict[str, object] | None:
    tuning = (built_model_meta(out) or {}).get("finetune")
    return tuning if isinstance(tuning, dict) else None


def is_finetuned(out: Path) -> bool:
    """``out`` holds a fine-tuned model directory (whatever its pairs and options)."""
    return _finetune_meta(out) is not None


def finetuned_is_built(out: Path, fingerprint: str) -> bool:
    """``out`` holds the model these pairs and options give."""
    tuning = _finetune_meta(out)
    return tuning is not None and tuning.get("fingerprint") == fingerprint


def collect_pairs(fiches: dict[str, Fiche], options: FinetuneOptions) -> list[Pair]:
    pairs = mine_pairs(fiches, seed=options.seed, max_pairs=options.max_pairs) if options.corpus_pairs else []
    if options.pairs_file is not None:
        pairs += read_pairs(options.pairs_file, fiches, seed=options.seed)
    if not pairs:
        raise ValueError("no training pairs: keep the corpus pairs or give a pairs file")
    return pairs


def finetune_embedder(
    build: GemmaBuild,
    fiches: dict[str, Fiche],
    out: Path,
    options: FinetuneOptions,
    log: Log = print,
    progress: Progress | None = None,
    steps: Steps = no_steps,
) -> Path:
    """Fine-tune EmbeddingGemma on the pairs and publish the model directory ``out`` (skipped when the same pairs
    and options already built it)."""
    pairs = collect_pairs(fiches, options)
    fingerprint = _fingerprint(pairs, options)
    if finetuned_is_built(out, fingerprint):
        log(f"fine-tuned embedder up to date ({out})")
        return out

    def bundle(directory: Path) -> dict[str, int]:
        counts = write_bundle(pairs, fiches, directory)
        log(f"training pairs: {len(pairs)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
        return counts

    _train_and_export(build, out, options, fingerprint, bundle, {}, log, progress, steps)
    return out


def train_query_tower(
    build: GemmaBuild,
    index: SearchIndex,
    out: Path,
    options: FinetuneOptions = QUERY_TOWER,
    log: Log = print,
    progress: Progress | None = None,
    steps: Steps = no_steps,
) -> Path:
    """Fine-tune the query side of EmbeddingGemma against ``index``'s fiche-head vectors and publish it as the
    model directory ``out`` (its ``embedder.json`` names the index model it was trained for; skipped when the
    same pairs, options and index vectors already built it). Fiches stay embedded by the base model."""
    if not index.head_rows.all():
        raise ValueError("the query tower is trained against an index of fiche heads only (ALBERT_DENSE_SCOPE=heads)")
    options = replace(options, side="query")
    pairs = collect_pairs(index.fiches, options)
    digest = hashlib.sha256(_fingerprint(pairs, options).encode())
    digest.update(f"{index.manifest.embedding_model}|{index.manifest.fingerprint}".encode())
    fingerprint = digest.hexdigest()
    if finetuned_is_built(out, fingerprint):
        log(f"query tower up to date ({out})")
        return out

    def bundle(directory: Path) -> dict[str, int]:
        directory.mkdir(parents=True)
        fiche_ids = [index.fiche_ids[i] for i in index.dense_fiche]
        with (directory / "fiches.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": f}) + "\n" for f in fiche_ids)
        np.save(directory / "targets.npy", np.ascontiguousarray(index.vectors, dtype=np.float32))
        known = set(fiche_ids)
        kept = [p for p in pairs if p.positives[0] in known]
        with (directory / "pairs.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in kept)
        counts = dict(Counter(p.kind for p in kept))
        log(f"query tower: {len(kept)} training pairs ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
        return counts

    extra = {"query_tower": {"index_model": index.manifest.embedding_model}}
    _train_and_export(build, out, options, fingerprint, bundle, extra, log, progress, steps)
    return out


def _train_and_export(
    build: GemmaBuild,
    out: Path,
    options: FinetuneOptions,
    fingerprint: str,
    bundle: Callable[[Path], dict[str, int]],
    extra: Mapping[str, object],
    log: Log,
    progress: Progress | None,
    steps: Steps,
) -> None:
    """Write the training bundle (``bundle`` returns the pairs per kind), train in the build environment,
    export with the trained weights into ``out`` (its ``embedder.json`` records the run and ``extra``)."""
    started = time.perf_counter()
    checkpoint = fetch_checkpoint(build, log)
    python = ensure_build_venv(build.venv, log, steps)
    work = out.with_name(f".{out.name}.training")
    shutil.rmtree(work, ignore_errors=True)
    try:
        counts = bundle(work / "bundle")
        report = _run_training(_train_command(python, checkpoint, work, options), log, progress)
        export_model_dir(
            build,
            checkpoint,
            out,
            log,
            weights=work / "trained" / "weights.safetensors",
            extra={"finetune": {**report, "fingerprint": fingerprint, "pair_kinds": counts}, **extra},
            steps=steps,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{out.name} built in {time.perf_counter() - started:.0f} s -> {out}")


def _train_command(python: Path, checkpoint: Path, work: Path, options: FinetuneOptions) -> list[str]:
    train_options = {
        **{k: v for k, v in asdict(options).items() if k not in ("corpus_pairs", "pairs_file", "max_pairs")},
        "query_prefix": PREFIXES["query"],
        "passage_prefix": PREFIXES["passage"],
    }
    command = [str(python), "-m", "build_engines.finetune.train", str(checkpoint), str(work / "bundle")]
    return command + [str(work / "trained"), json.dumps(train_options)]


def _run_training(command: list[str], log: Log, progress: Progress | None) -> dict[str, object]:
    """Run the training step, turning its JSON progress lines into ``progress`` calls; its report at the end."""
    lines: list[str] = []
    report: dict[str, object] | None = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=build_env()
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("stage") == "done":
                report = {k: v for k, v in event.items() if k != "stage"}
            elif progress is not None and "done" in event:
                progress(str(event["stage"]), int(event["done"]), int(event["total"]))
    if process.returncode != 0 or report is None:
        raise RuntimeError("fine-tuning failed:\n" + "".join(lines[-15:]))
    log(
        f"fine-tuning: {report['steps']} steps in {report['seconds']} s, loss {report['loss_start']} (first tenth) "
        f"-> {report['loss_end']} (last tenth)"
    )
    return report
