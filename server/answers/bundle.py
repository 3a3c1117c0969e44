"""Related questions and practical links of an answer, taken from the retrieved fiches.

Order: the fiches the answer cites, in order of first citation, then the other retrieved fiches in
retrieval order; within a fiche, the order of the fiche itself. Duplicates (same question id, same link
URL) keep their first, most relevant place. A related question that is itself one of the returned fiches
is left out: the advisor already has it.
"""

from __future__ import annotations

from collections.abc import Sequence

from corpus.records import Fiche
from server.schemas import PracticalLink, RelatedQuestion, practical_link, related_question

__all__ = ["order_fiches", "practical_links", "related_questions"]


def order_fiches(retrieved: Sequence[Fiche], cited_ids: Sequence[str]) -> list[Fiche]:
    by_id = {f.id: f for f in retrieved}
    first = [by_id[i] for i in dict.fromkeys(cited_ids) if i in by_id]
    return first + [f for f in retrieved if f.id not in set(cited_ids)]


def related_questions(fiches: Sequence[Fiche], *, limit: int = 8) -> list[RelatedQuestion]:
    returned = {f.id for f in fiches}
    out: dict[str, RelatedQuestion] = {}
    for fiche in fiches:
        for q in fiche.related_questions:
            if q.id not in returned and q.id not in out:
                out[q.id] = related_question(q)
    return list(out.values())[:limit]


def practical_links(fiches: Sequence[Fiche], *, limit: int = 10) -> list[PracticalLink]:
    out: dict[str, PracticalLink] = {}
    for fiche in fiches:
        for link in fiche.links:
            if link.url not in out:
                out[link.url] = practical_link(link, fiche.id)
    return list(out.values())[:limit]
