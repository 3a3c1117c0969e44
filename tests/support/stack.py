"""Observations of a running stack: Triton's metrics of the generator, and how long the gateway takes to its
first answer text."""

from __future__ import annotations

import time

import httpx

from server.triton.process import TritonProcess
from tests.support.servers import Gateway

QUESTION = "Ma carte d'identité a été volée, que dois-je faire ?"


LONG = "Explique en détail, étape par étape, toutes les démarches pour créer une association loi 1901."


def metric_value(triton: TritonProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{triton.ports.metrics}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name} {labels} on Triton's metrics endpoint")


def cancelled_generations(triton: TritonProcess) -> float:
    return metric_value(triton, "albert_generator_requests_total", outcome="cancelled")


def wait_cancelled(triton: TritonProcess, before: float, what: str) -> None:
    deadline = time.monotonic() + 30  # the prefill cannot be interrupted: the generation stops at the next token
    while cancelled_generations(triton) == before:
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def seconds_to_first_text(gateway: Gateway, triton: TritonProcess) -> float:
    """How long this stack takes, its caches warm, from receiving LONG to streaming its first generated text
    (each stream is left at once, its generation cancelled and waited for). A client that leaves, or a
    deadline that passes, half a second later than that lands while the generator is at work on LONG,
    however fast or loaded the machine."""
    seconds = 0.0
    for _ in range(2):  # the first warms the embedding and retrieval caches; the second is timed
        before = cancelled_generations(triton)
        started = time.monotonic()
        body = {"question": LONG, "max_tokens": 1000, "stream": True}
        with httpx.stream("POST", f"{gateway.url}/v1/answers", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line == "event: delta":
                    seconds = time.monotonic() - started
                    break
            else:
                raise AssertionError("the stream ended without generated text")
        wait_cancelled(triton, before, "the generator kept going after the stream was left")
    return seconds
