"""``albert ask "question"``: the answer (quoted from the fiches or drafted), streamed, then its sources,
frequent questions and links.

albert ask "Ma carte d'identité a été volée, que faire ?" --audience particuliers
albert ask "…" --target http://127.0.0.1:8080          # HTTP instead of gRPC
albert search "carte grise déménagement" -k 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from albert_client.client import TLS, AnswerClient
from albert_client.errors import AlbertError
from albert_client.types import Answer, AnswerBundle, Delta

__all__ = ["main"]

_LINK_TYPES = {
    "teleservice": "Téléservice",
    "formulaire": "Formulaire",
    "simulateur": "Simulateur",
    "modele_de_document": "Modèle de document",
    "outil_de_recherche": "Outil de recherche",
}


def _print_answer(console: Console, answer: Answer) -> None:
    console.rule("Réponse vérifiée")
    console.print(answer.answer, highlight=False)
    if answer.sources:
        console.print("\n[bold]Sources[/]")
        for s in answer.sources:
            section = f" — {' › '.join(s.section)}" if s.section else ""
            console.print(f"  [{s.n}] {s.title}{section}\n      {s.url}", highlight=False)
    if answer.related_questions:
        console.print("\n[bold]Questions fréquentes[/]")
        for q in answer.related_questions:
            console.print(f"  • {q.question}\n    {q.url}", highlight=False)
    if answer.links:
        console.print("\n[bold]Démarches en ligne et formulaires[/]")
        for link in answer.links:
            kind = _LINK_TYPES.get(link.type, "Lien")
            console.print(f"  • {kind} : {link.title} ({link.institution})\n    {link.url}", highlight=False)
    t = answer.timings_ms
    console.print(
        f"\n[dim]{answer.model or 'pas de génération'} · {t.total / 1000:.1f} s · corpus {answer.corpus_version}[/]"
    )


def _ask(client: AnswerClient, args: argparse.Namespace, console: Console) -> None:
    options = {"audience": args.audience, "k": args.k, "max_tokens": args.max_tokens}
    if args.no_stream:
        _print_answer(console, client.answer(args.question, **options))
        return
    for event in client.stream_answer(args.question, **options):
        if isinstance(event, AnswerBundle):
            console.print(f"[dim]{len(event.fiches)} fiche(s) trouvée(s) — rédaction…[/]")
        elif isinstance(event, Delta):
            console.print(event.text, end="", highlight=False, soft_wrap=True)
        else:
            console.print()
            _print_answer(console, event)


def _search(client: AnswerClient, args: argparse.Namespace, console: Console) -> None:
    results = client.search(args.question, audience=args.audience, k=args.k)
    for hit in results.results:
        console.print(f"{hit.rank}. [bold]{hit.title}[/] ({hit.fiche_id})\n   {hit.url}", highlight=False)
        for excerpt in hit.excerpts[:1]:
            console.print(f"   [dim]{excerpt.text[:200]}[/]", highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="albert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["ask", "search"])
    parser.add_argument("question")
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port (gRPC) or http(s)://host:port")
    parser.add_argument("--audience", choices=["particuliers", "professionnels", "associations"])
    parser.add_argument("-k", type=int, default=None, help="fiches to retrieve")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    parser.add_argument("--ca", type=Path, help="CA bundle of the server (TLS)")
    parser.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--key", type=Path, help="client key (mutual TLS)")
    args = parser.parse_args(argv)
    console = Console()
    tls = TLS(ca=args.ca, cert=args.cert, key=args.key) if args.ca or args.cert else None
    try:
        with AnswerClient(args.target, timeout_s=args.timeout, tls=tls) as client:
            (_ask if args.command == "ask" else _search)(client, args, console)
    except AlbertError as exc:
        Console(stderr=True).print(f"[red]erreur ({exc.code}) :[/] {exc.message}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
