"""Schemathesis drives the HTTP API from its own OpenAPI document: no 5xx, documented status codes and
bodies, RFC-conformant handling of undeclared methods. Then hostile inputs (long, Unicode-heavy,
control-character, nested, malformed) on every route.

Value rules (question length, k range, audience) come from Settings and are enforced by the service layer
with 422; the schema documents types, so the "schema-valid data must be accepted" check is excluded.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from schemathesis.checks import positive_data_acceptance

from config.settings import Settings
from server.http.app import create_app
from server.runtime import serving
from tests.support.fixtures import (
    HashEmbedder,
    ScriptedGenerator,
    hostile_questions,
    write_mini_stack,
)


def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    write_mini_stack(tmp_path)
    generator = ScriptedGenerator()
    generator.pieces = ["Déclarez le vol [1]."]
    app = create_app(
        partial(
            serving,
            Settings(grpc_port=0, generator_tokenizer_dir=tmp_path / "tokenizer"),
            embedder=HashEmbedder(),
            generator=generator,
            index_dir=tmp_path / "index",
        )
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


@pytest.fixture(scope="module")
def drafting_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    """Drafted answers with a small prompt budget, so that long questions reach the budget check."""
    root = write_mini_stack(tmp_path_factory.mktemp("fuzz"))
    generator = ScriptedGenerator()
    generator.pieces = ["Déclarez le vol [1]."]
    settings_ = Settings(
        grpc_port=0,
        generator_tokenizer_dir=root / "tokenizer",
        answer_mode="drafted",
        answer_prompt_tokens=400,
        relevance_min_dense=0.0,
    )
    app = create_app(
        partial(serving, settings_, embedder=HashEmbedder(), generator=generator, index_dir=root / "index")
    )
    with TestClient(app) as client:
        yield client


_NESTED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    question=hostile_questions(),
    audience=st.none() | st.text(max_size=20) | st.sampled_from(["particuliers", "professionnels"]),
    k=st.none() | st.integers(min_value=-(2**40), max_value=2**40),
    stream=st.booleans(),
    extra=st.none() | _NESTED,
)
def test_hostile_inputs_on_every_route_never_give_a_5xx(
    drafting_client: TestClient[Any], question: str, audience: str | None, k: int | None, stream: bool, extra: Any
) -> None:
    """Long, Unicode-heavy, control-character and nested inputs on every route: a 2xx or a 4xx with the JSON
    error body, never a 5xx (the 2,000-character question of acronyms once gave a 500 on /v1/answers)."""
    body: dict[str, Any] = {"question": question, "audience": audience, "k": k, "stream": stream}
    if extra is not None:
        body["question" if isinstance(extra, (list, dict)) and question.startswith("a") else "extra"] = extra
    params = {"q": question, **({"audience": audience} if audience is not None else {})}
    responses = [
        drafting_client.post("/v1/answers", json=body),
        drafting_client.post("/v1/answers", json={"question": question, "k": 1}),
        drafting_client.get("/v1/search", params=params),
        drafting_client.post("/v1/search", json={"q": question, "audience": audience, "k": k}),
        drafting_client.get(f"/v1/fiches/{quote(question[:200], safe='')}"),
    ]
    for response in responses:
        assert response.status_code < 500, (response.request.url, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["error"]["message"]


def test_deeply_nested_and_malformed_bodies_are_400(drafting_client: TestClient[Any]) -> None:
    for raw in (b"[" * 60_000, b'{"question": ' * 4_000, b"\xff\xfe", b'{"question": "a\x00b"', b""):
        for path in ("/v1/answers", "/v1/search"):
            response = drafting_client.post(path, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 400, (path, raw[:20], response.status_code)
            assert response.json()["error"]["type"] == "invalid_request"
