"""Session fixtures of the real stack (tritonserver, gateways) and the markers: every test under
tests/integration and tests/quality is marked ``needs_setup`` (it reads what set-up built: the models, the
rendered repository, the index), so that ``pytest -m "not needs_setup"`` runs what a fresh checkout can."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from build_engines.fetch import CORPUS
from config.settings import Settings
from server.triton.process import TritonProcess
from tests.support.paths import TESTS
from tests.support.servers import Gateway, start_triton


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"integration", "quality"} & set(Path(str(item.path)).relative_to(TESTS).parts[:1]):
            item.add_marker(pytest.mark.needs_setup)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def corpus_tarball(settings: Settings) -> Path:
    path = settings.cache_dir / "downloads" / CORPUS.filename
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/test, which runs set-up before the tests")
    return path


@pytest.fixture(scope="session")
def triton(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    process = start_triton(settings, tmp_path_factory.mktemp("triton"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def drafting_gateway(
    settings: Settings, triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose answers are drafted by the generator (the shipped default quotes the fiches)."""
    log: Path = tmp_path_factory.mktemp("drafting") / "gateway.log"
    process = Gateway(settings, triton.grpc_url, log, ALBERT_ANSWER_MODE="drafted")
    try:
        process.wait_live()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def gateway(settings: Settings, triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    log: Path = tmp_path_factory.mktemp("gateway") / "gateway.log"
    process = Gateway(settings, triton.grpc_url, log)
    try:
        process.wait_live()
        yield process
    finally:
        process.stop()
