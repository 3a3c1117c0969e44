"""RRF, French analysis and query expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corpus.analysis import FrenchAnalyzer
from server.search.retrieval.expansion import QueryExpander
from server.search.retrieval.rrf import rrf


def test_rrf_known_values() -> None:
    fused = rrf([["a", "b", "c"], ["b", "c", "a"]], k=60)
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_rrf_weights_and_duplicates() -> None:
    fused = dict(rrf([["a", "a", "b"], ["b"]], k=0, weights=[1.0, 0.5]))
    assert fused == {"a": 1.0, "b": 0.5 + 0.5}
    with pytest.raises(ValueError, match="one weight per ranking"):
        rrf([["a"]], weights=[1.0, 2.0])


@given(st.lists(st.lists(st.integers(0, 20), max_size=15), max_size=4), st.integers(0, 100))
def test_rrf_properties(rankings: list[list[int]], k: int) -> None:
    fused = rrf(rankings, k=k)
    items = [i for i, _ in fused]
    assert sorted(items) == sorted({x for r in rankings for x in r})
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    if len(rankings) == 1 and rankings[0]:
        assert items == list(dict.fromkeys(rankings[0]))


def test_analyzer_folds_accents_elisions_and_stems() -> None:
    analyze = FrenchAnalyzer()
    assert analyze("L'allocation de solidarité") == analyze("allocations solidarite")
    assert "le" not in analyze("le chômage")
    assert analyze("j'ai perdu ma carte d’identité") == analyze("perdu carte identite")
    assert analyze("") == []


@given(st.text(max_size=200))
def test_analyzer_never_fails(text: str) -> None:
    assert all(isinstance(t, str) and t for t in FrenchAnalyzer()(text))


def test_expansion_acronyms_and_everyday_words() -> None:
    expander = QueryExpander({"DILA": "Direction de l'information légale et administrative", "âme": "x"})
    assert "revenu de solidarité active" in expander.expand("la caf a coupé mon RSA")
    assert "caisse d'allocations familiales" in expander.expand("la caf a coupé mon RSA")
    assert "employeur" in expander.expand("mon patron veut me virer")
    assert "licenciement" in expander.expand("mon patron veut me virer")
    assert "Direction de l'information légale" in expander.expand("site de la DILA")
    # Corpus acronyms only when typed in capitals; ordinary words are left alone.
    assert expander.expand("site de la dila") == "site de la dila"
    assert expander.expand("mon âme") == "mon âme"
    assert expander.expand("bonjour madame") == "bonjour madame"
    assert expander.expand("chomage").startswith("chomage (")
