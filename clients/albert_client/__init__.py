"""Python client of the Albert France Services answer engine, over gRPC or HTTP.

from albert_client import AnswerClient

with AnswerClient("127.0.0.1:50051") as client:          # or "http://127.0.0.1:8080"
    answer = client.answer("Ma carte d'identité a été volée, que faire ?", audience="particuliers")
    print(answer.answer, [s.url for s in answer.sources])
"""

from albert_client.client import TLS, AnswerClient, AsyncAnswerClient, Event
from albert_client.errors import (
    AlbertError,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    Unauthenticated,
    Unavailable,
)
from albert_client.types import Answer, AnswerBundle, Delta, Fiche, SearchResults

__all__ = [
    "TLS",
    "AlbertError",
    "Answer",
    "AnswerBundle",
    "AnswerClient",
    "AsyncAnswerClient",
    "DeadlineExceeded",
    "Delta",
    "Event",
    "Fiche",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "SearchResults",
    "Unauthenticated",
    "Unavailable",
]
