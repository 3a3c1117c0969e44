"""The quoted answer: the sentences of the retrieved fiches that match the person's situation, verbatim.

Two stages, both scored by the cosine between the question and a passage embedding of the served model:

1. **Which part of which fiche.** The parts of the best ``fiches`` retrieved fiches (their chunks grouped by
   heading path: the situation or case a passage applies to, "Vous êtes salarié > Démission") are embedded
   by their fiche title and headings; the ``sections`` best parts are kept.
2. **Which sentences.** Their sentences (at most ``per_section`` each) are embedded with their headings and
   scored. A fiche is quoted when its best sentence is within ``fiche_margin`` of the best overall, best
   fiche first: its ``per_fiche`` best sentences, in the fiche's order, each with what it needs to be read
   alone: the sentence before it when it leans on it ("Dans le cas contraire, …"), the list it introduces
   or belongs to, under its introduction (up to ``list_items`` items; an introduction without its list, or
   a short item without its introduction, is not quoted).

Situational questions often fit more than one fiche, and the first retrieved fiche is the right one for
fewer than half of them: the advisor sees the key sentences of each fiche that fits, each cited to its
passage (benchmarks/README.md, "Answer quality"). It cannot say what the fiches do not say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from corpus.records import Chunk
from server.answers.grounding import Vectors, normalized
from server.answers.sentences import Sentence, split_sentences
from server.search.retrieval.search import FicheHit

__all__ = [
    "HEADING_LINE",
    "QUOTED_HEADING",
    "PassageKey",
    "Quote",
    "Selection",
    "passage_key",
    "render_quotes",
    "select_quotes",
]

QUOTED_HEADING = "Extraits des fiches service-public.fr, cités mot pour mot :"
# A line naming the fiche the next quotes come from (« title » :) or the case they apply to (— path :).
HEADING_LINE = re.compile(r"^(?:« .+ »|— .+) :$")
_GENERAL = "En général"  # the case line of a fiche's passages outside any heading, after one within


@dataclass(frozen=True, slots=True)
class Quote:
    chunk: Chunk
    text: str
    score: float
    list_item: bool


@dataclass(frozen=True, slots=True)
class Selection:
    """The quoted sentences, fiche by fiche in the fiche's order, and the passages they come from."""

    quotes: list[Quote]
    chunks: list[Chunk]


@dataclass(frozen=True, slots=True)
class _Candidate:
    chunk: Chunk
    position: int  # of the sentence in the chunk
    in_chunk: list[Sentence]  # the chunk's sentences (split once, shared by its candidates)
    text: str
    context: str  # what is embedded: headings + sentence


# A sentence that starts like this leans on the one before it ("Dans le cas contraire, …").
_LEANS_BACK = re.compile(
    r"^(?:dans (?:le cas contraire|ce cas|les deux cas|les 2 cas)|toutefois|sinon|en revanche|cependant|par contre|"
    r"pour cela|de plus|en outre|ces?|cette|cela|celui|celle|ils?|elles?|ses|son|sa|leurs?)\b",
    re.IGNORECASE,
)


def _sentences(chunks: Sequence[Chunk], limit: int) -> list[_Candidate]:
    out: list[_Candidate] = []
    for chunk in chunks:
        heading = " > ".join(chunk.section)
        in_chunk = split_sentences(chunk.text)
        for position, sentence in enumerate(in_chunk):
            text = sentence.text
            # A fiche's own question ("Quel camping-car ?") heads what follows: alone it states nothing.
            if (len(text) >= 12 or sentence.bullet) and not text.rstrip().endswith("?"):
                context = f"{heading} : {text}" if heading else text
                out.append(_Candidate(chunk, position, in_chunk, text, context))
    return out[:limit]


def _in_context(sentences: list[Sentence], position: int, list_items: int) -> list[tuple[int, Sentence]]:
    """Sentence ``position`` of a passage with what it needs to be read alone: an item comes under its list's
    introduction, with the other items (a short item without one says nothing: none); an introduction
    comes with its items (none left: nothing); a sentence leaning on the one before comes after it."""
    sentence = sentences[position]
    if sentence.bullet:
        intro = next((j for j in range(position - 1, -1, -1) if not sentences[j].bullet), None)
        if intro is not None and sentences[intro].text.endswith(":"):
            return _in_context(sentences, intro, list_items)
        return [(position, replace(sentence, bullet=""))] if len(sentence.text.split()) >= 6 else []
    out: list[tuple[int, Sentence]] = []
    if position > 0 and _LEANS_BACK.match(sentence.text):
        before = position - 1
        out = _in_context(sentences, before, list_items) if sentences[before].bullet else [(before, sentences[before])]
    out.append((position, sentence))
    if sentence.text.endswith(":"):
        items: list[tuple[int, Sentence]] = []
        for j in range(position + 1, len(sentences)):
            if not sentences[j].bullet or len(items) == list_items:
                break
            items.append((j, sentences[j]))
        if not items:
            return []
        out.extend(items)
    return out


def _cosines(vectors: NDArray[np.float32], query: NDArray[np.float32]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = normalized(vectors) @ normalized(query[None, :])[0]
    return out


async def select_quotes(
    query_vector: NDArray[np.float32],
    hits: Sequence[FicheHit],
    chunks_of: dict[str, list[Chunk]],
    vectors: Vectors,
    *,
    fiches: int = 3,
    sections: int = 9,
    per_section: int = 10,
    per_fiche: int = 8,
    fiche_margin: float = 0.1,
    list_items: int = 8,
) -> Selection:
    parts: dict[tuple[str, tuple[str, ...]], list[Chunk]] = {}
    for hit in hits[:fiches]:
        for chunk in chunks_of.get(hit.fiche.id, []):
            parts.setdefault((hit.fiche.id, chunk.section), []).append(chunk)
    if not parts:
        return Selection([], [])
    titles = {hit.fiche.id: hit.fiche.title for hit in hits[:fiches]}
    labels = [
        " > ".join((titles[fiche_id], *path)) if path else f"{titles[fiche_id]} : {chunks[0].text[:200]}"
        for (fiche_id, path), chunks in parts.items()
    ]
    part_scores = _cosines(await vectors(labels), query_vector)
    best_parts = [list(parts.values())[int(i)] for i in np.argsort(-part_scores, kind="stable")[:sections]]
    candidates: list[_Candidate] = []
    seen: set[str] = set()
    for chunks in best_parts:
        for candidate in _sentences(chunks, per_section):
            key = " ".join(candidate.text.lower().split())
            if key not in seen:  # fiches and cases share sentences; quote each once
                seen.add(key)
                candidates.append(candidate)
    if not candidates:
        return Selection([], [])
    scores = _cosines(await vectors([c.context for c in candidates]), query_vector)
    by_fiche: dict[str, list[int]] = {}
    for i, candidate in enumerate(candidates):
        by_fiche.setdefault(candidate.chunk.fiche_id, []).append(i)
    top = float(scores.max())
    quotes: list[Quote] = []
    for members in sorted(by_fiche.values(), key=lambda m: -float(scores[m].max())):
        if float(scores[members].max()) < top - fiche_margin:
            continue
        picked: dict[tuple[int, int], Quote] = {}  # (part's place in the fiche, sentence position) -> quote
        for i in sorted(members, key=lambda i: -float(scores[i]))[:per_fiche]:
            chunk = candidates[i].chunk
            place = chunks_of[chunk.fiche_id].index(chunk)
            for position, sentence in _in_context(candidates[i].in_chunk, candidates[i].position, list_items):
                picked.setdefault(
                    (place, position), Quote(chunk, sentence.text, round(float(scores[i]), 4), bool(sentence.bullet))
                )
        quotes.extend(quote for _, quote in sorted(picked.items()))  # in the fiche's order
    return Selection(quotes, list(dict.fromkeys(q.chunk for q in quotes)))


# A passage as sources and quotes both name it: fiche, heading path, text (fiches share passage texts).
PassageKey = tuple[str, tuple[str, ...], str]


def passage_key(chunk: Chunk) -> PassageKey:
    return (chunk.fiche_id, chunk.section, chunk.text)


def render_quotes(
    selection: Selection, number: dict[PassageKey, int], titles: dict[str, str], keep: set[str] | None
) -> str:
    """The quoted answer: under ``QUOTED_HEADING``, fiche by fiche (« title » :), case by case within a fiche
    (— heading path : the situation its quotes apply to), one quote per line with its citation, list items
    indented. ``number``: source number of each passage (``passage_key``); ``keep``: the quotes that passed
    the grounding check (None: all, to check them: the cited lines alone)."""
    lines = [] if keep is None else [QUOTED_HEADING]
    fiche: str | None = None
    case: tuple[str, ...] = ()
    for quote in selection.quotes:
        n = number.get(passage_key(quote.chunk))
        if n is None or (keep is not None and quote.text not in keep):
            continue
        text = quote.text.rstrip()
        core = text.rstrip(".!?…:; ")
        cited = f"{core} [{n}]{text[len(core) :]}"
        if keep is None:
            lines.append(cited)
            continue
        if quote.chunk.fiche_id != fiche:
            fiche, case = quote.chunk.fiche_id, ()
            lines.append(f"« {titles[fiche]} » :")
        if quote.chunk.section != case:
            lines.append(f"— {' > '.join(quote.chunk.section) or _GENERAL} :")
            case = quote.chunk.section
        lines.append(f"{'  - ' if quote.list_item else '- '}{cited}")
    return "\n".join(lines) if len(lines) > 1 or keep is None else ""
