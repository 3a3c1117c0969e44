"""The quoted answer's selection and layout, with a bag-of-words embedder (the served model is exercised by
tests/integration/test_answers_stack.py)."""

from __future__ import annotations

import asyncio

import numpy as np

from corpus.records import Chunk, Fiche
from server.answers.extractive import (
    HEADING_LINE,
    QUOTED_HEADING,
    Quote,
    Selection,
    passage_key,
    render_quotes,
    select_quotes,
)
from server.search.retrieval.search import FicheHit
from tests.support.fixtures import hashing_embed


def _fiche(fiche_id: str, title: str) -> Fiche:
    return Fiche(
        id=fiche_id,
        type="Fiche d'information",
        audience="particuliers",
        audiences=["particuliers"],
        title=title,
        description="",
        url=f"https://www.service-public.fr/particuliers/vosdroits/{fiche_id}",
        theme="",
        breadcrumb=[],
        updated="2020-01-01",
        answerable=True,
        blocks=[],
        related_questions=[],
        links=[],
        places=[],
        references=[],
        see_also=[],
    )


def _chunk(fiche_id: str, n: int, section: tuple[str, ...], text: str) -> Chunk:
    return Chunk(id=f"{fiche_id}-{n}", fiche_id=fiche_id, section=section, cases=(), text=text)


LOST = _fiche("F1", "Carte d'identité perdue")
GARDEN = _fiche("F2", "Jardinage en ville")
CHUNKS = {
    "F1": [
        _chunk("F1", 1, ("Déclaration",), "Vous devez déclarer la perte de la carte d'identité en mairie."),
        _chunk(
            "F1",
            2,
            ("Refaire la carte",),
            "Pour refaire la carte d'identité perdue, fournissez les pièces suivantes :\n- une photo d'identité\n"
            "- un justificatif de domicile\nDans le cas contraire, la carte d'identité perdue coûte 25 € en timbre.",
        ),
        _chunk("F1", 3, ("Refaire la carte", "Pièces"), "- Passeport\n- Un livret de famille"),
    ],
    "F2": [_chunk("F2", 1, ("Potager",), "Les tomates se plantent au printemps dans un sol riche.")],
}
QUESTION = "J'ai perdu ma carte d'identité, comment refaire la carte d'identité perdue ?"


async def _vectors(texts: list[str]) -> np.ndarray:
    return hashing_embed(texts)


def _select(hits: list[FicheHit], **options: int | float) -> Selection:
    query = hashing_embed([QUESTION])[0]
    return asyncio.run(select_quotes(query, hits, CHUNKS, _vectors, **options))  # type: ignore[arg-type]


def test_quotes_come_with_what_they_need_to_be_read_alone() -> None:
    selection = _select([FicheHit(LOST, 1.0, []), FicheHit(GARDEN, 0.5, [])], per_fiche=2)
    texts = [q.text for q in selection.quotes]
    # The list's introduction brings its items; the sentence that leans back brings the one before it.
    assert "Pour refaire la carte d'identité perdue, fournissez les pièces suivantes :" in texts
    intro = texts.index("Pour refaire la carte d'identité perdue, fournissez les pièces suivantes :")
    assert texts[intro + 1 : intro + 3] == ["une photo d'identité", "un justificatif de domicile"]
    assert [q.list_item for q in selection.quotes[intro : intro + 3]] == [False, True, True]
    # Short items quoted without their introduction ("Passeport") are left out; the unrelated fiche too.
    assert "Passeport" not in texts and all(q.chunk.fiche_id == "F1" for q in selection.quotes)
    # In the fiche's order, and every quote is a sentence of its passage.
    places = [[c.id for c in CHUNKS["F1"]].index(q.chunk.id) for q in selection.quotes]
    assert places == sorted(places)
    assert all(q.text in q.chunk.text for q in selection.quotes)


def test_a_sentence_leaning_on_the_one_before_brings_it() -> None:
    question = "Dans le cas contraire combien coûte la carte perdue en timbre ?"
    query = hashing_embed([question])[0]
    hits = [FicheHit(LOST, 1.0, [])]
    selection = asyncio.run(select_quotes(query, hits, CHUNKS, _vectors, per_fiche=1, sections=1))
    # It follows a list: the list comes whole, under its introduction.
    assert [q.text for q in selection.quotes] == [
        "Pour refaire la carte d'identité perdue, fournissez les pièces suivantes :",
        "une photo d'identité",
        "un justificatif de domicile",
        "Dans le cas contraire, la carte d'identité perdue coûte 25 € en timbre.",
    ]


def test_rendering_groups_quotes_by_fiche_with_their_citations() -> None:
    selection = _select([FicheHit(LOST, 1.0, [])], per_fiche=3)
    number = {passage_key(chunk): n for n, chunk in enumerate(CHUNKS["F1"], start=1)}
    plain = render_quotes(selection, number, {}, None)
    assert all(line.rstrip(".:; ").endswith("]") for line in plain.splitlines())
    kept = {q.text for q in selection.quotes}
    shown = render_quotes(selection, number, {"F1": LOST.title}, kept).splitlines()
    assert shown[0] == QUOTED_HEADING and shown[1] == "« Carte d'identité perdue » :"
    assert shown[2] == "— Refaire la carte :"  # the case the quotes below it apply to
    assert all(HEADING_LINE.match(line) for line in shown[1:3])
    assert not any(HEADING_LINE.match(line) for line in shown[3:])
    assert "  - une photo d'identité [2]" in shown
    assert render_quotes(selection, number, {"F1": LOST.title}, set()) == ""  # nothing passed the check


def test_each_case_of_a_fiche_gets_its_line_and_passages_outside_any_heading_say_so() -> None:
    declaration, _, pieces = CHUNKS["F1"]
    intro = _chunk("F1", 4, (), "La carte d'identité est gratuite.")
    quotes = [
        Quote(declaration, declaration.text, 0.9, False),
        Quote(pieces, "Passeport", 0.8, True),
        Quote(intro, intro.text, 0.7, False),
    ]
    selection = Selection(quotes, [declaration, pieces, intro])
    number = {passage_key(declaration): 1, passage_key(pieces): 2, passage_key(intro): 3}
    shown = render_quotes(selection, number, {"F1": LOST.title}, {q.text for q in quotes}).splitlines()
    assert shown[1:] == [
        "« Carte d'identité perdue » :",
        "— Déclaration :",
        "- Vous devez déclarer la perte de la carte d'identité en mairie [1].",
        "— Refaire la carte > Pièces :",
        "  - Passeport [2]",
        "— En général :",
        "- La carte d'identité est gratuite [3].",
    ]


def test_a_quote_cites_its_own_fiche_when_another_fiche_has_the_same_passage() -> None:
    same = "Vous devez déclarer la perte de la carte d'identité en mairie."
    mine, other = _chunk("F1", 1, (), same), _chunk("F9", 1, ("En France",), same)
    selection = Selection([Quote(mine, same, 0.9, False)], [mine])
    number = {passage_key(mine): 1, passage_key(other): 2}
    shown = render_quotes(selection, number, {"F1": LOST.title}, {same})
    assert shown.splitlines()[-1] == "- Vous devez déclarer la perte de la carte d'identité en mairie [1]."


def test_a_fiches_own_questions_and_repeated_sentences_are_not_quoted() -> None:
    asked = "Quels papiers fournir pour refaire la carte d'identité perdue ?"
    stated = "Pour refaire la carte d'identité perdue, il faut une photo d'identité."
    chunks = {
        "F1": [_chunk("F1", 1, ("Pièces",), f"{asked}\n{stated}")],
        "F2": [_chunk("F2", 1, ("À l'étranger",), stated.replace("Pour", "pour"))],
    }
    query = hashing_embed([QUESTION])[0]
    hits = [FicheHit(LOST, 1.0, []), FicheHit(GARDEN, 0.9, [])]
    selection = asyncio.run(select_quotes(query, hits, chunks, _vectors, fiche_margin=1.0))
    assert [q.text for q in selection.quotes] == [stated]
