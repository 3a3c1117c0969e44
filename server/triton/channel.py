"""What both Triton clients share: one long-lived gRPC channel per client, and what kind of failure an
error from Triton is (each client turns it into its own API error)."""

from __future__ import annotations

from typing import Literal

import grpc
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

__all__ = ["Failure", "classify", "triton_client"]


Failure = Literal["timeout", "unreachable", "error"]


def classify(exc: Exception) -> tuple[Failure, str]:
    """What kind of Triton failure ``exc`` is (tritonclient's exception or a raw gRPC error), and its
    message; the embedder and the generator turn it into their own API errors."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code, message = exc.code(), exc.details() or str(exc)
        status = code.name if isinstance(code, grpc.StatusCode) else ""
    else:
        status = str(exc.status() or "") if isinstance(exc, InferenceServerException) else ""
        message = (exc.message() if isinstance(exc, InferenceServerException) else "") or str(exc)
    if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
        return "timeout", message
    if "UNAVAILABLE" in status or "failed to connect" in message.lower():
        return "unreachable", message
    return "error", message


def triton_client(url: str) -> grpcclient.InferenceServerClient:
    """A client on one long-lived channel to Triton. gRPC's reconnection backoff grows to 2 minutes by
    default: a restarted tritonserver would then wait that long for the gateway to notice; here it is at
    most 2 s, so the gateway is ready again soon after Triton is (``python -m server serve`` restarts it)."""
    options = [
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.keepalive_time_ms", 2**31 - 1),  # tritonclient's default: no keepalive pings
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    return grpcclient.InferenceServerClient(url=url, channel_args=options)
