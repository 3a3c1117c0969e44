"""``/v1/answers``: one JSON response, or Server-Sent Events (``stream: true``) from the same pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK

from server.answers.service import AnswerPreview, AnswerService, Delta, Prepared
from server.answers.sse import sse_event
from server.errors import ApiError, InternalError, error_body
from server.http.errors import ClientDisconnected, documented
from server.runtime import Services
from server.schemas import AnswerRequest, AnswerResponse

__all__ = ["ROUTES"]

T = TypeVar("T")
log = logging.getLogger("albert.gateway")
_event_encoder = msgspec.json.Encoder()


async def _sse(answers: AnswerService, prepared: Prepared) -> AsyncIterator[bytes]:
    """sources (the bundle without the answer), delta* (text pieces), then answer (the whole response).
    A failure after the first event is sent as an ``error`` event with the usual error body."""
    names = {AnswerPreview: "sources", Delta: "delta", AnswerResponse: "answer"}
    try:
        async with aclosing(answers.events(prepared)) as events:  # a client that leaves frees the slot at once
            async for event in events:
                yield sse_event(names[type(event)], _event_encoder.encode(event))
    except ApiError as exc:
        log.warning("answer %s failed while streaming: %s", prepared.id, exc.message)
        yield sse_event("error", _event_encoder.encode(error_body(exc)))
    except Exception:
        log.exception("answer %s failed while streaming", prepared.id)
        failure = InternalError("internal error; the gateway log has the details")
        yield sse_event("error", _event_encoder.encode(error_body(failure)))


async def _unless_disconnected(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """Run ``work`` but cancel it if the client goes away first (generation then stops in Triton).

    The body has been read, so the next ASGI message can only be ``http.disconnect``."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler is cancelled (shutdown): so is the work
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        log.info("client left before its answer was ready; generation cancelled")
        raise ClientDisconnected("the client closed the connection")
    return task.result()


@dataclass
class _AnswersOperation(Operation):
    """Documents the Server-Sent Events alternative of the 200 response (``stream: true``)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["text/event-stream"] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    description="One event: `sources`, then `delta`*, then `answer` (or `error`); `data` is JSON.",
                    properties={
                        "event": Schema(type=OpenAPIType.STRING, enum=["sources", "delta", "answer", "error"]),
                        "data": Schema(type=OpenAPIType.STRING),
                    },
                    required=["event", "data"],
                )
            )


@post(
    "/v1/answers",
    operation_class=_AnswersOperation,
    summary="A French answer checked sentence by sentence, with its sources, related questions, links and fiches",
    description=(
        "The answer quotes the fiches (`answer_kind: quoted`) or is drafted by the generator (`drafted`), as "
        "the deployment sets; either way every sentence is checked against the source it cites (`grounding`). "
        "With `stream: true` the response is `text/event-stream`: a `sources` event (the bundle without the "
        "answer), `delta` events (the raw draft as generated, or the quoted answer in one piece), then an "
        "`answer` event holding the complete, checked response, identical to the non-streaming body. Errors "
        "after the first event arrive as an `error` event."
    ),
    tags=["answers"],
    status_code=HTTP_200_OK,
    responses=documented(400, 422, 429, 503, 504),
)
async def answers_post(
    request: Request[Any, Any, Any], services: NamedDependency[Services], data: JSONBody[AnswerRequest]
) -> Response[Any]:
    answers = services.answers
    if not data.stream:
        return Response(await _unless_disconnected(request, answers.answer(data)))
    prepared = await answers.prepare(data)
    return Stream(
        _sse(answers, prepared),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ROUTES = [answers_post]
