"""French text analysis for the lexical index: one function used at index time and at query time.

Lower-case, elisions removed (l', d', qu', ...), accents folded, stop words dropped, Snowball French
stemming. Folding comes before stemming so that "solidarite" typed without accents gets the same stem as
"solidarité".
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_FRENCH

__all__ = ["FrenchAnalyzer", "fold_accents"]

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_ELISION = re.compile(r"\b(?:[ldjmntsc]|qu|jusqu|lorsqu|puisqu|quoiqu)['’]", re.IGNORECASE)
# Words that carry meaning in administrative questions although generic stop-word lists drop them.
_KEEP = frozenset({"pas", "sans", "plus", "moins", "non"})


def fold_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class FrenchAnalyzer:
    """Callable turning a text into index terms. Cheap to create; keeps a small stem cache."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("french")
        self._stop = frozenset(fold_accents(w) for w in STOPWORDS_FRENCH) - _KEEP
        self._stem = lru_cache(maxsize=200_000)(self._stem_word)

    def _stem_word(self, word: str) -> str:
        return str(self._stemmer.stemWord(word))

    def __call__(self, text: str) -> list[str]:
        text = _ELISION.sub(" ", unicodedata.normalize("NFKC", text).lower())
        terms: list[str] = []
        for word in _TOKEN.findall(fold_accents(text)):
            if word in self._stop or (len(word) == 1 and not word.isdigit()):
                continue
            terms.append(self._stem(word))
        return terms
