"""Inline citations ``[1]``, ``[2]`` in a drafted answer, checked against the returned sources.

A citation to a number that is not a returned source is removed (with the space before it); the caller is
told how many were removed and which sources the answer cites. Whether a source supports the sentence that
cites it is checked afterwards, sentence by sentence (``server.answers.grounding``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.answers.sentences import CITATION, group_numbers

__all__ = ["CheckedCitations", "check_citations"]

# [1], [2, 3], [1][2] and [1-2] are all written by small models; each number is checked on its own.
_DROPPED = "\x00"
_LEADING = re.compile(r"(?:^|(?<=[.!?\n]))(\s*)((?:\[\d+\])+)\s*[.:]\s*([^.!?\n\[]+?)\s*([.!?]|$)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class CheckedCitations:
    text: str
    cited: tuple[int, ...]  # valid source numbers, in order of first citation
    removed: int


def check_citations(text: str, n_sources: int) -> CheckedCitations:
    """Keep citations to sources 1..n_sources, rewrite each marker as ``[a][b]``, drop the others."""
    cited: list[int] = []
    removed = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal removed
        numbers = group_numbers(match.group(1))
        valid = [n for n in numbers if 1 <= n <= n_sources]
        removed += len(numbers) - len(valid)
        for n in valid:
            if n not in cited:
                cited.append(n)
        if not valid:
            return _DROPPED
        lead = " " if match.group(0).startswith(" ") else ""
        return lead + "".join(f"[{n}]" for n in dict.fromkeys(valid))

    checked = CITATION.sub(replace, text)
    # "faire.[7]." must not become "faire.." once [7] is gone.
    checked = re.sub(rf"([.!?]){_DROPPED}\s*\.", r"\1", checked).replace(_DROPPED, "")
    # "[1]. Il faut..." (the marker written as its own sentence, before the text it cites) becomes
    # "Il faut... [1]."
    checked = _LEADING.sub(
        lambda m: f"{m.group(1) or (' ' if m.start() else '')}{m.group(3)} {m.group(2)}{m.group(4)}", checked
    )
    return CheckedCitations(text=checked, cited=tuple(cited), removed=removed)
