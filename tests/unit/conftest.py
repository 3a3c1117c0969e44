"""The mini corpus and its index, built once for the unit tests that read them (``hashing_embed`` vectors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import mini_index, write_mini_corpus


@pytest.fixture(scope="session")
def mini_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The mini corpus (with its malformed file) and its index."""
    root = tmp_path_factory.mktemp("mini")
    corpus = write_mini_corpus(root / "corpus")
    report = mini_index(corpus, root / "index")
    assert not report.unchanged
    return corpus, root / "index"


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini corpus without its malformed file."""
    return write_mini_corpus(tmp_path_factory.mktemp("mini-clean") / "corpus", with_broken=False)
