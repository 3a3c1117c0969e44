"""Publication tree -> ``Fiche`` record.

The body is flattened into ``Block``s that keep their heading path (chapters, sub-chapters) and the
situations/cases under which they apply, because answers in the fiches differ by the person's situation.
Lists become "- item" lines and tables "header : value ; ..." rows so that both read well to a person and
to the models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from corpus.records import (
    AUDIENCES,
    Audience,
    Block,
    Fiche,
    FicheLink,
    LegalReference,
    LinkType,
    Place,
    PracticalLink,
    RelatedQuestion,
)
from corpus.tree import Node, TreeError

__all__ = ["NON_ANSWER_TYPES", "parse_publication"]

# Publications that only route to other pages: kept (with their links) but never chunked or searched.
NON_ANSWER_TYPES = frozenset({"Dossier", "Theme", "Recherche guidée", "Sous-thème", "Comment faire si - Accueil"})

_LINK_TYPES: dict[str, LinkType] = {
    "téléservice": "teleservice",
    "téléservice personnalisé sur sp": "teleservice",
    "formulaire": "formulaire",
    "simulateur": "simulateur",
    "modèle de document": "modele_de_document",
    "outil de recherche": "outil_de_recherche",
}
_CALLOUTS = frozenset({"ASavoir", "Attention", "ANoter", "Rappel", "Exemple"})
_SKIPPED = frozenset(
    {"Titre", "TitreFlottant", "TitreAlternatif", "Condition", "Image", "Video", "ContenuIllustre", "Credits"}
)
_SP = "https://www.service-public.fr"
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


def parse_publication(root: Node, audience_hint: Audience | None = None) -> Fiche:
    """Parse one ``<Publication>``. Raises TreeError when the document is not a usable publication."""
    if root.tag != "Publication":
        raise TreeError(f"root element is <{root.tag}>, expected <Publication>")
    pub_id = root.attrs.get("ID", "").strip()
    if not pub_id:
        raise TreeError("publication without ID")
    title = root.child_text("dc:title")
    if not title:
        raise TreeError(f"{pub_id}: publication without dc:title")
    kind = root.attrs.get("type", "").strip()
    audience = _audience(root, audience_hint)
    blocks = _BodyWalker().run(root)
    answerable = kind not in NON_ANSWER_TYPES and not pub_id.startswith("N") and bool(blocks)
    theme_node = root.first("Theme")
    theme = theme_node.child_text("Titre") if theme_node is not None else ""
    return Fiche(
        id=pub_id,
        type=kind,
        audience=audience,
        audiences=[audience],
        title=title,
        description=root.child_text("dc:description"),
        url=root.attrs.get("spUrl", "").strip() or f"{_SP}/{audience}/vosdroits/{pub_id}",
        theme=theme or root.child_text("dc:subject"),
        breadcrumb=[n.text() for n in _elements_of(root, "FilDAriane", "Niveau") if n.attrs.get("ID") != pub_id],
        updated=_updated(root),
        answerable=answerable,
        blocks=blocks,
        related_questions=_related_questions(root, audience),
        links=_practical_links(root),
        places=_places(root),
        references=[
            LegalReference(title=r.child_text("Titre"), url=r.attrs.get("URL", ""))
            for r in root.elements("Reference")
            if r.child_text("Titre")
        ],
        see_also=_see_also(root, pub_id),
        abbreviations={
            a.child_text("Titre"): a.child_text("Texte")
            for a in root.elements("Abreviation")
            if a.child_text("Titre") and a.child_text("Texte")
        },
    )


def _elements_of(root: Node, parent: str, tag: str) -> Iterable[Node]:
    node = root.first(parent)
    return node.elements(tag) if node is not None else ()


def _audience(root: Node, hint: Audience | None) -> Audience:
    match = re.match(rf"{re.escape(_SP)}/([\w-]+)/", root.attrs.get("spUrl", ""))
    for candidate in (match.group(1) if match else None, hint, root.child_text("Audience").lower()):
        for audience in AUDIENCES:
            if candidate and candidate.startswith(audience):
                return audience
    return hint or "particuliers"


def _updated(root: Node) -> str:
    for value in (root.attrs.get("dateDerniereModificationImportante", ""), root.child_text("dc:date")):
        match = _DATE.search(value)
        if match:
            return match.group(1)
    return ""


def _related_questions(root: Node, audience: Audience) -> list[RelatedQuestion]:
    out: list[RelatedQuestion] = []
    seen: set[str] = set()
    for qr in root.elements("QuestionReponse"):
        qid = qr.attrs.get("ID", "")
        question = qr.child_text("Titre") or qr.text()
        if not qid or not question or qid in seen:
            continue
        seen.add(qid)
        qr_audience = qr.attrs.get("audience", "").lower() or audience
        out.append(RelatedQuestion(id=qid, question=question, url=f"{_SP}/{qr_audience}/vosdroits/{qid}"))
    return out


def _practical_links(root: Node) -> list[PracticalLink]:
    out: list[PracticalLink] = []
    seen: set[str] = set()
    for node in root.iter("ServiceEnLigne"):
        url = node.attrs.get("URL", "").strip()
        title = node.child_text("Titre")
        key = node.attrs.get("ID") or url
        if not url or not title or key in seen:
            continue
        seen.add(key)
        out.append(
            PracticalLink(
                id=node.attrs.get("ID", ""),
                type=_LINK_TYPES.get(node.attrs.get("type", "").strip().lower(), "autre"),
                title=title,
                url=url,
                institution=node.child_text("Source"),
                number=node.attrs.get("numerocerfa", "") or node.attrs.get("autrenumero", ""),
            )
        )
    return out


def _places(root: Node) -> list[Place]:
    out: list[Place] = []
    seen: set[str] = set()
    for tag, kind in (("OuSAdresser", "ou_s_adresser"), ("QuiPeutMAider", "qui_peut_m_aider")):
        for node in root.iter(tag):
            title = node.child_text("Titre")
            key = node.attrs.get("ID") or title
            if not title or key in seen:
                continue
            seen.add(key)
            web = node.first("RessourceWeb")
            out.append(
                Place(
                    id=node.attrs.get("ID", ""),
                    kind=kind,  # type: ignore[arg-type]
                    title=title,
                    url=web.attrs.get("URL", "") if web is not None else "",
                    institution=node.child_text("Source"),
                )
            )
    return out


def _see_also(root: Node, self_id: str) -> list[FicheLink]:
    out: dict[str, FicheLink] = {}

    def add(target: str, title: str) -> None:
        if target and target != self_id and target[0] in "FN" and target not in out and title:
            out[target] = FicheLink(id=target, title=title)

    for node in root.iter():
        if node.tag == "LienInterne":
            add(node.attrs.get("LienPublication", ""), node.text())
        elif node.tag in ("Fiche", "Dossier") and node.attrs.get("ID"):
            add(node.attrs["ID"], node.child_text("Titre") or node.text())
    return list(out.values())


class _BodyWalker:
    """Depth-first walk of Introduction / Texte / ListeSituations producing Blocks."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._lines: list[str] = []
        self._key: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    def run(self, root: Node) -> list[Block]:
        for child in root.elements():
            if child.tag in ("Introduction", "Texte", "ListeSituations"):
                self._walk(child, (), ())
        self._flush()
        return self.blocks

    def _emit(self, line: str, path: tuple[str, ...], cases: tuple[str, ...]) -> None:
        if not line:
            return
        if (path, cases) != self._key:
            self._flush()
            self._key = (path, cases)
        self._lines.append(line)

    def _flush(self) -> None:
        if self._lines:
            self.blocks.append(Block(path=self._key[0], cases=self._key[1], lines=tuple(self._lines)))
        self._lines = []

    def _walk(self, node: Node, path: tuple[str, ...], cases: tuple[str, ...]) -> None:
        for child in node.elements():
            tag = child.tag
            if tag in _SKIPPED:
                continue
            if tag in ("Situation", "Cas"):
                heading = child.child_text("Titre")
                self._walk(child, path + (heading,), cases + (heading,))
            elif tag in ("Chapitre", "SousChapitre"):
                heading = child.child_text("Titre")
                self._walk(child, path + (heading,) if heading else path, cases)
            elif tag == "Paragraphe":
                self._emit(child.text(), path, cases)
            elif tag == "Liste":
                for item in child.elements("Item"):
                    self._emit("- " + item.text(), path, cases)
            elif tag == "Tableau":
                for line in _table_lines(child):
                    self._emit(line, path, cases)
            elif tag in _CALLOUTS:
                label = child.child_text("Titre")
                body = " ".join(c.text() for c in child.elements() if c.tag != "Titre")
                self._emit(f"{label} : {body}" if label else body, path, cases)
            elif tag == "OuSAdresser":
                source = child.child_text("Source")
                where = child.child_text("Titre") + (f" ({source})" if source else "")
                self._emit(f"Où s'adresser : {where}", path, cases)
            elif tag == "ServiceEnLigne":
                kind = child.attrs.get("type", "Service en ligne")
                self._emit(f"{kind} : {child.child_text('Titre')}", path, cases)
            elif any(isinstance(c, Node) for c in child.children):
                self._walk(child, path, cases)
            else:
                self._emit(child.text(), path, cases)


def _table_lines(table: Node) -> list[str]:
    lines = [table.child_text("Titre")] if table.child_text("Titre") else []
    header: list[str] = []
    for row in table.elements("Rangée"):
        cells = [cell.text() for cell in row.elements("Cellule")]
        if row.attrs.get("type") == "header":
            header = cells
            continue
        if header and len(cells) == len(header):
            lines.append(" ; ".join(f"{h} : {c}" if h else c for h, c in zip(header, cells, strict=True) if c))
        else:
            lines.append(" ; ".join(c for c in cells if c))
    return [line for line in lines if line]
