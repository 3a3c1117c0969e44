"""Sentence-level grounding: every sentence of an answer is checked against the passages it may cite.

For each sentence and each source passage, support is measured twice:

- **lexical**: the share of the sentence's content words (French stems, stop words dropped) found in the
  passage; every number and amount of the sentence must appear in the passage exactly ("15 jours" is not
  supported by "1 mois"), and the sentence must not say the opposite of the passage sentence closest to it
  (a negation on one side only: "aucun délai ne s'applique" against "vous disposez d'un délai");
- **semantic**: the cosine between the sentence and the closest sentence of the passage, both embedded by the
  served embedding model.

A passage supports a sentence when both reach their thresholds (``GroundingRules``). Then:

- a citation ``[n]`` is kept only if passage ``n`` supports the sentence;
- a sentence without a valid citation gets one, to its best-supporting passage, only when a passage supports it;
- a sentence that no passage supports is removed (or kept and marked unverified, ``unsupported="mark"``);
- a sentence that mostly repeats the question is removed, supported or not.

When nothing supported remains, the answer says so in one French sentence and points to the sources.
The result carries each sentence with its status, citations and support, and the counts.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from config.settings import Settings
from corpus.analysis import FrenchAnalyzer
from server.answers.sentences import citation_numbers, split_sentences, strip_citations

__all__ = [
    "NOTHING_SUPPORTED",
    "Claim",
    "Grounded",
    "GroundedSentence",
    "GroundingRules",
    "Support",
    "Vectors",
    "ground",
    "is_echo",
    "measure_support",
    "normalized",
]

Status = Literal["supported", "unverified", "unsupported", "echo"]
Vectors = Callable[[list[str]], Awaitable[NDArray[np.float32]]]

NOTHING_SUPPORTED = (
    "Aucune phrase du brouillon n'a pu être vérifiée dans les fiches : consultez directement les sources "
    "citées ci-dessous."
)
_UNVERIFIED_MARK = " (non vérifié)"
_NUMBER = re.compile(r"\d+(?:[ \u00a0\u202f.]\d{3})*(?:,\d+)?")
_NEGATION = re.compile(
    r"\b(?:ne|n['’])\s*(?:\S+\s+){0,4}?(?:pas|plus|jamais|rien|aucun|aucune|nullement|guère)\b"
    r"|\b(?:aucun|aucune|jamais|nul|nulle)\b",
    re.IGNORECASE,
)
_LINK = re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", re.IGNORECASE)
_analyze = FrenchAnalyzer()


@dataclass(frozen=True, slots=True)
class GroundingRules:
    min_lexical: float  # share of the sentence's content words found in the passage
    min_semantic: float  # cosine to the passage's closest sentence
    unsupported: Literal["remove", "mark"]
    echo_overlap: float = 0.8  # share of the sentence's content words taken from the question

    @classmethod
    def from_settings(cls, settings: Settings) -> GroundingRules:
        """The served rules: ``grounding_min_semantic`` or the chosen embedder's calibrated cosine."""
        semantic = settings.grounding_min_semantic
        return cls(
            min_lexical=settings.grounding_min_lexical,
            min_semantic=settings.embedder_defaults.grounding_min_semantic if semantic is None else semantic,
            unsupported=settings.answer_unsupported,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """A text reduced to what the checks compare: content stems, numbers, polarity."""

    text: str
    stems: frozenset[str]
    numbers: frozenset[str]
    negative: bool

    @classmethod
    def of(cls, text: str) -> Claim:
        core = strip_citations(text)
        # Links are checked against the fiches by the output guard; here they are not words of the claim.
        words = _LINK.sub(" ", core)
        numbers = frozenset(re.sub(r"[ \u00a0\u202f.]", "", n) for n in _NUMBER.findall(words))
        stems = frozenset(s for s in _analyze(words) if not s.isdigit())
        return cls(core, stems, numbers, bool(_NEGATION.search(core)))


@dataclass(frozen=True, slots=True)
class Support:
    lexical: float
    semantic: float
    numbers_match: bool
    polarity_match: bool
    supported: bool

    @property
    def score(self) -> float:
        return round((self.lexical + self.semantic) / 2, 4) if self.numbers_match and self.polarity_match else 0.0


def _lexical(claim: Claim, evidence: Sequence[Claim]) -> tuple[float, bool]:
    """The share of the claim's content words in ``evidence``, and whether all its numbers are there."""
    stems = frozenset().union(*(e.stems for e in evidence))
    numbers = frozenset().union(*(e.numbers for e in evidence))
    lexical = len(claim.stems & stems) / len(claim.stems) if claim.stems else 1.0
    return lexical, claim.numbers <= numbers


def measure_support(
    claim: Claim,
    claim_vector: NDArray[np.float32],
    evidence: Sequence[Claim],
    evidence_vectors: NDArray[np.float32],
    rules: GroundingRules,
) -> Support:
    """How far ``evidence`` (the sentences of one passage) supports ``claim``; vectors L2-normalised."""
    if not evidence or (not claim.stems and not claim.numbers):
        return Support(0.0, 0.0, False, False, False)
    lexical, numbers_match = _lexical(claim, evidence)
    cosines = evidence_vectors @ claim_vector
    closest = int(np.argmax(cosines))
    semantic = float(cosines[closest])
    polarity_match = claim.negative == evidence[closest].negative
    supported = numbers_match and polarity_match and lexical >= rules.min_lexical and semantic >= rules.min_semantic
    return Support(round(lexical, 4), round(semantic, 4), numbers_match, polarity_match, supported)


@dataclass(frozen=True, slots=True)
class GroundedSentence:
    text: str  # without citation markers
    status: Status
    citations: tuple[int, ...]  # after the check
    support: float  # best support score over the passages (0 when none)


@dataclass(slots=True)
class Grounded:
    text: str
    sentences: list[GroundedSentence] = field(default_factory=list)
    cited: tuple[int, ...] = ()
    kept: int = 0
    unverified: int = 0
    removed_unsupported: int = 0
    removed_echo: int = 0
    citations_removed: int = 0
    citations_added: int = 0

    @property
    def nothing_supported(self) -> bool:
        return self.kept == 0


def is_echo(claim: Claim, question: Claim, rules: GroundingRules) -> bool:
    """The sentence mostly repeats the question: at most one content word of its own, and at least
    ``echo_overlap`` of its content words taken from the question."""
    new = claim.stems - question.stems
    return bool(claim.stems) and len(new) <= 1 and 1 - len(new) / len(claim.stems) >= rules.echo_overlap


def normalized(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
    return out


def _before_punctuation(text: str, insert: str) -> str:
    """``insert`` before the sentence's final punctuation: "mairie [1].", "police [1] ;"."""
    core = text.rstrip(".!?…:; ")
    return f"{core}{insert}{text[len(core) :]}"


async def ground(
    answer: str, question: str, passages: Sequence[str], vectors: Vectors, rules: GroundingRules
) -> Grounded:
    """Check ``answer`` (citations already limited to 1..len(passages)) against ``passages``."""
    # Markers and punctuation alone ("[1].") are not sentences; "Oui." is, and nothing can support it.
    sentences = [s for s in split_sentences(answer) if re.search(r"\w", strip_citations(s.text))]
    if not sentences:
        return Grounded(text="")
    claims = [Claim.of(s.text) for s in sentences]
    evidence = [[Claim.of(s.text) for s in split_sentences(p)] for p in passages]
    flat = [" ".join(p.split()) for p in passages]
    # Embeddings are the costly part: a sentence copied from a passage is supported by it, and a passage
    # that fails the lexical rules cannot support the sentence, whatever the cosine.
    verbatim = [
        [bool(c.stems or c.numbers) and " ".join(c.text.split()) in passage for passage in flat] for c in claims
    ]
    lexical = [[_lexical(c, group) if group else (0.0, False) for group in evidence] for c in claims]
    # A copied sentence already has the best support there is; other passages matter only where it cites them
    # (to keep or remove that citation): the quoted answer, copied throughout, embeds only its own sentences.
    cited = [citation_numbers(s.text) for s in sentences]
    to_embed = [
        (i, n)
        for i, claim in enumerate(claims)
        for n, group in enumerate(evidence)
        if group
        and not verbatim[i][n]
        and (not any(verbatim[i]) or n + 1 in cited[i])
        and lexical[i][n][1]
        and lexical[i][n][0] >= rules.min_lexical
    ]
    texts = list(
        dict.fromkeys(
            [claims[i].text for i, _ in to_embed] + [e.text for _, n in dict.fromkeys(to_embed) for e in evidence[n]]
        )
    )
    position = {t: i for i, t in enumerate(texts)}
    embedded = normalized(await vectors(texts)) if texts else np.zeros((0, 1), dtype=np.float32)
    needed = set(to_embed)

    def support(i: int, n: int) -> Support:
        if verbatim[i][n]:
            return Support(1.0, 1.0, True, True, True)
        if (i, n) not in needed:
            share, numbers_match = lexical[i][n]
            return Support(round(share, 4), 0.0, numbers_match, True, False)
        vectors_n = embedded[[position[e.text] for e in evidence[n]]]
        return measure_support(claims[i], embedded[position[claims[i].text]], evidence[n], vectors_n, rules)

    asked = Claim.of(question)
    out = Grounded(text="")
    lines: dict[int, list[str]] = {}
    bullets: dict[int, str] = {}
    for i, (sentence, claim) in enumerate(zip(sentences, claims, strict=True)):
        supports = [support(i, n) for n in range(len(evidence))]
        best = max(supports, key=lambda s: (s.supported, s.score), default=None)
        score = best.score if best is not None else 0.0
        if is_echo(claim, asked, rules):
            out.removed_echo += 1
            out.citations_removed += len(cited[i])
            out.sentences.append(GroundedSentence(claim.text, "echo", (), score))
            continue
        kept = [n for n in cited[i] if supports[n - 1].supported]
        out.citations_removed += len(cited[i]) - len(kept)
        if not kept and best is not None and best.supported:
            kept = [supports.index(best) + 1]
            out.citations_added += 1
        if kept:
            status: Status = "supported"
            shown = _before_punctuation(claim.text, " " + "".join(f"[{n}]" for n in kept))
            out.kept += 1
        elif rules.unsupported == "mark":
            status, shown = "unverified", _before_punctuation(claim.text, _UNVERIFIED_MARK)
            out.unverified += 1
        else:
            out.removed_unsupported += 1
            out.sentences.append(GroundedSentence(claim.text, "unsupported", (), score))
            continue
        out.sentences.append(GroundedSentence(claim.text, status, tuple(kept), score))
        lines.setdefault(sentence.line, []).append(shown)
        bullets.setdefault(sentence.line, sentence.bullet)
    out.text = "\n".join(bullets[line] + " ".join(parts) for line, parts in lines.items())
    out.cited = tuple(dict.fromkeys(n for s in out.sentences for n in s.citations))
    if out.nothing_supported:
        out.text = f"{NOTHING_SUPPORTED}\n{out.text}" if out.text else NOTHING_SUPPORTED
    return out
