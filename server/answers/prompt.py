"""The generator's prompt: French instructions, numbered source excerpts, the question — within a budget.

Tokens are counted by the caller's function (the generator's own tokenizer with its chat template), so
the budget holds whatever model is served. When the excerpts do not fit, the lowest-ranked ones go first,
then the last one kept is shortened at a word boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

__all__ = ["NO_ANSWER", "SYSTEM_PROMPT", "Prompt", "PromptSource", "QuestionTooLong", "build_prompt"]

SYSTEM_PROMPT = (
    "Tu es l'assistant des conseillers France Services. Tu réponds en français, en 3 à 5 phrases simples, "
    "uniquement avec les informations des extraits de fiches service-public.fr ci-dessous. Après chaque "
    "information, indique le numéro de l'extrait entre crochets, par exemple [1]. Si la réponse dépend de la "
    "situation de l'usager, dis quelle situation s'applique. N'invente ni adresse, ni numéro de téléphone, "
    "ni lien. Si les extraits ne répondent pas à la question, dis-le."
)

NO_ANSWER = (
    "Les fiches service-public.fr disponibles ne traitent pas cette question. "
    "Vérifiez la formulation ou orientez l'usager vers l'organisme compétent."
)

Messages = list[dict[str, str]]
CountTokens = Callable[[Messages], int]


@dataclass(frozen=True, slots=True)
class PromptSource:
    n: int
    fiche_id: str
    title: str
    url: str
    section: tuple[str, ...]
    cases: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: Messages
    sources: list[PromptSource]  # the sources that fit, numbered 1..n as in the prompt
    prompt_tokens: int
    truncated: bool


def _source_block(source: PromptSource) -> str:
    head = f"Extrait [{source.n}] : {source.title}"
    if source.section:
        head += " (" + " > ".join(source.section) + ")"
    lines = [head]
    if source.cases and source.cases != source.section[-len(source.cases) :]:
        lines.append("Situation : " + " > ".join(source.cases))
    lines.append(source.text)
    return "\n".join(lines)


def _messages(question: str, sources: Sequence[PromptSource]) -> Messages:
    # Measured with the 0.5B CPU model: with the excerpts in the user message it copies them out; with
    # the excerpts in the system message and the question alone as the user turn, it answers.
    excerpts = "\n\n".join(_source_block(s) for s in sources)
    system = f"{SYSTEM_PROMPT}\n\n{excerpts}" if sources else SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


class QuestionTooLong(ValueError):
    """The question alone, with the instructions, does not fit the prompt budget."""

    def __init__(self, question_chars: int, tokens: int, budget: int, room: int) -> None:
        # ``room``: the tokens left for the question once the instructions are counted.
        self.max_chars = max(0, question_chars * room // max(1, tokens - (budget - room)))
        super().__init__(
            f"the question alone needs {tokens} prompt tokens; the budget is {budget}, which leaves {room} "
            "tokens for the question"
        )


def build_prompt(question: str, sources: Sequence[PromptSource], *, count_tokens: CountTokens, budget: int) -> Prompt:
    """Raise QuestionTooLong when the question alone does not fit the budget."""
    kept = [replace(s, n=i) for i, s in enumerate(sources, start=1)]
    truncated = False
    while True:
        messages = _messages(question, kept)
        tokens = count_tokens(messages)
        if tokens <= budget:
            return Prompt(messages, kept, tokens, truncated)
        truncated = True
        if not kept:
            room = budget - count_tokens(_messages("", []))
            raise QuestionTooLong(len(question), tokens, budget, room)
        words = kept[-1].text.split()
        if len(kept) > 1 or len(words) <= 20:
            kept.pop()
        else:
            kept[-1] = replace(kept[-1], text=" ".join(words[: int(len(words) * 0.8)]) + " […]")
