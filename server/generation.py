"""The gateway's client of the generator served by Triton (decoupled model, gRPC streaming).

One ``ModelStreamInfer`` call per answer over the shared channel. ``stream`` yields text pieces, then one
``Generated`` with the finish reason and token counts. Leaving the loop early (the advisor closed the page,
an exception) cancels the gRPC call, and Triton cancels the request: the model stops at the next token.
The call carries a deadline (``generator_timeout_s``); past it Triton cancels the request too, and the
caller gets ``BackendTimeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from server.errors import ApiError, BackendTimeout, BackendUnavailable, Overloaded

__all__ = ["Generated", "GenerationParams", "TritonGenerator"]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop_words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Generated:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def _tensor(name: str, array: np.ndarray[Any, Any], dtype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def _first(result: grpcclient.InferResult, name: str) -> object | None:
    array = result.as_numpy(name)
    return None if array is None or array.size == 0 else array.reshape(-1)[0]


class TritonGenerator:
    def __init__(self, url: str, model: str, *, timeout_s: float, probe_timeout_s: float = 2.0) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.probe_timeout_s = probe_timeout_s
        self._client = grpcclient.InferenceServerClient(url=url)
        self._served_name: str | None = None
        self._ready_at = 0.0

    async def close(self) -> None:
        await self._client.close()

    async def is_ready(self) -> bool:
        try:
            ready = await asyncio.wait_for(self._client.is_model_ready(self.model), timeout=self.probe_timeout_s)
        except (InferenceServerException, TimeoutError, OSError):
            return False
        return bool(ready)

    async def ensure_ready(self) -> None:
        """Raise ``BackendUnavailable`` unless the model answered ready within the last second."""
        now = time.monotonic()
        if now - self._ready_at < 1.0:
            return
        if not await self.is_ready():
            raise BackendUnavailable(
                f"the generator model '{self.model}' is not available in Triton; search still works",
                code="generator_unavailable",
            )
        self._ready_at = now

    async def served_name(self) -> str:
        """The model name shown to users: the ``served_model_name`` parameter of the model's config."""
        if self._served_name is None:
            try:
                config = await self._client.get_model_config(
                    self.model, as_json=True, client_timeout=self.probe_timeout_s
                )
            except InferenceServerException as exc:
                raise self._convert(exc) from exc
            parameters = config.get("config", {}).get("parameters", {})
            self._served_name = parameters.get("served_model_name", {}).get("string_value") or self.model
        return self._served_name

    def _convert(self, exc: Exception) -> ApiError:
        if isinstance(exc, grpc.aio.AioRpcError):
            code, message = exc.code(), exc.details() or str(exc)
        else:
            status = str(exc.status() or "") if isinstance(exc, InferenceServerException) else ""
            message = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
            message = message or str(exc)
            code = grpc.StatusCode.DEADLINE_EXCEEDED if "DEADLINE_EXCEEDED" in status else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return BackendTimeout(
                f"the generator did not finish in time (at most {self.timeout_s:g} s, or the caller's deadline); "
                "generation was stopped",
                code="generator_timeout",
            )
        if message.startswith("generator overloaded"):
            return Overloaded(f"{message}; retry in a moment", code="generator_overloaded")
        if code == grpc.StatusCode.UNAVAILABLE:
            return BackendUnavailable(f"the generator is unreachable ({message})", code="generator_unavailable")
        return BackendUnavailable(f"the generator failed: {message}", code="generator_error")

    async def stream(
        self, prompt: str, params: GenerationParams, *, timeout_s: float | None = None
    ) -> AsyncGenerator[str | Generated, None]:
        """``timeout_s``: the caller's remaining deadline, when shorter than ``generator_timeout_s``."""
        inputs = [
            _tensor("text_input", np.array([prompt.encode("utf-8")], dtype=np.object_), "BYTES"),
            _tensor("max_tokens", np.array([params.max_tokens], dtype=np.int32), "INT32"),
            _tensor("temperature", np.array([params.temperature], dtype=np.float32), "FP32"),
            _tensor("top_p", np.array([params.top_p], dtype=np.float32), "FP32"),
            _tensor("stream", np.array([True], dtype=bool), "BOOL"),
        ]
        if params.stop_words:
            words: Sequence[bytes] = [w.encode("utf-8") for w in params.stop_words]
            inputs.append(_tensor("stop_words", np.array(words, dtype=np.object_), "BYTES"))

        async def requests() -> AsyncIterator[dict[str, object]]:
            yield {"model_name": self.model, "inputs": inputs}

        deadline = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        responses = self._client.stream_infer(requests(), stream_timeout=deadline)
        try:
            async for result, error in responses:
                if error is not None:
                    raise self._convert(error)
                reason = _first(result, "finish_reason")
                text = _first(result, "text_output")
                if isinstance(text, bytes) and text:
                    yield text.decode("utf-8", errors="replace")
                if isinstance(reason, bytes) and reason:
                    yield Generated(
                        finish_reason=reason.decode(),
                        prompt_tokens=int(_first(result, "prompt_tokens") or 0),  # type: ignore[call-overload]
                        completion_tokens=int(_first(result, "completion_tokens") or 0),  # type: ignore[call-overload]
                    )
                    return
            raise BackendUnavailable("the generator closed the stream without a final response")
        except (grpc.aio.AioRpcError, InferenceServerException) as exc:
            raise self._convert(exc) from exc
        finally:
            # Ends the call; before the final response, this is what makes Triton cancel the request.
            responses.cancel()
