"""The gRPC API over a real grpc.aio server in the gateway's lifespan, with the mini corpus, the hashing
embedder and a scripted generator: contract parity with HTTP, error table, malformed and random messages,
deadlines, cancellation, health, reflection, TLS and mutual TLS. The real stack: test_grpc_stack.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import msgspec
import pytest
from albert_client import (
    TLS,
    AnswerBundle,
    AnswerClient,
    AsyncAnswerClient,
    Delta,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from albert_client.errors import AlbertError, DeadlineExceeded, Overloaded
from albert_proto.v1 import answers_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from config.settings import Settings
from server import schemas
from server.errors import BackendUnavailable
from server.errors import Overloaded as ServerOverloaded
from server.http.app import create_app
from server.runtime import serving
from server.triton.process import free_port
from tests.support.fixtures import (
    HashEmbedder,
    ScriptedGenerator,
    hostile_questions,
    write_mini_stack,
)
from tests.support.tls import Certificates, make_certificates

QUESTION = "Ma carte d'identité a été volée en France, que faire ?"
PIECES = ["Déclarez le vol ", "au commissariat [1]."]


class Stack:
    def __init__(self, root: Path, **overrides: Any) -> None:
        self.port = free_port()
        values: dict[str, Any] = {
            "generator_tokenizer_dir": root / "tokenizer",
            "relevance_min_dense": 0.0,
            "grpc_port": self.port,
            "answer_mode": "drafted",  # the scripted generator's text, checked
            "grounding_min_semantic": 0.4,  # bag-of-words cosines
            **overrides,
        }
        self.generator = ScriptedGenerator()
        self.generator.pieces = list(PIECES)
        app = create_app(
            partial(
                serving, Settings(**values), embedder=HashEmbedder(), generator=self.generator, index_dir=root / "index"
            )
        )
        self.http = TestClient(app)
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> Stack:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(None, None, None)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_stack(tmp_path_factory.mktemp("grpc"))


@pytest.fixture(scope="module")
def stack(root: Path) -> Iterator[Stack]:
    with Stack(root) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset_generator(stack: Stack) -> None:
    stack.generator.pieces = list(PIECES)
    stack.generator.not_ready = stack.generator.fail_after_first = None
    stack.generator.delay_s = 0.0


@pytest.fixture
def client(stack: Stack) -> Iterator[AnswerClient]:
    with AnswerClient(stack.target, timeout_s=10, retries=1, backoff_s=0.01) as answer_client:
        yield answer_client


def _plain(struct: Any, drop: tuple[str, ...] = ("id", "timings_ms")) -> Any:
    data = msgspec.to_builtins(struct)
    for key in drop:
        data.pop(key, None)
    return data


def test_every_rpc_matches_http(stack: Stack, client: AnswerClient) -> None:
    http = AnswerClient("http://testserver", timeout_s=10)
    http._http = stack.http  # the in-process HTTP app through the same client code
    answer = client.answer(QUESTION, audience="particuliers", k=2)
    assert answer.answer == "Déclarez le vol au commissariat [1]." and answer.model == "scripted"
    assert _plain(answer) == _plain(http.answer(QUESTION, audience="particuliers", k=2))
    events = list(client.stream_answer(QUESTION, audience="particuliers", k=2))
    assert isinstance(events[0], AnswerBundle) and isinstance(events[-1], type(answer))
    assert [e.text for e in events if isinstance(e, Delta)] == PIECES
    http_events = list(http.stream_answer(QUESTION, audience="particuliers", k=2))
    assert [type(e) for e in events] == [type(e) for e in http_events]
    assert _plain(events[0], ("id",)) == _plain(http_events[0], ("id",))
    assert _plain(events[-1]) == _plain(http_events[-1]) == _plain(answer)
    found = client.search("carte d'identité volée", audience="particuliers", k=2)
    assert _plain(found) == _plain(http.search("carte d'identité volée", audience="particuliers", k=2))
    assert found.results[0].fiche_id == "F1759"
    fiche = client.get_fiche("F1759")
    assert fiche == http.get_fiche("F1759")
    assert fiche.blocks and fiche.title == "Carte d'identité volée"


def test_links_keep_their_type_number_and_fiche_in_answers_search_and_fiches(client: AnswerClient) -> None:
    answer = client.answer(QUESTION, audience="particuliers", k=1)
    found = client.search("carte d'identité volée", audience="particuliers", k=1).results[0]
    fiche = client.get_fiche("F1759")
    for links in (answer.links, found.links, fiche.links):
        assert {link.type for link in links} == {"teleservice", "formulaire", "simulateur"}
        assert [link.number for link in links if link.type == "formulaire"] == ["14011"]
        assert {link.fiche_id for link in links} == {"F1759"}
    assert found.related_questions == fiche.related_questions
    assert found.related_questions[0].fiche_id == "F11601"


@pytest.mark.parametrize(
    ("struct", "message"),
    [
        (schemas.SearchResult, pb.SearchResult),
        (schemas.Excerpt, pb.Excerpt),
        (schemas.RelatedQuestion, pb.RelatedQuestion),
        (schemas.PracticalLink, pb.PracticalLink),
        (schemas.Fiche, pb.Fiche),
        (schemas.Block, pb.Block),
        (schemas.Place, pb.Place),
        (schemas.LegalReference, pb.LegalReference),
        (schemas.FicheRef, pb.FicheRef),
        (schemas.AnswerSource, pb.Source),
        (schemas.AnswerFiche, pb.AnswerFiche),
        (schemas.Usage, pb.Usage),
        (schemas.GuardReport, pb.GuardReport),
        (schemas.AnswerSentence, pb.AnswerSentence),
        (schemas.GroundingReport, pb.GroundingReport),
    ],
)
def test_http_results_have_the_field_names_of_the_grpc_messages(struct: type, message: Any) -> None:
    assert set(struct.__struct_fields__) == {field.name for field in message.DESCRIPTOR.fields}


@pytest.mark.parametrize(
    ("call", "error", "code"),
    [
        (lambda c: c.answer(""), InvalidRequest, "empty_query"),
        (lambda c: c.answer("x" * 2001), InvalidRequest, "query_too_long"),
        (lambda c: c.answer("vol", max_tokens=0), InvalidRequest, "max_tokens_out_of_range"),
        (lambda c: c.answer("vol", temperature=float("nan")), InvalidRequest, "temperature_out_of_range"),
        (lambda c: c.search("vol", audience="martiens"), InvalidRequest, "unknown_audience"),
        (lambda c: c.search("vol", k=0), InvalidRequest, "k_out_of_range"),
        (lambda c: c.get_fiche("F0"), NotFound, "fiche_not_found"),
        (lambda c: c.get_fiche("../etc/passwd"), NotFound, "fiche_not_found"),
    ],
)
def test_errors_map_to_status_codes(client: AnswerClient, call: Any, error: type[AlbertError], code: str) -> None:
    with pytest.raises(error) as raised:
        call(client)
    assert raised.value.code == code and raised.value.message


def test_calls_are_counted_by_method_and_status(stack: Stack, client: AnswerClient) -> None:
    def count(method: str, code: str) -> float:
        line = f'albert_grpc_requests_total{{code="{code}",method="{method}"}}'
        found = [row for row in stack.http.get("/metrics").text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before_ok, before_missing = count("Search", "OK"), count("GetFiche", "NOT_FOUND")
    client.search("carte d'identité volée")
    with pytest.raises(NotFound):
        client.get_fiche("F99999999")
    assert count("Search", "OK") == before_ok + 1
    assert count("GetFiche", "NOT_FOUND") == before_missing + 1
    assert list(client.stream_answer(QUESTION))  # a whole stream, counted once it ends
    assert count("StreamAnswer", "OK") >= 1


def test_a_generator_unavailable_or_overloaded_maps_to_its_status_with_a_retry_time(
    stack: Stack, client: AnswerClient
) -> None:
    stack.generator.not_ready = BackendUnavailable("the generator model is not available", code="generator_unavailable")
    with pytest.raises(Unavailable) as raised:
        client.answer(QUESTION)
    assert raised.value.status == "UNAVAILABLE" and raised.value.code == "generator_unavailable"
    assert raised.value.retry_after_s == 5  # the retry-after metadata
    assert client.search(QUESTION).results  # search does not need the generator
    stack.generator.not_ready = None
    stack.generator.fail_after_first = ServerOverloaded("generator overloaded", code="generator_overloaded")
    with pytest.raises(Overloaded) as busy:
        client.answer(QUESTION)
    assert busy.value.status == "RESOURCE_EXHAUSTED" and busy.value.retry_after_s == 1


def _raw_call(target: str, method: str, payload: bytes) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/albert.v1.AnswerService/{method}")
        try:
            call(payload, timeout=10)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]  # RpcError raised by calls is a Call
            return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff",  # not a protobuf message
        b"\x0a\x05\xff\xfe\xfd\xfc\xfb",  # field 1 (a string) with invalid UTF-8
        b"\x0a\xff\xff\xff\x0f",  # a length that runs past the end
    ],
)
def test_malformed_messages_are_invalid_argument(stack: Stack, payload: bytes) -> None:
    for method in ("Answer", "Search", "GetFiche"):
        assert _raw_call(stack.target, method, payload) == grpc.StatusCode.INVALID_ARGUMENT, method


def test_a_long_value_echoed_in_an_error_still_fits_the_status_trailer(stack: Stack) -> None:
    """The status message travels percent-encoded in a trailer of at most 8 KiB: echoing a 2,000-character
    id of two-byte characters whole (12 KB) turned NOT_FOUND into RESOURCE_EXHAUSTED on the client."""
    for method, message in (
        ("GetFiche", pb.GetFicheRequest(id="ÿ" * 2000)),
        ("Search", pb.SearchRequest(query="carte", audience="ÿ" * 2000)),
    ):
        expected = grpc.StatusCode.NOT_FOUND if method == "GetFiche" else grpc.StatusCode.INVALID_ARGUMENT
        assert _raw_call(stack.target, method, message.SerializeToString()) == expected, method


def test_oversized_message_is_refused(stack: Stack) -> None:
    big = pb.AnswerRequest(question="x" * (70 * 1024)).SerializeToString()
    assert _raw_call(stack.target, "Answer", big) == grpc.StatusCode.RESOURCE_EXHAUSTED


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    question=hostile_questions(),
    audience=st.none() | st.text(max_size=15) | st.sampled_from(["particuliers", "associations"]),
    k=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    max_tokens=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    temperature=st.none() | st.floats(width=32),
    method=st.sampled_from(["Answer", "Search", "GetFiche"]),
)
def test_random_messages_never_fail_internally(
    stack: Stack,
    question: str,
    audience: str | None,
    k: int | None,
    max_tokens: int | None,
    temperature: float | None,
    method: str,
) -> None:
    if method == "Answer":
        message: Any = pb.AnswerRequest(
            question=question, audience=audience, k=k, max_tokens=max_tokens, temperature=temperature
        )
    elif method == "Search":
        message = pb.SearchRequest(query=question, audience=audience, k=k)
    else:
        message = pb.GetFicheRequest(id=question)
    code = _raw_call(stack.target, method, message.SerializeToString())
    assert code in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}, code


def test_deadline_stops_generation(stack: Stack, client: AnswerClient) -> None:
    stack.generator.pieces = ["mot "] * 200
    stack.generator.delay_s = 0.02
    closed = stack.generator.closed_early
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.answer(QUESTION, timeout_s=0.5)
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 5
    while stack.generator.closed_early == closed:
        assert time.monotonic() < deadline, "generation went on after the deadline"
        time.sleep(0.05)


def test_cancelling_a_stream_stops_generation(stack: Stack, client: AnswerClient) -> None:
    stack.generator.pieces = ["mot "] * 200
    stack.generator.delay_s = 0.02
    closed = stack.generator.closed_early
    events = client.stream_answer(QUESTION)
    assert isinstance(next(events), AnswerBundle)
    assert isinstance(next(events), Delta)
    events.close()  # cancels the call
    deadline = time.monotonic() + 5
    while stack.generator.closed_early == closed:
        assert time.monotonic() < deadline, "generation went on after the client cancelled"
        time.sleep(0.05)


def test_health_and_reflection(stack: Stack) -> None:
    with grpc.insecure_channel(stack.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "albert.v1.AnswerService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"albert.v1.AnswerService", "grpc.health.v1.Health"} <= services
        descriptor = database.FindFileContainingSymbol("albert.v1.AnswerService")
        assert {m.name for m in descriptor.service[0].method} == {"Answer", "StreamAnswer", "Search", "GetFiche"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def test_tls_serves_clients_that_trust_its_ca_and_refuses_the_others(root: Path, certificates: Certificates) -> None:
    c = certificates
    with Stack(root, grpc_tls_cert=c.server_cert, grpc_tls_key=c.server_key) as tls_stack:
        with AnswerClient(tls_stack.target, tls=TLS(ca=c.ca), timeout_s=10, retries=0) as secure:
            assert secure.get_fiche("F1759").id == "F1759"
        with AnswerClient(tls_stack.target, timeout_s=5, retries=0) as plaintext, pytest.raises(Unavailable):
            plaintext.get_fiche("F1759")
        with (
            AnswerClient(tls_stack.target, tls=TLS(ca=c.other_ca), timeout_s=5, retries=0) as wrong_ca,
            pytest.raises(Unavailable),
        ):
            wrong_ca.get_fiche("F1759")


def test_mutual_tls_refuses_clients_without_a_certificate(root: Path, certificates: Certificates) -> None:
    c = certificates
    with Stack(root, grpc_tls_cert=c.server_cert, grpc_tls_key=c.server_key, grpc_tls_client_ca=c.ca) as mtls:
        with AnswerClient(mtls.target, tls=TLS(ca=c.ca, cert=c.client_cert, key=c.client_key), timeout_s=10) as ok:
            assert ok.search("carte volée", k=1).results
        with (
            AnswerClient(mtls.target, tls=TLS(ca=c.ca), timeout_s=5, retries=0) as anonymous,
            pytest.raises(Unavailable),
        ):
            anonymous.search("carte volée", k=1)


def test_async_client_over_both_transports(stack: Stack) -> None:
    async def run(make: Callable[[], AsyncAnswerClient]) -> None:
        async with make() as client:  # made inside the loop: grpc.aio channels belong to one
            answer = await client.answer(QUESTION, audience="particuliers", k=1)
            events = [event async for event in client.stream_answer(QUESTION, audience="particuliers", k=1)]
            found = await client.search("carte d'identité volée", k=1)
            fiche = await client.get_fiche("F1759")
            with pytest.raises(InvalidRequest):
                await client.search(" ")
        assert answer.answer == "Déclarez le vol au commissariat [1]."
        assert isinstance(events[0], AnswerBundle) and isinstance(events[1], Delta)
        assert _plain(events[-1]) == _plain(answer)
        assert found.results[0].fiche_id == fiche.id == "F1759"

    def over_http() -> AsyncAnswerClient:
        # The in-process app (its lifespan already runs in the TestClient) behind the client's own HTTP code.
        client = AsyncAnswerClient("http://testserver", timeout_s=10)
        client._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.http.app), base_url="http://testserver"
        )
        return client

    asyncio.run(run(lambda: AsyncAnswerClient(stack.target, timeout_s=10)))
    asyncio.run(run(over_http))
