"""Query expansion: acronyms and everyday words -> the vocabulary of the fiches.

Advisors type "la CAF a coupé mon RSA" or "mon patron veut me virer"; the fiches say "caisse d'allocations
familiales", "revenu de solidarité active", "employeur", "licenciement". Expansion adds the fiche
vocabulary to the query (it never removes what was typed). Acronyms come from a curated table and from the
corpus's own glossary (``Abreviation`` elements); a corpus acronym is only expanded when typed in capitals
because many are also ordinary words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from corpus.analysis import fold_accents

__all__ = ["QueryExpander"]

# Acronyms people type in any case. Matched on the lower-cased query as typed (not accent-folded, so that
# "âme" is not read as AME).
_ACRONYMS: dict[str, str] = {
    "caf": "caisse d'allocations familiales prestations familiales",
    "msa": "mutualité sociale agricole",
    "rsa": "revenu de solidarité active",
    "apl": "aide personnalisée au logement aide au logement",
    "als": "allocation de logement sociale aide au logement",
    "alf": "allocation de logement familiale aide au logement",
    "are": "allocation d'aide au retour à l'emploi allocation chômage",
    "ass": "allocation de solidarité spécifique chômeur en fin de droits",
    "aah": "allocation aux adultes handicapés",
    "ame": "aide médicale de l'État étranger en situation irrégulière",
    "css": "complémentaire santé solidaire",
    "cmu": "couverture maladie universelle complémentaire santé solidaire",
    "cmuc": "complémentaire santé solidaire",
    "acs": "aide au paiement d'une complémentaire santé",
    "mdph": "maison départementale des personnes handicapées",
    "rqth": "reconnaissance de la qualité de travailleur handicapé",
    "pch": "prestation de compensation du handicap",
    "apa": "allocation personnalisée d'autonomie",
    "aspa": "allocation de solidarité aux personnes âgées minimum vieillesse",
    "paje": "prestation d'accueil du jeune enfant",
    "cpam": "caisse primaire d'assurance maladie",
    "secu": "sécurité sociale assurance maladie",
    "urssaf": "cotisations sociales recouvrement",
    "cpf": "compte personnel de formation",
    "vae": "validation des acquis de l'expérience",
    "pacs": "pacte civil de solidarité",
    "pacse": "pacte civil de solidarité partenaire",
    "pacses": "pacte civil de solidarité partenaires",
    "smic": "salaire minimum",
    "cdd": "contrat à durée déterminée",
    "cdi": "contrat à durée indéterminée",
    "tva": "taxe sur la valeur ajoutée",
    "siret": "numéro siret immatriculation répertoire sirene",
    "siren": "numéro siren immatriculation répertoire sirene",
    "rcs": "registre du commerce et des sociétés immatriculation",
    "kbis": "extrait k-bis registre du commerce et des sociétés",
    "cfe": "cotisation foncière des entreprises",
    "dpae": "déclaration préalable à l'embauche",
    "sarl": "société à responsabilité limitée",
    "eurl": "entreprise unipersonnelle à responsabilité limitée",
    "sas": "société par actions simplifiée",
    "sasu": "société par actions simplifiée unipersonnelle",
    "eirl": "entrepreneur individuel à responsabilité limitée",
    "joafe": "journal officiel des associations",
    "cni": "carte nationale d'identité",
    "ants": "agence nationale des titres sécurisés",
    "rib": "relevé d'identité bancaire compte bancaire",
    "ivg": "interruption volontaire de grossesse",
    "pma": "assistance médicale à la procréation",
    "ehpad": "établissement d'hébergement pour personnes âgées dépendantes maison de retraite",
    "cesu": "chèque emploi service universel",
    "hlm": "logement social",
    "edf": "fourniture d'électricité",
    "ij": "indemnités journalières",
    "ijss": "indemnités journalières",
    "at": "accident du travail",
    "mp": "maladie professionnelle",
    "acre": "aide aux créateurs et repreneurs d'entreprise",
    "arce": "aide à la reprise ou à la création d'entreprise",
    "ape": "activité principale exercée code naf",
    "pv": "procès-verbal amende",
    "ado": "adolescent mineur",
}

# Everyday words -> fiche vocabulary. Keys are folded (no accents): matched on the accent-folded query.
_WORDS: dict[str, str] = {
    "patron": "employeur",
    "boss": "employeur",
    "chef": "employeur supérieur hiérarchique",
    "boulot": "emploi travail",
    "bosser": "travailler",
    "taf": "travail",
    "vire": "licenciement",
    "virer": "licenciement",
    "viree": "licenciement",
    "renvoye": "licenciement",
    "chomage": "allocation chômage demandeur d'emploi France Travail Pôle emploi",
    "chomeur": "demandeur d'emploi allocation chômage",
    "pole emploi": "demandeur d'emploi France Travail",
    "france travail": "demandeur d'emploi Pôle emploi",
    "paye": "salaire",
    "fiche de paie": "bulletin de paie salaire",
    "proprio": "propriétaire bailleur",
    "appart": "logement appartement",
    "coloc": "colocation",
    "caution": "dépôt de garantie",
    "gamin": "enfant",
    "gamins": "enfants",
    "gosse": "enfant",
    "gosses": "enfants",
    "bebe": "enfant naissance",
    "enceinte": "grossesse",
    "copain": "concubin",
    "copine": "concubin",
    "mari": "époux conjoint",
    "divorcer": "divorce",
    "separer": "séparation",
    "toubib": "médecin",
    "mutuelle": "complémentaire santé",
    "arret maladie": "arrêt de travail indemnités journalières",
    "bagnole": "véhicule voiture",
    "voiture": "véhicule",
    "carte grise": "certificat d'immatriculation",
    "papiers": "titre de séjour pièce d'identité",
    "heritage": "succession héritier",
    "herite": "succession héritier",
    "heriter": "succession héritier",
    "mort": "décès",
    "decede": "décès",
    "vole": "vol",
    "volee": "vol",
    "perdu": "perte",
    "perdue": "perte",
    "cambriole": "cambriolage vol",
    "impots": "impôt sur le revenu",
    "auto entrepreneur": "micro-entrepreneur micro-entreprise",
    "autoentrepreneur": "micro-entrepreneur micro-entreprise",
    "boite": "entreprise société",
    "asso": "association",
    "benevole": "bénévolat bénévole",
    "facture": "paiement",
    "surendette": "surendettement",
    "dettes": "surendettement",
    "amende": "contravention",
    "flash": "radar excès de vitesse avis de contravention",
}


def _pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(alternatives) + r")(?![\w-])")


class QueryExpander:
    def __init__(self, corpus_abbreviations: Mapping[str, str] | None = None) -> None:
        self._tables: list[tuple[re.Pattern[str], Mapping[str, str], Callable[[str], str]]] = [
            (_pattern(_ACRONYMS), _ACRONYMS, lambda q: q.lower()),
            (_pattern(_WORDS), _WORDS, lambda q: fold_accents(q).lower().replace("’", "'")),
        ]
        # Corpus acronyms: only all-capital keys of 2-8 letters, matched as typed (case-sensitive).
        corpus = {
            k: v
            for k, v in (corpus_abbreviations or {}).items()
            if 2 <= len(k) <= 8 and k.isupper() and k.lower() not in _ACRONYMS
        }
        if corpus:
            self._tables.append((_pattern(corpus), corpus, lambda q: q))

    def expansions(self, query: str) -> list[str]:
        found: list[str] = []
        for pattern, table, view in self._tables:
            found.extend(table[m.group(1)] for m in pattern.finditer(view(query)))
        return list(dict.fromkeys(found))

    def expand(self, query: str) -> str:
        extra = self.expansions(query)
        return f"{query} ({' ; '.join(extra)})" if extra else query
