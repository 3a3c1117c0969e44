"""The parsed fiche: what the index stores (the API returns its own schemas built from it: server/schemas.py).

msgspec Structs so that records are encoded to the index (msgpack) without
intermediate dicts.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "AUDIENCES",
    "Audience",
    "Block",
    "Chunk",
    "Fiche",
    "FicheLink",
    "LegalReference",
    "LinkType",
    "Place",
    "PracticalLink",
    "RelatedQuestion",
]

Audience = Literal["particuliers", "professionnels", "associations"]
AUDIENCES: tuple[Audience, ...] = ("particuliers", "professionnels", "associations")

LinkType = Literal["teleservice", "formulaire", "simulateur", "modele_de_document", "outil_de_recherche", "autre"]


class RelatedQuestion(msgspec.Struct, frozen=True, kw_only=True):
    """A "Fiche Question-réponse" the fiche points to (its title is a real question)."""

    id: str
    question: str
    url: str


class PracticalLink(msgspec.Struct, frozen=True, kw_only=True):
    """A ServiceEnLigne: téléservice, formulaire (Cerfa), simulateur, modèle de document, outil."""

    id: str
    type: LinkType
    title: str
    url: str
    institution: str = ""
    number: str = ""


class Place(msgspec.Struct, frozen=True, kw_only=True):
    """Where to go or who can help (OuSAdresser / QuiPeutMAider)."""

    id: str
    kind: Literal["ou_s_adresser", "qui_peut_m_aider"]
    title: str
    url: str = ""
    institution: str = ""


class LegalReference(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    url: str = ""


class FicheLink(msgspec.Struct, frozen=True, kw_only=True):
    """A link to another publication (LienInterne, VoirAussi, pages of a dossier)."""

    id: str
    title: str


class Block(msgspec.Struct, frozen=True, kw_only=True):
    """A run of body text under one heading path.

    ``path`` holds the headings from the top of the fiche down to this block; ``cases`` the subset of them
    that are situations or cases (the conditions under which the text applies). A chunk never mixes blocks
    with different ``cases``.
    """

    path: tuple[str, ...]
    cases: tuple[str, ...]
    lines: tuple[str, ...]


class Fiche(msgspec.Struct, kw_only=True):
    id: str
    type: str
    audience: Audience
    audiences: list[Audience]
    title: str
    description: str
    url: str
    theme: str
    breadcrumb: list[str]
    updated: str
    answerable: bool
    blocks: list[Block]
    related_questions: list[RelatedQuestion]
    links: list[PracticalLink]
    places: list[Place]
    references: list[LegalReference]
    see_also: list[FicheLink]
    abbreviations: dict[str, str] = msgspec.field(default_factory=dict)


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A retrievable passage of one fiche; ``id`` is stable while the fiche's text does not change."""

    id: str
    fiche_id: str
    section: tuple[str, ...]
    cases: tuple[str, ...]
    text: str
