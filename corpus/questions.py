"""Questions taken from the corpus: the retrieval evaluation set, and the load-test mix that never uses it.

The "Fiche Question-réponse" fiches have real advisors' questions as titles (1,700 of them in the
particuliers corpus). Every n-th one, by fiche id, is held out as the hidden-title evaluation set
(tests/quality); benchmarks and load tests draw their questions from the others.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from corpus.index import SearchIndex
from corpus.records import Fiche

__all__ = ["QUESTION_TYPES", "evaluation_fiches", "load_questions"]

QUESTION_TYPES = ("Fiche Question-réponse", "Fiche Question-réponse conditionnée")
EVALUATION_SIZE = 240


def _question_fiches(fiches: Mapping[str, Fiche]) -> list[Fiche]:
    return sorted((f for f in fiches.values() if f.answerable and f.type in QUESTION_TYPES), key=lambda f: f.id)


def evaluation_fiches(fiches: Mapping[str, Fiche]) -> list[Fiche]:
    """The hidden-title evaluation set: every n-th question fiche by id, 240 of them (``fiches``: by id, as an
    index holds them)."""
    candidates = _question_fiches(fiches)
    step = max(1, len(candidates) // EVALUATION_SIZE)
    return candidates[::step][:EVALUATION_SIZE]


def load_questions(index: SearchIndex, n: int, *, seed: int) -> list[str]:
    """``n`` question titles (fewer if the corpus has fewer), picked with ``seed``, none from the evaluation
    set."""
    held_out = {f.id for f in evaluation_fiches(index.fiches)}
    titles = [f.title for f in _question_fiches(index.fiches) if f.id not in held_out]
    rng = np.random.default_rng(seed)
    return [titles[i] for i in rng.choice(len(titles), size=min(n, len(titles)), replace=False)]
