"""The gateway's client of the generator served by Triton (decoupled model, gRPC streaming).

One ``ModelStreamInfer`` call per answer over the shared channel, with the model and tensor names of the
rendered repository's interface file (contract/model_interface.py). ``stream`` yields text pieces, then one
``Generated`` with the finish reason and token counts. Leaving the loop early (the advisor closed the page,
an exception) cancels the gRPC call, and Triton cancels the request: the model stops at the next token.
The call carries a deadline (``generator_timeout_s``); past it Triton cancels the request too, and the
caller gets ``BackendTimeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import grpc
import msgspec
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from contract.model_interface import GeneratorInterface
from server.answers.generator import Generated, GenerationParams
from server.errors import ApiError, BackendTimeout, BackendUnavailable, Misconfigured, Overloaded
from server.triton.channel import classify, triton_client

__all__ = ["TritonGenerator"]


class _Request:
    """Input tensors of one generation, named and shaped as the interface says."""

    def __init__(self, interface: GeneratorInterface) -> None:
        self.batched = interface.batched
        self.tensors: list[grpcclient.InferInput] = []

    def add(self, name: str | None, values: Sequence[object], dtype: str) -> None:
        if name is None:
            return
        numpy_type = {"BYTES": np.object_, "INT32": np.int32, "FP32": np.float32, "BOOL": bool}[dtype]
        array = np.array(values, dtype=numpy_type)
        if self.batched:
            array = array.reshape(1, -1)
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        self.tensors.append(tensor)


class _Pieces:
    """Text pieces from the responses' text: as they are (``delta``), or what each whole-text-so-far response
    adds to the previous one (``cumulative``). A cumulative text ending in U+FFFD (a character whose bytes
    have not all been generated yet) is held back until the character is complete."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent = ""
        self.last = ""

    def feed(self, text: str) -> str:
        if self.mode == "delta":
            return text
        self.last = text
        stable = text.rstrip("\ufffd")
        if not stable.startswith(self.sent):
            # The model re-decoded earlier text differently; what was sent stays, the rest follows from here.
            stable = self.sent + stable[len(self.sent) :]
        piece, self.sent = stable[len(self.sent) :], stable
        return piece

    def flush(self) -> str:
        """At the end, the held-back characters (they stay U+FFFD: the generation ended inside them)."""
        if self.mode == "delta" or not self.last.startswith(self.sent):
            return ""
        piece, self.sent = self.last[len(self.sent) :], self.last
        return piece


def _first(result: grpcclient.InferResult, name: str | None) -> object | None:
    if name is None:
        return None
    array = result.as_numpy(name)
    return None if array is None or array.size == 0 else array.reshape(-1)[0]


def _count(value: object | None) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


class TritonGenerator:
    """The generator named by the model interface (any profile), called over gRPC streaming."""

    def __init__(
        self, url: str, interface: GeneratorInterface, *, timeout_s: float, probe_timeout_s: float = 2.0
    ) -> None:
        self.url = url
        self.interface = interface
        self.model = interface.model
        self.timeout_s = timeout_s
        self.probe_timeout_s = probe_timeout_s
        self._client = triton_client(url)
        self._ready_at = 0.0
        self._checked = False

    async def close(self) -> None:
        await self._client.close()

    async def is_ready(self) -> bool:
        try:
            ready = await asyncio.wait_for(self._client.is_model_ready(self.model), timeout=self.probe_timeout_s)
        except (InferenceServerException, TimeoutError, OSError):
            return False
        return bool(ready)

    async def ensure_ready(self) -> None:
        """Raise ``BackendUnavailable`` unless the model answered ready within the last second. The first
        time it is ready, its tensors are checked against the interface file."""
        now = time.monotonic()
        if now - self._ready_at < 1.0:
            return
        if not await self.is_ready():
            raise BackendUnavailable(
                f"the generator model '{self.model}' is not available in Triton; search still works",
                code="generator_unavailable",
            )
        if not self._checked:
            await self._check_metadata()
        self._ready_at = now

    async def _check_metadata(self) -> None:
        try:
            metadata = await self._client.get_model_metadata(
                self.model, as_json=True, client_timeout=self.probe_timeout_s
            )
        except InferenceServerException as exc:
            raise self._convert(exc) from exc
        served = {t["name"] for t in metadata.get("inputs", [])}, {t["name"] for t in metadata.get("outputs", [])}
        wanted = (
            {n for n in msgspec.structs.astuple(self.interface.inputs) if n},
            {n for n in msgspec.structs.astuple(self.interface.outputs) if n},
        )
        missing = sorted((wanted[0] - served[0]) | (wanted[1] - served[1]))
        if missing:
            raise Misconfigured(
                f"the generator model '{self.model}' served by Triton has no tensor {', '.join(missing)} "
                "that the model interface file names: the gateway and the repository come from different renders",
                code="generator_mismatch",
            )
        self._checked = True

    async def served_name(self) -> str:
        return self.interface.served_model_name

    def _convert(self, exc: Exception) -> ApiError:
        kind, message = classify(exc)
        if kind == "timeout":
            return BackendTimeout(
                f"the generator did not finish in time (at most {self.timeout_s:g} s, or the caller's deadline); "
                "generation was stopped",
                code="generator_timeout",
            )
        if message.startswith("generator overloaded"):
            return Overloaded(f"{message}; retry in a moment", code="generator_overloaded")
        if kind == "unreachable":
            return BackendUnavailable(f"the generator is unreachable ({message})", code="generator_unavailable")
        return BackendUnavailable(f"the generator failed: {message}", code="generator_error")

    async def stream(
        self, prompt: str, params: GenerationParams, *, timeout_s: float | None = None
    ) -> AsyncGenerator[str | Generated, None]:
        """Text pieces, then one ``Generated``. ``timeout_s``: the caller's remaining deadline, when shorter
        than ``generator_timeout_s``."""
        names, outputs = self.interface.inputs, self.interface.outputs
        request = _Request(self.interface)
        request.add(names.text, [prompt.encode("utf-8")], "BYTES")
        request.add(names.max_tokens, [params.max_tokens], "INT32")
        request.add(names.temperature, [params.temperature], "FP32")
        request.add(names.top_p, [params.top_p], "FP32")
        request.add(names.stream, [self.interface.streaming], "BOOL")
        for flag, value in self.interface.flags.items():
            request.add(flag, [value], "BOOL")
        if params.stop_words:
            if names.stop_words is None:
                raise Misconfigured(f"the generator model '{self.model}' takes no stop words")
            request.add(names.stop_words, [w.encode("utf-8") for w in params.stop_words], "BYTES")

        async def requests() -> AsyncIterator[dict[str, object]]:
            yield {"model_name": self.model, "inputs": request.tensors}

        deadline = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        responses = self._client.stream_infer(requests(), stream_timeout=deadline)
        pieces = _Pieces(self.interface.text_mode)
        try:
            async for result, error in responses:
                if error is not None:
                    raise self._convert(error)
                text = _first(result, outputs.text)
                if isinstance(text, bytes) and (piece := pieces.feed(text.decode("utf-8", errors="replace"))):
                    yield piece
                reason = _first(result, outputs.finish_reason)
                # The LLM-API model sends "None" until the last response.
                if isinstance(reason, bytes) and reason not in (b"", b"None"):
                    if rest := pieces.flush():
                        yield rest
                    yield Generated(
                        finish_reason=reason.decode(),
                        prompt_tokens=_count(_first(result, outputs.prompt_tokens)),
                        completion_tokens=_count(_first(result, outputs.completion_tokens)),
                    )
                    return
            if outputs.finish_reason is not None:
                raise BackendUnavailable("the generator closed the stream without a final response")
            # Models without a finish reason: Triton ends the call after the request's last response.
            if rest := pieces.flush():
                yield rest
            yield Generated(finish_reason=None, prompt_tokens=None, completion_tokens=None)
        except (grpc.aio.AioRpcError, InferenceServerException) as exc:
            raise self._convert(exc) from exc
        finally:
            # Ends the call; before the final response, this is what makes Triton cancel the request.
            responses.cancel()
