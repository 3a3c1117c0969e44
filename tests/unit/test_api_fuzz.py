"""Schemathesis drives the HTTP API from its own OpenAPI document: no 5xx, documented status codes and
bodies, RFC-conformant handling of undeclared methods.

Value rules (question length, k range, audience) come from Settings and are enforced by the service layer
with 422; the schema documents types, so the "schema-valid data must be accepted" check is excluded.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from rich.console import Console
from schemathesis.checks import positive_data_acceptance

from corpus.ingest import ingest
from server.app import create_app
from server.settings import Settings
from tests.fixtures import HashEmbedder, ScriptedGenerator, hashing_embed, write_mini_corpus, write_word_tokenizer


def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    corpus = write_mini_corpus(tmp_path / "corpus")
    ingest(
        [corpus], tmp_path / "index", embed=hashing_embed, embedding_model="hash", dim=384, console=Console(quiet=True)
    )
    generator = ScriptedGenerator()
    generator.pieces = ["Déclarez le vol [1]."]
    app = create_app(
        Settings(grpc_port=0, generator_tokenizer_dir=write_word_tokenizer(tmp_path / "tokenizer")),
        embedder=HashEmbedder(),
        generator=generator,
        index_dir=tmp_path / "index",
    )
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/search", "/v1/answers", "/v1/fiches/{fiche_id}", "/health/ready"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
