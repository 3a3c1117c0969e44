"""Degenerate loops: small models sometimes repeat the same sentence until ``max_tokens``.

``RepetitionGuard.feed(text)`` is called with the answer so far; once a complete sentence (at least
``min_chars`` long, compared without case, spaces and citation markers) appears a second time, it returns
where that repetition starts. The caller keeps the text before it and stops generation, which also saves
the rest of the token budget.
"""

from __future__ import annotations

import re

__all__ = ["RepetitionGuard"]

_END = re.compile(r"[.!?]+|\n")
_CITATIONS = re.compile(r"\[\d+(?:\s*[,;-]\s*\d+)*\]")
_NON_WORDS = re.compile(r"\W+")


class RepetitionGuard:
    def __init__(self, min_chars: int = 24) -> None:
        self.min_chars = min_chars
        self._seen: set[str] = set()
        self._checked = 0

    def feed(self, text: str) -> int | None:
        # Only the text after the last complete sentence is searched, for the next sentence end: linear in
        # the answer's length over a whole generation (a regex matching whole sentences from every position
        # was quadratic per call on an unfinished sentence: 8 ms per token on a 320-token answer).
        while (end := _END.search(text, self._checked)) is not None:
            start, self._checked = self._checked, end.end()
            key = _NON_WORDS.sub(" ", _CITATIONS.sub(" ", text[start : end.end()])).strip().lower()
            if len(key) < self.min_chars:
                continue
            if key in self._seen:
                return start
            self._seen.add(key)
        return None
