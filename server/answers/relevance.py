"""When do the fiches cover a question? The rule that decides whether an answer is generated at all.

Covered when the best dense cosine (query vs fiche heads) reaches ``Settings.min_dense_cosine`` OR the best
whole-fiche BM25 score reaches ``relevance_min_lexical``. The dense threshold is the embedder's own
(``relevance_min_dense`` when set, else the value calibrated for the embedder on the dev split, the
situational set, one-word queries and the off-topic set). With EmbeddingGemma int8 (docs/architecture.md,
"Answers", step 2): 207 of 207 on-topic questions of the test split, the situational set and one-word queries
are covered; 30 of 32 off-topic questions are not. Erring towards "covered" is deliberate: a question the
fiches do not cover still gets an answer that says so, from the generator's instructions.
"""

from __future__ import annotations

from server.search.retrieval.search import Retrieval

__all__ = ["is_covered"]


def is_covered(retrieval: Retrieval, *, min_dense: float, min_lexical: float) -> bool:
    if not retrieval.hits:
        return False
    dense = retrieval.best_dense is not None and retrieval.best_dense >= min_dense
    lexical = retrieval.best_fiche_lexical is not None and retrieval.best_fiche_lexical >= min_lexical
    return dense or lexical
