"""Training pairs for the embedder's fine-tuning: a query, the fiche it should find, a hard negative.

Mined from the corpus itself (seeded, reproducible):
- ``sentence``: a sentence of a fiche's body (8 to 35 words) -> that fiche — details of a case, in the words a
  person meets them;
- ``related``: the title of a question-type fiche -> that fiche and every fiche that lists it as a related
  question (the hidden-title evaluation fiches are left out);
- ``situation``: a case or situation heading of a fiche, with its parent headings -> that fiche;
- ``glossary``: an acronym's expansion -> a fiche that defines it.
Or given by a platform team (advisors' feedback): a JSONL file of ``{"query": "...", "fiche_id": "F1234"}``.

The hard negative of a pair is a sibling fiche: another fiche of the same breadcrumb parent (else of the same
theme and audience), drawn with the seed. A fiche is represented by its head (title, description, breadcrumb,
related questions): the text the index embeds for it.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from corpus.index import unit_text
from corpus.questions import QUESTION_TYPES, evaluation_fiches
from corpus.records import Fiche

__all__ = ["Pair", "mine_pairs", "read_pairs", "write_bundle"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_SKIPPED_LINES = ("Où s'adresser", "Téléservice", "Formulaire", "Simulateur", "Modèle de document")


@dataclass(frozen=True, slots=True)
class Pair:
    query: str
    positives: tuple[str, ...]
    negative: str
    kind: str


def _sentences(fiche: Fiche) -> list[str]:
    out: list[str] = []
    for block in fiche.blocks:
        for line in block.lines:
            if line.startswith(_SKIPPED_LINES):
                continue
            out.extend(s for s in _SENTENCE.split(line.lstrip("- ")) if 8 <= len(s.split()) <= 35)
    return out


def _situations(fiche: Fiche) -> list[str]:
    out = []
    for block in fiche.blocks:
        if block.cases and block.path and block.path[-1] == block.cases[-1] and len(block.path[-1].split()) >= 3:
            out.append(" > ".join(block.path))
    return list(dict.fromkeys(out))


class _Negatives:
    """Sibling fiches: same breadcrumb parent, else same theme and audience."""

    def __init__(self, fiches: Iterable[Fiche], rng: random.Random) -> None:
        self.rng = rng
        self.by_parent: dict[tuple[str, ...], list[str]] = defaultdict(list)
        self.by_theme: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.fiches = {f.id: f for f in fiches}
        for fiche in self.fiches.values():
            self.by_parent[tuple(fiche.breadcrumb)].append(fiche.id)
            self.by_theme[(fiche.theme, fiche.audience)].append(fiche.id)

    def draw(self, positives: tuple[str, ...]) -> str:
        fiche = self.fiches[positives[0]]
        for group in (self.by_parent[tuple(fiche.breadcrumb)], self.by_theme[(fiche.theme, fiche.audience)]):
            candidates = [f for f in group if f not in positives]
            if candidates:
                return self.rng.choice(candidates)
        return self.rng.choice([f for f in self.fiches if f not in positives])


def mine_pairs(
    fiches: Mapping[str, Fiche], *, seed: int = 0, per_fiche: int = 2, max_pairs: int | None = None
) -> list[Pair]:
    """Pairs mined from the corpus (answerable fiches only, by id), in a seeded order."""
    rng = random.Random(seed)
    answerable = sorted((f for f in fiches.values() if f.answerable), key=lambda f: f.id)
    negatives = _Negatives(answerable, random.Random(seed + 1))
    held_out = {f.id for f in evaluation_fiches(fiches)}
    listed_by: dict[str, list[str]] = defaultdict(list)
    for fiche in answerable:
        for question in fiche.related_questions:
            listed_by[question.id].append(fiche.id)
    raw: list[tuple[str, tuple[str, ...], str]] = []
    for fiche in answerable:
        sentences = _sentences(fiche)
        raw.extend((s, (fiche.id,), "sentence") for s in rng.sample(sentences, min(per_fiche, len(sentences))))
        situations = _situations(fiche)
        raw.extend((s, (fiche.id,), "situation") for s in rng.sample(situations, min(1, len(situations))))
        if fiche.type in QUESTION_TYPES and fiche.id not in held_out:
            raw.append((fiche.title, (fiche.id, *dict.fromkeys(listed_by[fiche.id])), "related"))
        for _acronym, expansion in sorted(fiche.abbreviations.items())[:1]:
            if len(expansion.split()) >= 3:
                raw.append((expansion, (fiche.id,), "glossary"))
    rng.shuffle(raw)
    if max_pairs is not None:
        raw = raw[:max_pairs]
    return [Pair(query, positives, negatives.draw(positives), kind) for query, positives, kind in raw]


def read_pairs(path: Path, fiches: Mapping[str, Fiche], *, seed: int = 0) -> list[Pair]:
    """A platform team's pairs (JSONL ``{"query", "fiche_id"}``); an unknown fiche or an empty query is an error
    naming its line."""
    answerable = sorted((f for f in fiches.values() if f.answerable), key=lambda f: f.id)
    negatives = _Negatives(answerable, random.Random(seed + 2))
    known = {f.id for f in answerable}
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, fiche_id = str(row["query"]).strip(), str(row["fiche_id"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f'{path}:{number}: expected {{"query": ..., "fiche_id": ...}} ({exc})') from exc
        if not query:
            raise ValueError(f"{path}:{number}: empty query")
        if fiche_id not in known:
            raise ValueError(f"{path}:{number}: {fiche_id} is not an answerable fiche of the index")
        pairs.append(Pair(query, (fiche_id,), negatives.draw((fiche_id,)), "given"))
    return pairs


def write_bundle(pairs: list[Pair], fiches: Mapping[str, Fiche], out: Path) -> dict[str, int]:
    """What the training step reads: ``pairs.jsonl`` and ``fiches.jsonl`` (the head text of every fiche a pair
    names, as the index embeds it). Returns counts per kind."""
    out.mkdir(parents=True, exist_ok=True)
    needed = sorted({f for p in pairs for f in (*p.positives, p.negative)})
    with (out / "pairs.jsonl").open("w", encoding="utf-8") as fh:
        for pair in pairs:
            fh.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")
    with (out / "fiches.jsonl").open("w", encoding="utf-8") as fh:
        for fiche_id in needed:
            fh.write(json.dumps({"id": fiche_id, "text": unit_text(fiches[fiche_id], None)}, ensure_ascii=False))
            fh.write("\n")
    counts: dict[str, int] = defaultdict(int)
    for pair in pairs:
        counts[pair.kind] += 1
    return dict(counts)
