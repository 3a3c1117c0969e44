"""How the blind answer-quality sets (tests/data/answers_{dev,test}.json) were made.

Same protocol as the retrieval sets (``benchmarks.eval_sets``), with key points:

1. ``sample``: fiches drawn at random with their own seed, stratified by audience and theme, none of them a
   source of the retrieval sets; each written out as the text its writer sees (``<work>/fiches/<id>.txt``).
2. Writers (helper sessions that see one batch of those files and nothing of the project) write, per fiche,
   one situational question and the 2-5 key points an advisor expects in the answer, into
   ``<work>/questions/*.json``.
3. ``assemble``: checks that every drawn fiche has its question, that no question reuses a key word of its
   fiche's title and that every question has 2-5 key points, then splits once, by fiche, half of each
   audience in each set.

``sample-tune`` / ``assemble-tune`` make a third set the same way, ``tests/data/answers_tune.json`` (80 fiches,
their own seed, none named by any committed set), not split: a second set to tune on, so that a choice made
on the 40 dev questions alone is not mistaken for a gain.

Run as ``python -m benchmarks.answer_sets {sample,assemble,sample-tune,assemble-tune} --work DIR``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

from benchmarks.eval_sets import sample as draw
from benchmarks.eval_sets import test_half, title_keywords, used_fiches, writer_view
from build_engines.fetch import CORPUS, fetch
from config.settings import Settings
from corpus.analysis import FrenchAnalyzer
from corpus.ingest import load_fiches
from corpus.records import Fiche

__all__ = ["DATA", "load_answer_set"]

SAMPLE_SEED = 20261201
SPLIT_SEED = 12
TUNE_SEED = 20261205
PER_AUDIENCE = {"particuliers": 52, "professionnels": 18, "associations": 10}
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def load_answer_set(name: str) -> list[dict[str, object]]:
    """``dev``, ``test`` or ``tune``: questions with ``expected`` fiches and ``key_points``."""
    rows: list[dict[str, object]] = json.loads((DATA / f"answers_{name}.json").read_text())
    return rows


def _retrieval_sources() -> frozenset[str]:
    ids: set[str] = set()
    for name in ("everyday_dev", "everyday_test", "cross_audience"):
        ids.update(str(row["source"]) for row in json.loads((DATA / f"{name}.json").read_text()))
    return frozenset(ids)


def assemble(fiches: dict[str, Fiche], work: Path, *, split: bool = True) -> dict[str, list[dict[str, object]]]:
    """The checked questions, split into ``dev`` and ``test`` (``split``) or as one ``tune`` set."""
    drawn = json.loads((work / "sample.json").read_text())
    written: dict[str, dict[str, object]] = {}
    for path in sorted((work / "questions").glob("*.json")):
        written.update({row["fiche_id"]: row for row in json.loads(path.read_text())})
    missing = [row["fiche_id"] for row in drawn if row["fiche_id"] not in written]
    if missing:
        raise SystemExit(f"fiches without a question: {missing}")
    analyze = FrenchAnalyzer()
    problems = []
    for fiche_id, row in written.items():
        shared = title_keywords(fiches[fiche_id].title) & set(analyze(str(row["question"])))
        if shared:
            problems.append(f"{fiche_id}: the question shares {sorted(shared)} with the title")
        points = row["key_points"]
        if not isinstance(points, list) or not 2 <= len(points) <= 5:
            problems.append(f"{fiche_id}: {len(points) if isinstance(points, list) else 0} key points")
    if problems:
        raise SystemExit("\n".join(problems))
    test_ids = test_half(drawn, SPLIT_SEED) if split else frozenset()
    sets: dict[str, list[dict[str, object]]] = {"dev": [], "test": []} if split else {"tune": []}
    for n, row in enumerate(drawn, start=1):
        q = written[row["fiche_id"]]
        name = "tune" if not split else "test" if row["fiche_id"] in test_ids else "dev"
        sets[name].append(
            {
                "id": f"A{n:03d}" if split else f"T{n:03d}",
                "audience": row["audience"],
                "question": q["question"],
                "expected": [row["fiche_id"]],
                "key_points": q["key_points"],
                "aspect": q.get("aspect", "main"),
                "voice": q.get("voice", ""),
                "theme": row["theme"],
            }
        )
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_sets", description=__doc__)
    parser.add_argument("command", choices=["sample", "assemble", "sample-tune", "assemble-tune"])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    parsed, _ = load_fiches([fetch(CORPUS, settings.cache_dir / "downloads")])
    fiches = {f.id: f for f in parsed}
    if args.command in ("sample", "sample-tune"):
        if args.command == "sample":
            chosen = draw(fiches, SAMPLE_SEED, PER_AUDIENCE, _retrieval_sources())
        else:
            chosen = draw(fiches, TUNE_SEED, PER_AUDIENCE, used_fiches(leave_out="answers_tune.json"))
        (args.work / "fiches").mkdir(parents=True, exist_ok=True)
        for fiche in chosen:
            (args.work / "fiches" / f"{fiche.id}.txt").write_text(writer_view(fiche))
        sampled = [{"fiche_id": f.id, "audience": f.audience, "theme": f.theme} for f in chosen]
        (args.work / "sample.json").write_text(json.dumps(sampled, ensure_ascii=False, indent=1))
        print(f"{len(chosen)} fiches -> {args.work}/fiches")
        return 0
    for name, rows in assemble(fiches, args.work, split=args.command == "assemble").items():
        (DATA / f"answers_{name}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        points = sum(len(cast("list[str]", r["key_points"])) for r in rows)
        print(f"{name}: {len(rows)} questions, {points} key points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
