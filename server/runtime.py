"""The process's wiring: ``open_services(settings)`` builds what both front ends serve, once.

``Services`` holds the Triton clients, the index, the embedding micro-batcher, the search and answer
services (with their caches and admission gates), the metrics and the one readiness check. The HTTP app
(``server/http``) and the gRPC server (``server/rpc``) each take a ``Services``; ``serving`` opens the
services and starts the gRPC API over them, side by side with the HTTP app that enters it at start-up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from config.settings import Settings
from contract.model_interface import GeneratorInterface, ModelInterface, load_interface
from corpus.index import Manifest, load_index
from server.answers.chat import ChatFormat
from server.answers.generator import Generator
from server.answers.service import AnswerService
from server.errors import ApiError
from server.metrics import GatewayMetrics
from server.schemas import HealthStatus
from server.search.service import Embedder, SearchService
from server.triton.batching import MicroBatcher
from server.triton.embedder import TritonEmbedder
from server.triton.generator import TritonGenerator

__all__ = ["Services", "open_services", "serving"]

log = logging.getLogger("albert.gateway")


@dataclass(frozen=True)
class Services:
    """What the HTTP and gRPC front ends share: one of each per process."""

    settings: Settings
    search: SearchService
    answers: AnswerService
    metrics: GatewayMetrics
    embedder: Embedder  # the client itself (the search service calls it through the micro-batcher)
    generator: Generator

    async def readiness(self) -> HealthStatus:
        """``ready``; ``degraded`` when only answers are unavailable (the generator model or its tokenizer: the
        gateway should stay in rotation for search); ``not ready`` when search is (index, Triton, embedder)."""
        checks = await self._search_checks()
        search_ok = all(v == "ok" for v in checks.values())
        checks["generator_tokenizer"] = "ok" if self.answers.chat is not None else "missing"
        if isinstance(self.generator, TritonGenerator) and checks.get("triton") == "ok":
            try:
                await self.generator.ensure_ready()
                checks["generator_model"] = "ok"
            except ApiError as exc:
                checks["generator_model"] = "not ready" if exc.code == "generator_unavailable" else exc.message
        everything = all(v == "ok" for v in checks.values())
        return HealthStatus(status="ready" if everything else "degraded" if search_ok else "not ready", checks=checks)

    async def search_ready(self) -> bool:
        """The search path alone (gRPC health follows it, polled every 5 s: no call to the generator)."""
        return all(v == "ok" for v in (await self._search_checks()).values())

    async def _search_checks(self) -> dict[str, str]:
        checks = {"index": "ok"}  # loaded before the services exist
        if isinstance(self.embedder, TritonEmbedder):
            checks.update(await self.embedder.readiness())
        return checks


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    index_dir: Path | None = None,
) -> AsyncIterator[Services]:
    """The services over Triton's models as the rendered repository describes them. Tests may pass an
    ``embedder`` and a ``generator`` (then nothing is read from the repository) and an ``index_dir``."""
    owned: list[TritonEmbedder | TritonGenerator] = []
    served_embedder = embedder is None  # an injected one is the caller's business
    interface = None if embedder and generator else load_interface(settings.resolved_model_interface)
    try:
        if embedder is None:
            assert interface is not None
            embedder = TritonEmbedder(settings.triton_grpc_url, interface.embedder, timeout_s=settings.triton_timeout_s)
            owned.append(embedder)
        if generator is None:
            assert interface is not None
            _check_limits(settings, interface.generator)
            generator = TritonGenerator(
                settings.triton_grpc_url, interface.generator, timeout_s=settings.generator_timeout_s
            )
            owned.append(generator)
        loaded = load_index(index_dir or settings.resolved_index_dir)
        if served_embedder:
            _check_index(settings, loaded.manifest, interface)
        metrics = GatewayMetrics()
        limit = settings.embed_batch_max if interface is None else interface.embedder.max_batch_size
        search = SearchService(settings, loaded, _micro_batched(embedder, settings, metrics, limit), metrics)
        tokenizer_dir = settings.generator_tokenizer_dir or (interface.generator.tokenizer_dir if interface else None)
        answers = AnswerService(
            settings, search, generator, _chat_format(tokenizer_dir), concurrency=_answers_at_once(settings, interface)
        )
        log.info("index loaded: %s", loaded.manifest.corpus_version)
        yield Services(settings, search, answers, metrics, embedder, generator)
    finally:
        for client in owned:
            await client.close()


@asynccontextmanager
async def serving(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    index_dir: Path | None = None,
) -> AsyncIterator[Services]:
    """The services and, unless ``ALBERT_GRPC_PORT`` is 0, the gRPC API over them (stopped first, in-flight
    calls given ``drain_s``); what ``python -m server`` hands the HTTP app."""
    from server.rpc.server import start_grpc_server  # grpc.aio is only loaded where the API is served

    async with open_services(settings, embedder=embedder, generator=generator, index_dir=index_dir) as services:
        rpc = await start_grpc_server(services) if settings.grpc_port else None
        try:
            yield services
        finally:
            if rpc is not None:
                await rpc.stop(grace_s=settings.drain_s)


def _chat_format(tokenizer_dir: Path | None) -> ChatFormat | None:
    if tokenizer_dir is None:
        log.warning("answers are unavailable (search works): no generator tokenizer (ALBERT_GENERATOR_TOKENIZER_DIR)")
        return None
    try:
        return ChatFormat(tokenizer_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        log.warning("answers are unavailable (search works): %s", exc)
        return None


def _micro_batched(embedder: Embedder, settings: Settings, metrics: GatewayMetrics, model_limit: int) -> Embedder:
    max_batch = min(settings.embed_batch_max, model_limit)
    if max_batch <= 1:
        return embedder

    async def call(texts: list[str], kind: str, timeout_s: float | None) -> NDArray[np.float32]:
        return await embedder.embed(texts, kind, timeout_s=timeout_s)

    return MicroBatcher(
        call,
        max_batch=max_batch,
        max_wait_s=settings.embed_batch_wait_ms / 1000,
        on_batch=metrics.embed_batch.observe,
        on_queue=metrics.embed_queue.set,
    )


def _answers_at_once(settings: Settings, interface: ModelInterface | None) -> int:
    """The default of ``answers_max_active``: the embedding model's instances for quoted answers (embedding
    their candidate sentences is their cost: on the CPU default, one at a time gave admitted answers a p50 of
    5.0 s under a burst, two at a time 11.4 s; benchmarks/README.md), the generator's concurrent sequences
    when answers are drafted."""
    if interface is None:
        return 1
    if settings.answer_mode == "quoted":
        return interface.embedder.instances
    return interface.generator.max_concurrency


def _check_limits(settings: Settings, generator: GeneratorInterface) -> None:
    """Warn when the answer settings exceed what the rendered generator accepts (its requests would fail)."""
    if settings.answer_max_tokens > generator.max_output_tokens:
        log.warning(
            "ALBERT_ANSWER_MAX_TOKENS=%d exceeds the generator's max output length %d: longer answers will fail",
            settings.answer_max_tokens,
            generator.max_output_tokens,
        )
    if settings.answer_prompt_tokens > generator.max_input_tokens:
        log.warning(
            "ALBERT_ANSWER_PROMPT_TOKENS=%d exceeds the generator's max input length %d: answers will fail",
            settings.answer_prompt_tokens,
            generator.max_input_tokens,
        )


def _check_index(settings: Settings, manifest: Manifest, interface: ModelInterface | None) -> None:
    """Refuse an index whose vectors the served embedder cannot be compared with (every search would fail), and
    warn when it was built with another model of the same width (searches would run, ranked wrongly)."""
    if interface is not None and interface.embedder.dim != manifest.dim:
        raise RuntimeError(
            f"the index was built with {manifest.embedding_model} ({manifest.dim}-d vectors) but the served embedder "
            f"'{interface.embedder.model}' gives {interface.embedder.dim}-d vectors: rebuild the index with the served "
            "embedder (python -m build_engines setup with the same ALBERT_EMBEDDER settings)"
        )
    try:
        meta = json.loads((settings.embedding_dir / "embedder.json").read_text())
        expected = settings.embedding_model_id(meta)
    except (OSError, ValueError, KeyError):
        return  # the model directory lives elsewhere (a GPU host's): nothing to compare with here
    if expected != manifest.embedding_model:
        log.warning(
            "the index was built with %s, the settings name %s: rankings will be wrong until the index is rebuilt",
            manifest.embedding_model,
            expected,
        )
    tower = settings.query_embedding_dir
    if tower is not None:
        try:
            trained_for = json.loads((tower / "embedder.json").read_text())["query_tower"]["index_model"]
        except (OSError, ValueError, KeyError, TypeError):
            trained_for = None
        if trained_for != manifest.embedding_model:
            log.warning(
                "the query tower %s was trained for the index of %s, not this one (%s): rankings will be wrong until "
                "set-up trains it again",
                tower,
                trained_for,
                manifest.embedding_model,
            )
