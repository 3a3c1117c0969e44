"""Answer-pipeline pieces that need no model: prompt budget, citations, output guard, bundle, SSE."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corpus.parse import parse_publication
from corpus.tree import from_xml
from server.answers.bundle import order_fiches, practical_links, related_questions
from server.answers.citations import check_citations
from server.answers.guard import guard_answer
from server.answers.prompt import SYSTEM_PROMPT, PromptSource, QuestionTooLong, build_prompt
from server.answers.repetition import RepetitionGuard
from server.answers.sse import sse_event
from tests.support.fixtures import FICHE_XML, PRO_XML, QUESTION_XML


def _words(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def _source(n: int, words: int) -> PromptSource:
    return PromptSource(
        n=n,
        fiche_id=f"F{n}",
        title=f"Fiche {n}",
        url="",
        section=("Démarche",),
        cases=("Vol en France",),
        text=" ".join(["mot"] * words),
    )


def test_prompt_numbers_sources_and_states_the_situation() -> None:
    prompt = build_prompt("Ma carte a été volée", [_source(7, 10), _source(9, 10)], count_tokens=_words, budget=1000)
    system = prompt.messages[0]["content"]
    assert system.startswith(SYSTEM_PROMPT)
    assert "Extrait [1] : Fiche 7 (Démarche)\nSituation : Vol en France\nmot" in system
    assert system.index("Extrait [1]") < system.index("Extrait [2] : Fiche 9")
    assert prompt.messages[1] == {"role": "user", "content": "Ma carte a été volée"}
    assert [s.n for s in prompt.sources] == [1, 2]
    assert not prompt.truncated
    # The count of the prompt as sent: the system prompt's words, the two excerpts' 10 words each, the 5 of
    # the question (one token per word with this counter).
    frame = len(build_prompt("", [], count_tokens=_words, budget=1000).messages[0]["content"].split())
    assert prompt.prompt_tokens == len(system.split()) + 5
    assert len(system.split()) > frame + 20


def test_prompt_drops_lowest_ranked_then_shortens() -> None:
    sources = [_source(1, 300), _source(2, 300), _source(3, 300)]
    prompt = build_prompt("question", sources, count_tokens=_words, budget=350)
    assert prompt.truncated and prompt.prompt_tokens <= 350
    assert [s.fiche_id for s in prompt.sources] == ["F1"]
    assert prompt.sources[0].text.endswith("[…]")
    with pytest.raises(QuestionTooLong, match="question alone") as raised:
        build_prompt("x " * 600, sources, count_tokens=_words, budget=100)
    # What it says fits: a question of that many characters (of the same kind) leaves room for nothing else.
    room = 100 - _words(build_prompt("", [], count_tokens=_words, budget=100).messages)
    assert raised.value.max_chars == 1200 * room // 600
    assert build_prompt("x " * (raised.value.max_chars // 2), [], count_tokens=_words, budget=100).prompt_tokens <= 100


@given(st.lists(st.integers(10, 400), min_size=1, max_size=6), st.integers(120, 2000))
def test_prompt_always_fits(sizes: list[int], budget: int) -> None:
    prompt = build_prompt(
        "question", [_source(i, w) for i, w in enumerate(sizes, 1)], count_tokens=_words, budget=budget
    )
    assert prompt.prompt_tokens <= budget
    assert [s.n for s in prompt.sources] == list(range(1, len(prompt.sources) + 1))


def test_citations_to_unknown_sources_are_removed() -> None:
    checked = check_citations("Déclarez le vol [1]. Refaites la carte [2][7]. Voir aussi [3, 9] et [0].", 3)
    assert checked.text == "Déclarez le vol [1]. Refaites la carte [2]. Voir aussi [3] et."
    assert checked.cited == (1, 2, 3)
    assert checked.removed == 3
    plain = check_citations("Rien à citer.", 2)
    assert (plain.text, plain.cited, plain.removed) == ("Rien à citer.", (), 0)
    assert check_citations("Plage [1-3].", 2).removed == 1
    # A marker written before its sentence moves to its end.
    assert check_citations("[1]. Il faut déclarer le vol.[2]. Puis refaire la carte.", 2).text == (
        "Il faut déclarer le vol [1]. Puis refaire la carte [2]."
    )
    # Removing a citation leaves no doubled period; a real ellipsis stays.
    assert check_citations("Pour le faire.[3]. Ensuite… voire... [1]", 2).text == "Pour le faire. Ensuite… voire... [1]"


@given(st.text(max_size=200), st.integers(0, 5))
def test_citations_never_keep_an_invalid_number(text: str, n: int) -> None:
    import re

    checked = check_citations(text, n)
    # Every bracketed number left that was produced by the checker is a valid source.
    assert all(1 <= c <= n for c in checked.cited)
    if "[" not in text:  # nothing to check: nothing removed or cited
        assert checked.removed == 0 and checked.cited == ()
    for number in re.findall(r"\[(\d+)\]", checked.text):
        if f"[{number}]" not in text:
            assert 1 <= int(number) <= n


def test_guard_removes_unknown_contacts_and_keeps_known_ones() -> None:
    fiches_text = "Appelez le 01 40 56 60 00 ou écrivez à contact@ants.gouv.fr ; site https://ants.gouv.fr/demarches"
    links = ["https://passeport.ants.gouv.fr/vos-demarches", "https://www.service-public.fr/cerfa/14011"]
    answer = (
        "Faites la pré-demande sur https://passeport.ants.gouv.fr/pre-demande-inventee. "
        "Écrivez à contact@ants.gouv.fr ou à arnaque@exemple.com, appelez le 01.40.56.60.00 ou le 06 12 34 56 78. "
        "Voir https://ants.gouv.fr/demarches, https://faux-site.fr/x et le 3939 ; montant 3500 €."
    )
    result = guard_answer(answer, fiches_text, links)
    assert "https://passeport.ants.gouv.fr/vos-demarches." in result.text  # replaced by the known link of that site
    assert "pre-demande-inventee" not in result.text and "faux-site" not in result.text
    assert "https://ants.gouv.fr/demarches," in result.text
    assert "contact@ants.gouv.fr" in result.text and "arnaque@exemple.com" not in result.text
    assert "01.40.56.60.00" in result.text and "06 12 34 56 78" not in result.text
    assert "3939" in result.text and "3500 €" in result.text
    assert (result.urls_removed, result.emails_removed, result.phones_removed) == (2, 1, 1)


def test_bundle_orders_by_citation_then_rank_and_dedupes() -> None:
    card = parse_publication(from_xml(FICHE_XML.encode()))
    question = parse_publication(from_xml(QUESTION_XML.encode()))
    pro = parse_publication(from_xml(PRO_XML.encode()))
    ordered = order_fiches([card, question, pro], cited_ids=["F23961", "F1759"])
    assert [f.id for f in ordered] == ["F23961", "F1759", "F11601"]
    # F11601 is listed by F1759 but is itself a returned fiche: not repeated as a related question.
    assert related_questions(ordered) == []
    assert [q.fiche_id for q in related_questions([card])] == ["F11601"]
    links = practical_links([card, card])
    assert [link.type for link in links] == ["teleservice", "formulaire", "simulateur"]
    assert {link.fiche_id for link in links} == {"F1759"}


def test_sse_framing() -> None:
    assert sse_event("token", '{"text":"Bon"}') == b'event: token\ndata: {"text":"Bon"}\n\n'
    assert sse_event("final", "a\nb", event_id="3") == b"event: final\nid: 3\ndata: a\ndata: b\n\n"
    assert msgspec.json.decode(sse_event("x", msgspec.json.encode({"k": 1})).split(b"data: ")[1]) == {"k": 1}
    with pytest.raises(ValueError, match="line break"):
        sse_event("bad\nname", "x")


def test_repetition_guard_cuts_at_the_first_repeated_sentence() -> None:
    guard = RepetitionGuard()
    text = ""
    cut = None
    pieces = [
        "Vous pouvez vous réinscrire en ligne [1]. ",
        "Sinon, allez en agence. ",
        "Vous pouvez vous réinscrire ",
        "en ligne [2]. Encore",
    ]
    for piece in pieces:
        text += piece
        if (cut := guard.feed(text)) is not None:
            break
    assert cut is not None
    assert text[:cut] == "Vous pouvez vous réinscrire en ligne [1]. Sinon, allez en agence."
    # Short sentences ("Oui.") may repeat; a sentence is judged only once it is complete.
    other = RepetitionGuard()
    assert other.feed("Oui. Oui. Il faut déclarer le vol au commissariat") is None
    assert other.feed("Oui. Oui. Il faut déclarer le vol au commissariat.") is None
    # A long run without any sentence end, then a sentence said twice: found, and the run is judged as
    # one sentence once it ends.
    long = RepetitionGuard()
    text = ""
    for i in range(2000):
        text += f"mot{i} "
        assert long.feed(text) is None
    text += ". Déclarez le vol au commissariat. Déclarez le vol au commissariat."
    cut = long.feed(text)
    assert cut is not None and text[cut:] == " Déclarez le vol au commissariat."
