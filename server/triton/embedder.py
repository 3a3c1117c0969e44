"""The embedding model's client: texts in, unit vectors out, Triton's errors converted at this boundary."""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc.aio as grpcclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from contract.model_interface import EmbedderInterface
from server.errors import ApiError, BackendTimeout, BackendUnavailable
from server.triton.channel import classify, triton_client

__all__ = ["TritonEmbedder"]


def _convert(exc: InferenceServerException, what: str) -> ApiError:
    kind, message = classify(exc)
    if kind == "timeout":
        return BackendTimeout(f"{what}: Triton did not answer in time ({message})")
    if kind == "unreachable":
        return BackendUnavailable(f"{what}: Triton is unreachable ({message})")
    return BackendUnavailable(f"{what}: Triton returned an error ({message})")


class TritonEmbedder:
    """Embeddings of queries (search) and passages (the answers' sentences) from the model served by Triton."""

    def __init__(self, url: str, interface: EmbedderInterface, *, timeout_s: float) -> None:
        self.url = url
        self.interface = interface
        self.model = interface.model
        self.timeout_s = timeout_s
        self._client = triton_client(url)

    async def close(self) -> None:
        await self._client.close()

    async def readiness(self) -> dict[str, str]:
        """Per-check status; every value is "ok" when Triton and the model are ready."""
        checks = {"triton": "unreachable", "embedding_model": "unknown"}
        try:
            server = await asyncio.wait_for(self._client.is_server_ready(), timeout=min(self.timeout_s, 2.0))
            checks["triton"] = "ok" if server else "not ready"
            if server:
                model = await asyncio.wait_for(
                    self._client.is_model_ready(self.model), timeout=min(self.timeout_s, 2.0)
                )
                checks["embedding_model"] = "ok" if model else f"model '{self.model}' not ready"
        except (InferenceServerException, TimeoutError, OSError) as exc:
            checks["triton"] = f"unreachable ({exc.__class__.__name__})"
        return checks

    async def embed(
        self, texts: list[str], kind: str = "query", *, timeout_s: float | None = None
    ) -> NDArray[np.float32]:
        """``timeout_s``: the caller's remaining deadline, when shorter than the configured one."""
        names = self.interface
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        text_input = grpcclient.InferInput(names.text_input, list(data.shape), "BYTES")
        text_input.set_data_from_numpy(data)
        kind_input = grpcclient.InferInput(names.kind_input, list(data.shape), "BYTES")
        kind_input.set_data_from_numpy(np.full(data.shape, kind.encode(), dtype=np.object_))
        try:
            result = await self._client.infer(
                self.model,
                [text_input, kind_input],
                outputs=[grpcclient.InferRequestedOutput(names.output)],
                client_timeout=self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s),
            )
        except InferenceServerException as exc:
            raise _convert(exc, "embedding") from exc
        vectors = result.as_numpy(names.output)
        if vectors is None or vectors.shape[0] != len(texts):
            raise BackendUnavailable("embedding: Triton returned no embedding output")
        out: NDArray[np.float32] = vectors.astype(np.float32, copy=False)
        return out
