"""The client package's retries: idempotent calls retried with backoff, the others never."""

from __future__ import annotations

import time

import pytest
from albert_client import (
    AnswerClient,
    Unavailable,
)

from server.triton.process import free_port


def test_idempotent_calls_are_retried_with_backoff() -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    with AnswerClient(closed, timeout_s=2, retries=2, backoff_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.search("vol")
        assert time.monotonic() - started >= 0.2 + 0.4  # two retries after 0.2 s and 0.4 s
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.answer("vol")  # never retried
        assert time.monotonic() - started < 0.2
