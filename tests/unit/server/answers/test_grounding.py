"""Sentence splitting and the sentence-level grounding check, with a bag-of-words embedder (the served
model's cosines are exercised by tests/integration/test_answers_stack.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.answers.grounding import NOTHING_SUPPORTED, Claim, Grounded, GroundingRules, ground
from server.answers.sentences import citation_numbers, split_sentences, strip_citations
from tests.support.fixtures import hashing_embed

# With bag-of-words vectors a copy scores 1 and a sentence sharing half its words about 0.5.
RULES = GroundingRules(min_lexical=0.5, min_semantic=0.5, unsupported="remove")

PASSAGES = [
    "Vous devez déclarer le vol au commissariat de police ou à la gendarmerie. "
    "Le timbre fiscal coûte 25 € en cas de vol.",
    "Vous disposez d'un délai de 14 jours pour vous rétracter après un démarchage à domicile.",
]
QUESTION = "On m'a volé ma carte d'identité dans le métro, que dois-je faire ?"


async def _vectors(texts: list[str]) -> np.ndarray:
    return hashing_embed(texts)


def _ground(answer: str, rules: GroundingRules = RULES) -> Grounded:
    return asyncio.run(ground(answer, QUESTION, PASSAGES, _vectors, rules))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "M. Dupont doit aller en mairie. Il apporte 2 photos [1]. Puis il attend.",
            ["M. Dupont doit aller en mairie.", "Il apporte 2 photos [1].", "Puis il attend."],
        ),
        (
            "Le timbre coûte 13,76 €. Voir l'art. L. 1234 du code.",
            ["Le timbre coûte 13,76 €.", "Voir l'art. L. 1234 du code."],
        ),
        ("Une hauteur de 1.5 m. Ensuite, etc. et la suite.", ["Une hauteur de 1.5 m.", "Ensuite, etc. et la suite."]),
        (
            "C'est fini ! [2] Ensuite il faut attendre… Puis revenir.",
            ["C'est fini ! [2]", "Ensuite il faut attendre…", "Puis revenir."],
        ),
        ("Le délai est de 2 mois... Ensuite, rien.", ["Le délai est de 2 mois...", "Ensuite, rien."]),
    ],
)
def test_french_sentences_split_at_ends_not_abbreviations_or_numbers(text: str, expected: list[str]) -> None:
    assert [s.text for s in split_sentences(text)] == expected


def test_list_items_are_sentences_and_keep_their_bullet() -> None:
    sentences = split_sentences(
        "Vous devez fournir :\n- une pièce d'identité ;\n• un justificatif [2].\n1. Un formulaire"
    )
    assert [(s.text, s.line, s.bullet) for s in sentences] == [
        ("Vous devez fournir :", 0, ""),
        ("une pièce d'identité ;", 1, "- "),
        ("un justificatif [2].", 2, "- "),
        ("Un formulaire", 3, "- "),
    ]


def test_citation_numbers_and_stripping() -> None:
    assert citation_numbers("Il faut [1] et [3][1], voire [2-4].") == [1, 3, 2, 4]
    assert strip_citations("Il faut aller en mairie [1][2].") == "Il faut aller en mairie."


def test_numbers_and_amounts_must_match_exactly() -> None:
    assert Claim.of("Le timbre coûte 1 500 € et 13,76 €.").numbers == {"1500", "13,76"}
    grounded = _ground("Le timbre fiscal coûte 25 € en cas de vol [1]. Le timbre fiscal coûte 86 € en cas de vol [1].")
    assert [(s.status, s.citations) for s in grounded.sentences] == [("supported", (1,)), ("unsupported", ())]
    assert grounded.text == "Le timbre fiscal coûte 25 € en cas de vol [1]."


def test_a_negation_the_passage_does_not_make_is_not_supported() -> None:
    grounded = _ground(
        "Vous ne disposez d'aucun délai pour vous rétracter après un démarchage [2]. "
        "Vous disposez d'un délai de 14 jours pour vous rétracter [2]."
    )
    assert [s.status for s in grounded.sentences] == ["unsupported", "supported"]
    assert grounded.citations_removed == 1 and grounded.kept == 1


def test_citations_kept_only_where_the_passage_supports_the_sentence() -> None:
    grounded = _ground("Vous devez déclarer le vol au commissariat de police [2][1].")
    assert grounded.sentences[0].citations == (1,)
    assert grounded.citations_removed == 1 and grounded.citations_added == 0
    assert grounded.text == "Vous devez déclarer le vol au commissariat de police [1]."


def test_an_uncited_supported_sentence_gets_the_passage_that_supports_it() -> None:
    grounded = _ground("Vous disposez de 14 jours pour vous rétracter après un démarchage.")
    assert grounded.text == "Vous disposez de 14 jours pour vous rétracter après un démarchage [2]."
    assert grounded.citations_added == 1 and grounded.cited == (2,)


def test_unsupported_sentences_are_removed_or_marked_by_setting() -> None:
    answer = "Vous devez déclarer le vol au commissariat [1]. Vous pouvez directement obtenir une carte en mairie [1]."
    removed = _ground(answer)
    assert removed.text == "Vous devez déclarer le vol au commissariat [1]."
    assert (removed.kept, removed.removed_unsupported, removed.citations_removed) == (1, 1, 1)
    marked = _ground(answer, GroundingRules(min_lexical=0.5, min_semantic=0.5, unsupported="mark"))
    assert marked.text.endswith("Vous pouvez directement obtenir une carte en mairie (non vérifié).")
    assert [s.status for s in marked.sentences] == ["supported", "unverified"] and marked.unverified == 1


def test_a_sentence_repeating_the_question_is_removed() -> None:
    grounded = _ground(
        "On vous a volé votre carte d'identité dans le métro [1]. Déclarez le vol au commissariat de police."
    )
    assert grounded.removed_echo == 1 and grounded.sentences[0].status == "echo"
    assert grounded.text == "Déclarez le vol au commissariat de police [1]."


def test_when_nothing_is_supported_the_answer_says_so() -> None:
    grounded = _ground("Il faut appeler le maire [1]. Bonne journée ! [2]. Oui.")
    assert grounded.nothing_supported and grounded.text == NOTHING_SUPPORTED
    # "[2]." is no sentence; "Oui." is one, and no passage can support it.
    assert grounded.removed_unsupported == 3 and grounded.cited == ()


def test_lists_keep_their_layout() -> None:
    grounded = _ground(
        "Vous devez :\n- déclarer le vol au commissariat de police [1] ;\n"
        "- vous rétracter dans un délai de 14 jours [2]."
    )
    assert grounded.text == (
        "- déclarer le vol au commissariat de police [1] ;\n- vous rétracter dans un délai de 14 jours [2]."
    )


def test_a_copied_sentence_embeds_only_what_it_cites() -> None:
    """A sentence copied from the passage it cites needs no embedding, even where another passage shares its
    words; a citation of a passage it is not copied from is judged with the embedder, as before."""
    near = "Déclarez le vol au commissariat de police ou à la gendarmerie, muni d'une pièce d'identité."
    passages = [*PASSAGES, near]
    embedded: list[str] = []

    async def counting(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return hashing_embed(texts)

    copied = "Vous devez déclarer le vol au commissariat de police ou à la gendarmerie [1]."
    grounded = asyncio.run(ground(copied, QUESTION, passages, counting, RULES))
    assert embedded == [] and grounded.text == copied
    assert grounded.sentences[0].citations == (1,) and grounded.sentences[0].support == 1.0
    grounded = asyncio.run(ground(copied.replace("[1]", "[1][3]"), QUESTION, passages, counting, RULES))
    assert embedded == [strip_citations(copied), near]
    assert grounded.sentences[0].citations == (1, 3) and grounded.citations_removed == 0
