"""When do the fiches cover a question? The rule that decides whether an answer is generated at all.

Covered when the best dense cosine (query vs fiche heads) reaches ``relevance_min_dense`` OR the best
whole-fiche BM25 score reaches ``relevance_min_lexical``. Measured on this corpus with the int8 e5-small
model (README, "Nothing relevant"): every one of 79 situational questions and 10 one-word queries is
covered; 29 of 32 off-topic questions are not. Erring towards "covered" is deliberate: a question the
fiches do not cover still gets an answer that says so, from the generator's instructions.
"""

from __future__ import annotations

from server.retrieval.search import Retrieval

__all__ = ["is_covered"]


def is_covered(retrieval: Retrieval, *, min_dense: float, min_lexical: float) -> bool:
    if not retrieval.hits:
        return False
    dense = retrieval.best_dense is not None and retrieval.best_dense >= min_dense
    lexical = retrieval.best_fiche_lexical is not None and retrieval.best_fiche_lexical >= min_lexical
    return dense or lexical
