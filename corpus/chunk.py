"""Fiche -> retrievable chunks that respect the fiche's structure.

Consecutive blocks are merged while they apply to the same situation/case and the chunk stays under a
word budget; a chunk never mixes two situations or cases. A block longer than the budget is split at line
boundaries. Sub-headings met inside a chunk are kept inline so that the text reads as in the fiche.
"""

from __future__ import annotations

import hashlib

from corpus.records import Block, Chunk, Fiche

__all__ = ["DEFAULT_MAX_WORDS", "chunk_context", "chunk_fiche"]

DEFAULT_MAX_WORDS = 160


def chunk_fiche(fiche: Fiche, max_words: int = DEFAULT_MAX_WORDS) -> list[Chunk]:
    if not fiche.answerable:
        return []
    groups: list[tuple[Block, list[str]]] = []
    words = 0
    for block in fiche.blocks:
        lines = list(block.lines)
        if groups and groups[-1][0].cases == block.cases:
            current_block, current = groups[-1]
            heading = _new_heading(current_block, block)
            extra = sum(len(line.split()) for line in lines) + len(heading.split())
            if words + extra <= max_words:
                if heading:
                    current.append(heading)
                current.extend(lines)
                words += extra
                continue
        groups.append((block, []))
        words = 0
        for line in lines:
            n = len(line.split())
            if groups[-1][1] and words + n > max_words:
                groups.append((block, []))
                words = 0
            groups[-1][1].append(line)
            words += n
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for block, lines in groups:
        text = "\n".join(lines)
        digest = hashlib.sha1("\x1f".join((fiche.id, *block.path, text)).encode()).hexdigest()[:12]
        seen[digest] = seen.get(digest, 0) + 1
        suffix = f"-{seen[digest]}" if seen[digest] > 1 else ""
        chunks.append(
            Chunk(
                id=f"{fiche.id}-{digest}{suffix}", fiche_id=fiche.id, section=block.path, cases=block.cases, text=text
            )
        )
    return chunks


def _new_heading(previous: Block, block: Block) -> str:
    """The headings of ``block`` below what ``previous`` already shows, as one inline line."""
    common = 0
    for a, b in zip(previous.path, block.path, strict=False):
        if a != b:
            break
        common += 1
    return " > ".join(block.path[common:])


def chunk_context(title: str | None, chunk: Chunk) -> str:
    """The text a chunk is searched by: fiche title and section path as context, then the passage.

    ``title=None`` leaves the fiche title out (used by the evaluation that hides question titles).
    """
    head = " > ".join(p for p in ((title,) if title else ()) + chunk.section if p)
    return f"{head}\n{chunk.text}" if head else chunk.text
