"""French sentence splitting for answers and source passages.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by a space and what can start a sentence, or at a
line break; a list item (``- ``, ``• ``, ``1. ``) is a sentence of its own. Not an end: the period of an
abbreviation (``M.``, ``art.``, ``n°``, ``etc.`` inside a sentence), of an initial (``J. Dupont``), or inside a
number (``1.5``, ``13,76``). Citation markers written after the final punctuation (``… mairie. [2]``) belong
to the sentence before them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CITATION", "Sentence", "citation_numbers", "group_numbers", "split_sentences", "strip_citations"]

# Lower-cased, without the period: abbreviations that a capital or a number often follows ("M. Dupont",
# "art. L. 1234"). Others ("etc.") end a sentence when a capital follows and do not otherwise.
_ABBREVIATIONS = frozenset(
    {
        "mm",
        "mme",
        "mmes",
        "mlle",
        "mlles",
        "dr",
        "pr",
        "me",
        "mgr",
        "st",
        "ste",
        "art",
        "al",
        "cf",
        "ex",
        "env",
        "av",
        "apr",
        "approx",
        "min",
        "max",
        "tél",
        "tel",
        "fax",
        "hab",
        "vol",
        "chap",
        "éd",
        "ed",
        "pp",
        "no",
        "nº",
        "réf",
        "ref",
        "coll",
        "dir",
        "sq",
        "suiv",
        "spéc",
        "c.-à-d",
        "c-à-d",
        "j.-c",
        "ibid",
        "op",
        "cit",
    }
)
_BULLET = re.compile(r"^\s*(?:[-•*–]|\d{1,2}[.)])\s+")
_MARKERS = r"(?:\s*\[\d+(?:\s*[,;-]\s*\d+)*\])*"
_END = re.compile(rf"[.!?…]+{_MARKERS}(?=\s+|$)")
_NEXT_START = re.compile(r"\s+[\"«(\[]?\s*[A-ZÀ-ÖØ-Þ0-9]")
CITATION = re.compile(r"\s?\[(\d+(?:\s*[,;-]\s*\d+)*)\]")  # a marker, with the space before it


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str  # as written, citation markers included, without the list bullet
    line: int  # index of the line it comes from (sentences of one line are rebuilt on one line)
    bullet: str  # the list bullet it had ("- "), or ""


def group_numbers(group: str) -> list[int]:
    """The numbers of one marker's inside ("1, 3", "2-4"); a short range is expanded."""
    out: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group):
        if "-" in part:
            low, high = (int(x) for x in part.split("-", 1))
            out.extend(range(low, high + 1) if 0 < high - low < 10 else [low, high])
        else:
            out.append(int(part))
    return out


def citation_numbers(text: str) -> list[int]:
    """The numbers cited in ``text``, in order, each once ([1, 3] from "… [1] … [3][1]"); ranges expanded."""
    return list(dict.fromkeys(n for group in CITATION.findall(text) for n in group_numbers(group)))


def strip_citations(text: str) -> str:
    return CITATION.sub("", text).strip()


def _is_abbreviation(line: str, end: int) -> bool:
    """Whether the period at ``line[end]`` closes an abbreviation or an initial."""
    if line[end] != ".":
        return False
    word = re.search(r"([\w.°-]+)$", line[:end])
    if word is None:
        return False
    token = word.group(1).lower()
    if token in _ABBREVIATIONS:
        return True
    return len(token) == 1 and line[end - 1].isupper()  # an initial or "M."


def split_sentences(text: str) -> list[Sentence]:
    out: list[Sentence] = []
    for number, raw in enumerate(text.splitlines()):
        bullet_match = _BULLET.match(raw)
        bullet = "- " if bullet_match else ""
        line = raw[bullet_match.end() :] if bullet_match else raw.strip()
        start = 0
        for match in _END.finditer(line):
            end = match.end()
            if _is_abbreviation(line, match.start()):
                continue
            if end < len(line) and not _NEXT_START.match(line, end):
                continue  # "… 1.5 m", "… ? et ensuite": no sentence starts after it
            piece = line[start:end].strip()
            if piece:
                out.append(Sentence(piece, number, bullet if not out or out[-1].line != number else ""))
            start = end
        piece = line[start:].strip()
        if piece:
            out.append(Sentence(piece, number, bullet if not out or out[-1].line != number else ""))
    return out
