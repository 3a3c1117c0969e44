"""Admission control (server/admission.py): the gate's bounds, order and estimates, then a burst of answers
through the gateway (HTTP and gRPC) with a slow scripted generator: 429 / RESOURCE_EXHAUSTED at once with a
retry time, the admitted answers complete, search still answers. The real stack: tests/integration."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from albert_client import AsyncAnswerClient
from albert_client.errors import Overloaded as ClientOverloaded

from config.settings import Settings, SettingsError
from server.admission import Gate
from server.errors import Overloaded
from server.http.app import create_app
from server.runtime import serving
from server.triton.process import free_port
from tests.support.fixtures import HashEmbedder, ScriptedGenerator, write_mini_stack

QUESTION = "Ma carte d'identité a été volée en France, que faire ?"


def _gate(max_active: int = 1, max_waiting: int = 1, service_s: float = 2.0) -> Gate:
    return Gate("answers", "answering questions", max_active=max_active, max_waiting=max_waiting, service_s=service_s)


def test_a_full_line_is_refused_at_once_with_the_expected_wait() -> None:
    async def run() -> None:
        gate = _gate(max_active=2, max_waiting=1, service_s=4.0)
        first, second = await gate.enter(), await gate.enter()
        waiting = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        assert (gate.active, gate.waiting) == (2, 1)
        started = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            await gate.enter()
        assert time.perf_counter() - started < 0.01
        # Two in line (the one waiting and this one), served two at a time, 4 s each: 4 s.
        assert refused.value.retry_after_s == pytest.approx(4.0)
        assert refused.value.retry_after_header() == "4"
        assert refused.value.code == "answers_overloaded" and "1 waiting" in refused.value.message
        assert gate.refused == 1
        first.release()
        third = await asyncio.wait_for(waiting, 1)  # the slot went to the one in line
        assert (gate.active, gate.waiting) == (2, 0)
        for ticket in (second, third):
            ticket.release()
        assert gate.active == 0

    asyncio.run(run())


def test_slots_go_in_arrival_order_and_release_is_idempotent() -> None:
    async def run() -> None:
        gate = _gate(max_active=1, max_waiting=3)
        holder = await gate.enter()
        order: list[int] = []

        async def queued(n: int) -> None:
            async with gate.slot():
                order.append(n)

        tasks = [asyncio.ensure_future(queued(n)) for n in range(3)]
        await asyncio.sleep(0)
        holder.release()
        holder.release()  # a second release gives nothing back twice
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        assert (gate.active, gate.waiting) == (0, 0)

    asyncio.run(run())


def test_a_caller_that_gives_up_leaves_the_line() -> None:
    async def run() -> None:
        gate = _gate(max_active=1, max_waiting=2)
        holder = await gate.enter()
        leaving = asyncio.ensure_future(gate.enter())
        staying = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        assert gate.waiting == 1
        holder.release()
        (await asyncio.wait_for(staying, 1)).release()
        assert (gate.active, gate.waiting) == (0, 0)

    asyncio.run(run())


def test_a_slot_handed_to_a_caller_cancelled_at_that_moment_passes_on() -> None:
    async def run() -> None:
        gate = _gate(max_active=1, max_waiting=2)
        holder = await gate.enter()
        unlucky = asyncio.ensure_future(gate.enter())
        next_one = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)
        holder.release()  # hands the slot to ``unlucky``...
        unlucky.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await unlucky
        (await asyncio.wait_for(next_one, 1)).release()
        assert (gate.active, gate.waiting) == (0, 0)

    asyncio.run(run())


def test_a_dropped_ticket_gives_its_slot_back() -> None:
    async def run() -> None:
        gate = _gate(max_active=1, max_waiting=0)
        ticket = await gate.enter()
        with pytest.raises(Overloaded):
            await gate.enter()
        del ticket  # a streamed answer whose body was never read
        gc.collect()
        (await gate.enter()).release()

    asyncio.run(run())


def test_the_estimate_follows_the_measured_service_time() -> None:
    async def run() -> None:
        gate = _gate(max_active=1, max_waiting=0, service_s=10.0)
        for _ in range(30):
            (await gate.enter()).release()  # instant requests
        assert gate.service_s < 0.1
        assert gate.retry_after_s() < 0.1

    asyncio.run(run())


@pytest.mark.parametrize(
    ("name", "value"), [("answers_max_active", 0), ("search_max_waiting", -1), ("triton_restarts", -1)]
)
def test_bounds_below_their_minimum_are_refused(name: str, value: int) -> None:
    with pytest.raises(SettingsError, match=f"ALBERT_{name.upper()}"):
        Settings(**{name: value})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mini_stack(tmp_path_factory.mktemp("admission"))


def _app(root: Path, **overrides: Any) -> tuple[Any, ScriptedGenerator]:
    generator = ScriptedGenerator()
    generator.pieces = ["Déclarez le vol ", "au commissariat [1]."]
    generator.delay_s = 0.3  # 0.6 s per answer
    values: dict[str, Any] = {
        "generator_tokenizer_dir": root / "tokenizer",
        "relevance_min_dense": 0.0,
        "answer_mode": "drafted",
        "grounding_min_semantic": 0.4,
        "answers_max_active": 2,
        "answers_max_waiting": 1,
        "grpc_port": 0,
    }
    settings = Settings(**(values | overrides))
    return create_app(
        partial(serving, settings, embedder=HashEmbedder(), generator=generator, index_dir=root / "index")
    ), generator


@asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app under uvicorn in this event loop (the ASGI test clients run requests one after the other)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await serving


def test_a_burst_of_answers_beyond_the_bound_gets_429_while_the_admitted_complete(root: Path) -> None:
    """2 answering + 1 waiting are admitted; the 5 others get 429 at once with Retry-After; streamed answers
    already sending are not cut; a search during the burst is answered (its own gate)."""

    async def run() -> None:
        app, _ = _app(root)
        async with _serving(app) as client:

            async def answer(stream: bool) -> tuple[int, float, httpx.Response]:
                started = time.perf_counter()
                response = await client.post("/v1/answers", json={"question": QUESTION, "k": 1, "stream": stream})
                return response.status_code, time.perf_counter() - started, response

            burst = [asyncio.ensure_future(answer(stream=n % 2 == 0)) for n in range(8)]
            await asyncio.sleep(0.2)
            search = await client.get("/v1/search", params={"q": QUESTION})
            results = await asyncio.gather(*burst)
            metrics = (await client.get("/metrics")).text
        assert search.status_code == 200
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] * 3 + [429] * 5
        for status, seconds, response in results:
            if status == 429:
                assert seconds < 0.5, "a refusal does not wait"
                assert int(response.headers["retry-after"]) >= 1
                error = response.json()["error"]
                assert error["type"] == "overloaded" and error["code"] == "answers_overloaded"
            elif response.headers["content-type"].startswith("text/event-stream"):
                assert "event: answer" in response.text and "event: error" not in response.text
            else:
                assert response.json()["answer"]
        assert 'albert_admission_refused_total{gate="answers"} 5.0' in metrics
        assert 'albert_admission_active{gate="answers"} 0.0' in metrics

    asyncio.run(run())


def test_grpc_answers_beyond_the_bound_get_resource_exhausted_with_a_retry_time(root: Path) -> None:
    port = free_port()
    app, _ = _app(root, grpc_port=port, answers_max_active=1, answers_max_waiting=0)

    async def run() -> None:
        async with _serving(app), AsyncAnswerClient(f"127.0.0.1:{port}", timeout_s=10) as client:
            outcomes = await asyncio.gather(*(client.answer(QUESTION, k=1) for _ in range(3)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, ClientOverloaded)]
        assert len(refused) == 2 and sum(isinstance(o, BaseException) for o in outcomes) == 2
        assert all(o.status == "RESOURCE_EXHAUSTED" and o.code == "answers_overloaded" for o in refused)
        assert all((o.retry_after_s or 0) >= 1 for o in refused)

    asyncio.run(run())
