"""How the blind retrieval evaluation sets (tests/data/everyday_{dev,test}.json) were made, step by step.

The protocol (tests/data/README.md) keeps the questions out of reach of whoever tunes retrieval:

1. ``sample``: fiches drawn at random with a fixed seed, stratified by audience and theme; each one is written
   out as the text a question writer sees (``<work>/fiches/<id>.txt``) — the fiche alone, nothing else.
2. Writers (helper sessions that see one batch of those files and nothing of the project) write one
   situational question per fiche into ``<work>/questions/*.json``.
3. ``check``: every sampled fiche has its question, and no question shares a key word with its fiche's title
   (the offending ones are printed). ``pool``: for each question, the fiches that several different rankers
   put in their top 10, shuffled, written as judging packets (question + candidate fiches' text); judges
   (other helpers) mark the candidates that also answer the question into ``<work>/judgments/*.json``.
4. ``assemble``: adds the fiches the judges marked (answerable ones of the pool) to ``expected``, and splits
   once, by fiche, into ``dev`` and ``test``.
5. ``repool`` (when the rankers have changed): the pools of step 3 came from the rankers of their time, so a
   fiche that only a later ranker finds counts as a miss even when it answers. For every question of both
   splits, the union of the current rankers' top 10 (the served pipeline within and across audiences, its
   dense model alone, BM25 alone) and the fiches already accepted, shuffled, goes to new judges with
   written instructions (``JUDGE_INSTRUCTIONS``: the first round's rule — the fiche answers the question, on
   content only, whatever its audience — spelled out); the fiches already accepted are controls (how often
   the new judges agree with the first). ``merge`` adds what they accept to ``expected`` and keeps the first
   judgments in ``expected_first``; the evaluation prints both.

6. ``sample-select``, ``pool-select``, ``assemble-select`` (2026-12-03): a third set, ``select``, for choices
   that dev and test disagree on (the query tower: dev lower, test higher). 120 fresh fiches (seed 20261203,
   none that any committed set uses), written by four new writers under the same rules, pooled with the
   served pipeline and with the query tower (``ALBERT_QUERY_TOWER=1``), judged by four new judges; not split.
   The choice between the two is made on it; test stays the report.

Run as ``python -m benchmarks.eval_sets COMMAND --work DIR`` (``check`` works on both kinds of work folder).
The pools of the committed sets came from the e5 pipeline of the time (audience filter, fiche heads only), extended on
2026-12-03 by ``repool`` with the EmbeddingGemma pipeline's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from build_engines.fetch import CORPUS, fetch
from config.settings import Settings
from corpus.analysis import FrenchAnalyzer
from corpus.index import SearchIndex, load_index
from corpus.ingest import load_fiches
from corpus.records import AUDIENCES, Fiche

__all__ = ["SAMPLE_SEED", "test_half", "title_keywords", "writer_view"]

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SAMPLE_SEED = 20261129
SELECT_SEED = 20261203
SELECT_PER_AUDIENCE = {"particuliers": 78, "professionnels": 30, "associations": 12}
SPLIT_SEED = 11
# Fiches drawn per audience (the corpus holds 2,912 / 595 / 93 answerable fiches of each; associations and
# professionnels are over-drawn so that each is measured on enough questions).
PER_AUDIENCE = {"particuliers": 156, "professionnels": 60, "associations": 24}
WRITER_WORDS = 1800
# Words a question may share with the fiche's title: they say nothing of the subject.
_GENERIC = frozenset(
    FrenchAnalyzer()(
        "comment quel quelle quels quelles faut faire peut peuvent doit doivent est sont qui quoi que pourquoi "
        "quand où combien cas si avoir être obtenir demander demande effectuer droit droits situation"
    )
)


def title_keywords(title: str) -> set[str]:
    """Stems of the title's words that carry its subject (what a blind question must not reuse)."""
    return set(FrenchAnalyzer()(title)) - _GENERIC


def writer_view(fiche: Fiche, max_words: int = WRITER_WORDS) -> str:
    """The fiche as a question writer reads it: title, audience, description, body under its headings."""
    lines = [f"Titre : {fiche.title}", f"Public : {fiche.audience}", f"Description : {fiche.description}", ""]
    words = 0
    shown: tuple[str, ...] = ()
    for block in fiche.blocks:
        if block.path != shown:
            lines.append("## " + " > ".join(block.path) if block.path else "##")
            shown = block.path
        for line in block.lines:
            lines.append(line)
            words += len(line.split())
        if words > max_words:
            lines.append("[…]")
            break
    return "\n".join(lines) + "\n"


def judge_view(fiche: Fiche, max_words: int = 40) -> str:
    """A candidate fiche as a judge reads it in a packet: title, description, its headings, the start of the
    body (the whole fiche is in ``<work>/candidates/<id>.txt``)."""
    headings = list(dict.fromkeys(b.path[-1] for b in fiche.blocks if b.path))[:15]
    body: list[str] = []
    for block in fiche.blocks:
        for line in block.lines:
            body.extend(line.split())
        if len(body) > max_words:
            break
    return (
        f"[{fiche.id}] {fiche.title} ({fiche.audience})\n{fiche.description}\n"
        f"Rubriques : {' | '.join(headings)}\nDébut : {' '.join(body[:max_words])}\n"
    )


def sample(
    fiches: dict[str, Fiche],
    seed: int = SAMPLE_SEED,
    per_audience: dict[str, int] = PER_AUDIENCE,
    exclude: frozenset[str] = frozenset(),
) -> list[Fiche]:
    """Answerable fiches (not in ``exclude``) drawn per audience, proportionally to its themes (largest
    remainder, every theme with at least five fiches gets one), at random within a theme."""
    rng = random.Random(seed)
    chosen: list[Fiche] = []
    for audience in AUDIENCES:
        by_theme: dict[str, list[Fiche]] = defaultdict(list)
        for fiche in sorted(fiches.values(), key=lambda f: f.id):
            if fiche.answerable and fiche.audience == audience and fiche.id not in exclude:
                by_theme[fiche.theme or "(sans thème)"].append(fiche)
        total = sum(map(len, by_theme.values()))
        want = per_audience[audience]
        quota = {t: max(1 if len(fs) >= 5 else 0, want * len(fs) // total) for t, fs in by_theme.items()}
        remainders = sorted(
            by_theme, key=lambda t: -(want * len(by_theme[t]) / total - want * len(by_theme[t]) // total)
        )
        for theme in remainders:
            if sum(quota.values()) >= want:
                break
            quota[theme] += 1
        for theme in sorted(by_theme):
            chosen.extend(rng.sample(by_theme[theme], min(quota[theme], len(by_theme[theme]))))
    rng.shuffle(chosen)
    return chosen


def used_fiches(leave_out: str = "everyday_select.json") -> frozenset[str]:
    """Every fiche a committed evaluation set other than ``leave_out`` names (as its source or an acceptable
    answer): what the draw of that set leaves out (by default the select set's)."""
    used: set[str] = set()
    for path in sorted(p for p in DATA.glob("*.json") if p.name != leave_out):
        rows = json.loads(path.read_text())
        for row in rows if isinstance(rows, list) else []:
            for key in ("source", "fiche_id", "expected"):
                value = row.get(key) if isinstance(row, dict) else None
                used.update([value] if isinstance(value, str) else value if isinstance(value, list) else [])
    return frozenset(used)


def _sample_command(fiches: dict[str, Fiche], work: Path, chosen: list[Fiche] | None = None) -> None:
    chosen = sample(fiches) if chosen is None else chosen
    (work / "fiches").mkdir(parents=True, exist_ok=True)
    for fiche in chosen:
        (work / "fiches" / f"{fiche.id}.txt").write_text(writer_view(fiche))
    rows = [{"fiche_id": f.id, "audience": f.audience, "theme": f.theme, "type": f.type} for f in chosen]
    (work / "sample.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    print(f"{len(chosen)} fiches -> {work}/fiches")


def _questions(work: Path) -> list[dict[str, str]]:
    """The writers' questions in the order of the draw, each with its fiche's audience and theme."""
    written = {}
    for path in sorted((work / "questions").glob("*.json")):
        written.update({row["fiche_id"]: row for row in json.loads(path.read_text())})
    drawn = json.loads((work / "sample.json").read_text())
    return [{**written[r["fiche_id"]], **r} for r in drawn if r["fiche_id"] in written]


def title_violations(index: SearchIndex, questions: list[dict[str, str]]) -> list[tuple[str, list[str]]]:
    analyzer = FrenchAnalyzer()
    out = []
    for q in questions:
        shared = title_keywords(index.fiches[q["fiche_id"]].title) & set(analyzer(q["question"]))
        if shared:
            out.append((q["fiche_id"], sorted(shared)))
    return out


POOL_DEPTH = 10

JUDGE_INSTRUCTIONS = """\
You judge search results for a help desk for French public services (France Services). Each packet holds
questions, each followed by candidate fiches of service-public.fr (id, title, audience, description,
headings and the start of the body); the whole text of every candidate is in candidates/<id>.txt.

For each question, list every candidate that answers it: a person (or the advisor helping them) who reads
that fiche finds the answer to the question, or to its main part, for the situation described. Judge on
content only, whatever the fiche's audience (particuliers, professionnels, associations). A fiche on the
same broad topic that does not answer this situation does not count. Read the whole fiche
(candidates/<id>.txt) whenever the packet's summary is not enough to decide. The candidates are in no
particular order; there may be none, one or several that answer.

Write your verdicts as one JSON object: {"Q001": ["F1234", "N567"], "Q002": [], ...} with every question of
the packet as a key, into the file you are told.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Asked:
    """A question to pool: ``key`` names its pool; ``known`` are fiches that go into it whatever the rankers
    say (the source fiche, the fiches already accepted)."""

    key: str
    question: str
    audience: str
    known: frozenset[str]


def pools(index: SearchIndex, asked: list[Asked], *, across: bool, seed: int) -> dict[str, list[str]]:
    """Per question: the union of the top ``POOL_DEPTH`` fiches of four rankers that see it differently (BM25
    over units, the dense model over fiche heads, the served pipeline within the audience and across all
    audiences — ``across`` — or with the audience as a preference) and its ``known`` fiches, shuffled so that
    a judge cannot tell them apart."""
    from benchmarks.retrieval_eval import QueryEncoder
    from server.search.retrieval.search import HybridSearcher, SearchParams

    settings = Settings.from_env()
    encode = QueryEncoder(settings)
    params = SearchParams.from_settings(settings)
    searcher = HybridSearcher(index, params)
    within = HybridSearcher(index, dataclasses.replace(params, audience_filter="strict"))
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for q in asked:
        vector = encode(searcher.dense_text(q.question))
        terms = searcher.lexical_terms(q.question)
        lexical = np.asarray(index.bm25.get_scores(terms), dtype=np.float32) if terms else np.zeros(len(index.units))
        fused_audience = None if across else q.audience
        rankings = [
            _fiches_of(index, index.unit_fiche[np.argsort(-lexical)]),
            _fiches_of(index, index.dense_fiche[np.argsort(-(index.vectors @ vector))]),
            [h.fiche.id for h in within.search(q.question, vector, audience=q.audience, k=POOL_DEPTH)],
            [h.fiche.id for h in searcher.search(q.question, vector, audience=fused_audience, k=POOL_DEPTH)],
        ]
        pool = set(q.known)
        for ranking in rankings:
            pool.update(ranking[:POOL_DEPTH])
        candidates = sorted(pool)
        rng.shuffle(candidates)
        out[q.key] = candidates
    return out


def _fiches_of(index: SearchIndex, fiches: NDArray[np.int32]) -> list[str]:
    """The first ``POOL_DEPTH`` distinct fiches of a ranking of rows (each row given as its fiche's position)."""
    ranked: list[str] = []
    for position in fiches[: 50 * POOL_DEPTH]:
        fiche_id = index.fiche_ids[int(position)]
        if fiche_id not in ranked:
            ranked.append(fiche_id)
            if len(ranked) == POOL_DEPTH:
                break
    return ranked


def _write_packets(index: SearchIndex, work: Path, asked: list[Asked], pooled: dict[str, list[str]]) -> None:
    """Judging packets of 30 questions (``<work>/judge``), every candidate's text (``<work>/candidates``), the
    judges' instructions, and the keys from a question's number to its pool (``judge_keys.json``, which the
    judges do not see)."""
    (work / "judge").mkdir(parents=True, exist_ok=True)
    (work / "candidates").mkdir(exist_ok=True)
    (work / "INSTRUCTIONS.txt").write_text(JUDGE_INSTRUCTIONS)
    for fiche_id in sorted({c for cs in pooled.values() for c in cs}):
        (work / "candidates" / f"{fiche_id}.txt").write_text(writer_view(index.fiches[fiche_id]))
    per_packet = 30
    for n, start in enumerate(range(0, len(asked), per_packet), start=1):
        lines = []
        for i, q in enumerate(asked[start : start + per_packet], start=start + 1):
            lines.append(f"=== Q{i:03d} ({q.audience}) : {q.question}\n")
            lines.extend(judge_view(index.fiches[fiche_id]) for fiche_id in pooled[q.key])
        (work / "judge" / f"packet_{n:02d}.txt").write_text("\n".join(lines))
    keys = {f"Q{i:03d}": q.key for i, q in enumerate(asked, start=1)}
    (work / "judge_keys.json").write_text(json.dumps({"keys": keys, "pools": pooled}, indent=1))
    sizes = [len(p) for p in pooled.values()]
    print(f"{len(asked)} questions, {sum(sizes)} candidates ({min(sizes)}-{max(sizes)} per question)")


def _pool_command(index: SearchIndex, work: Path) -> None:
    """Step 3: the pools of the questions written from the sample (keyed by their source fiche)."""
    asked = [Asked(q["fiche_id"], q["question"], q["audience"], frozenset({q["fiche_id"]})) for q in _questions(work)]
    _write_packets(index, work, asked, pools(index, asked, across=True, seed=SAMPLE_SEED))


def _pool_select_command(index: SearchIndex, work: Path) -> None:
    """Step 6: the select set's pools, the union of the served pipeline's rankers and the query tower's."""
    import os

    asked = [Asked(q["fiche_id"], q["question"], q["audience"], frozenset({q["fiche_id"]})) for q in _questions(work)]
    before = os.environ.get("ALBERT_QUERY_TOWER")
    os.environ["ALBERT_QUERY_TOWER"] = "0"
    try:
        base = pools(index, asked, across=False, seed=1)
        os.environ["ALBERT_QUERY_TOWER"] = "1"
        tower = pools(index, asked, across=False, seed=2)
    finally:
        if before is None:
            del os.environ["ALBERT_QUERY_TOWER"]
        else:
            os.environ["ALBERT_QUERY_TOWER"] = before
    rng = random.Random(SELECT_SEED)
    merged = {}
    for key in base:
        candidates = sorted(set(base[key]) | set(tower[key]))
        rng.shuffle(candidates)
        merged[key] = candidates
    random.Random(5).shuffle(asked)
    _write_packets(index, work, asked, merged)


def assemble_select(fiches: dict[str, Fiche], work: Path) -> list[dict[str, object]]:
    """Questions + judgments -> the select set (not split): ``expected`` as in ``assemble``."""
    return _judged_rows(fiches, work, "S")


def _judged_rows(fiches: dict[str, Fiche], work: Path, prefix: str) -> list[dict[str, object]]:
    """One row per written question, in the order of the draw: ``expected`` is its source fiche, then the
    other candidates of its pool the judge said answer it (answerable fiches only)."""
    keys = json.loads((work / "judge_keys.json").read_text())
    label = {fiche_id: key for key, fiche_id in keys["keys"].items()}
    judged: dict[str, list[str]] = {}
    for path in sorted((work / "judgments").glob("*.json")):
        judged.update(json.loads(path.read_text()))
    rows: list[dict[str, object]] = []
    for n, q in enumerate(_questions(work), start=1):
        said = judged[label[q["fiche_id"]]]
        pool = set(keys["pools"][q["fiche_id"]])
        others = [f for f in said if f in pool and f != q["fiche_id"] and fiches[f].answerable]
        rows.append(
            {
                "id": f"{prefix}{n:03d}",
                "audience": q["audience"],
                "question": q["question"],
                "expected": [q["fiche_id"], *dict.fromkeys(others)],
                "source": q["fiche_id"],
                "judge_kept_source": q["fiche_id"] in said,
                "theme": q["theme"],
                "voice": q["voice"],
                "aspect": q["aspect"],
            }
        )
    return rows


def _split_rows() -> dict[str, list[dict[str, Any]]]:
    return {name: json.loads((DATA / f"everyday_{name}.json").read_text()) for name in ("dev", "test")}


def _repool_command(index: SearchIndex, work: Path) -> None:
    """Step 5: the current rankers' pools of every question of both splits (keyed by question id), mixed so
    that a packet holds questions of both and a judge cannot tell which split a question belongs to."""
    rows = [r for split in _split_rows().values() for r in split]
    random.Random(SPLIT_SEED).shuffle(rows)
    asked = [Asked(r["id"], r["question"], r["audience"], frozenset(r["expected"])) for r in rows]
    _write_packets(index, work, asked, pools(index, asked, across=False, seed=SAMPLE_SEED + 1))


def merge(fiches: dict[str, Fiche], work: Path) -> dict[str, list[dict[str, Any]]]:
    """The new judgments added to both splits: ``expected`` gains the answerable fiches of the pool the new
    judge accepted; ``expected_first`` keeps the first judgments (kept as they were: a fiche the new judge
    did not accept again stays acceptable)."""
    keys = json.loads((work / "judge_keys.json").read_text())
    judged: dict[str, list[str]] = {}
    for path in sorted((work / "judgments").glob("*.json")):
        judged.update(json.loads(path.read_text()))
    said = {keys["keys"][key]: fiche_ids for key, fiche_ids in judged.items()}
    missing = set(keys["keys"].values()) - set(said)
    if missing:
        raise SystemExit(f"no judgment for {len(missing)} questions: {sorted(missing)[:10]}")
    out = {}
    for name, rows in _split_rows().items():
        for row in rows:
            first = list(row.get("expected_first", row["expected"]))
            pool = set(keys["pools"][row["id"]])
            added = [f for f in said[str(row["id"])] if f in pool and f not in first and fiches[f].answerable]
            row["expected_first"] = first
            row["expected"] = [*first, *dict.fromkeys(added)]
            row["rejudge_kept_first"] = sorted(set(first) & set(said[str(row["id"])]))
        out[name] = rows
    return out


def test_half(rows: list[dict[str, str]], seed: int) -> set[str]:
    """The split, drawn once: half of each audience's fiches (``rows``: fiche_id, audience) go to ``test``."""
    rng = random.Random(seed)
    test_ids: set[str] = set()
    for audience in AUDIENCES:
        ids = sorted(r["fiche_id"] for r in rows if r["audience"] == audience)
        test_ids.update(rng.sample(ids, len(ids) // 2))
    return test_ids


def assemble(fiches: dict[str, Fiche], work: Path) -> dict[str, list[dict[str, object]]]:
    """Questions + judgments -> the two sets (rows as ``_judged_rows``). The split is drawn once, by fiche,
    half of each audience in each set."""
    test_ids = test_half(_questions(work), SPLIT_SEED)
    sets: dict[str, list[dict[str, object]]] = {"dev": [], "test": []}
    for row in _judged_rows(fiches, work, "E"):
        sets["test" if row["source"] in test_ids else "dev"].append(row)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_sets", description=__doc__)
    commands = ["sample", "check", "pool", "assemble", "repool", "merge"]
    parser.add_argument("command", choices=[*commands, "sample-select", "pool-select", "assemble-select"])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command in ("sample", "assemble", "merge", "sample-select", "assemble-select"):
        # From the corpus itself, so that the sets do not depend on an index build.
        parsed, _ = load_fiches([fetch(CORPUS, settings.cache_dir / "downloads")])
        fiches = {f.id: f for f in parsed}
    if args.command == "sample":
        _sample_command(fiches, args.work)
        return 0
    if args.command == "sample-select":
        chosen = sample(fiches, SELECT_SEED, SELECT_PER_AUDIENCE, exclude=used_fiches())
        _sample_command(fiches, args.work, chosen)
        return 0
    if args.command == "assemble-select":
        rows = assemble_select(fiches, args.work)
        (DATA / "everyday_select.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        sizes = [len(r["expected"]) for r in rows]  # type: ignore[arg-type]
        kept = sum(bool(r["judge_kept_source"]) for r in rows)
        print(
            f"select: {len(rows)} questions, {sum(sizes) / len(rows):.2f} acceptable fiches per question, "
            f"the judge kept the source fiche for {kept}"
        )
        return 0
    if args.command in ("assemble", "merge"):
        made = assemble(fiches, args.work) if args.command == "assemble" else merge(fiches, args.work)
        for name, rows in made.items():
            (DATA / f"everyday_{name}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
            sizes = [len(r["expected"]) for r in rows]  # type: ignore[arg-type]
            kept = sum(bool(r["judge_kept_source"]) for r in rows)
            print(
                f"{name}: {len(rows)} questions, {sum(sizes) / len(rows):.2f} acceptable fiches per question, "
                f"the judge kept the source fiche for {kept}"
            )
            if args.command == "merge":
                first = sum(len(r["expected_first"]) for r in rows)  # type: ignore[arg-type,misc]
                again = sum(len(r["rejudge_kept_first"]) for r in rows)  # type: ignore[arg-type,misc]
                print(
                    f"  first judgments {first / len(rows):.2f} per question; "
                    f"the new judges accepted {again} of {first} again"
                )
        return 0
    index = load_index(settings.resolved_index_dir)
    if args.command == "pool":
        _pool_command(index, args.work)
    if args.command == "repool":
        _repool_command(index, args.work)
    if args.command == "pool-select":
        _pool_select_command(index, args.work)
    if args.command == "check":
        questions = _questions(args.work)
        sampled = json.loads((args.work / "sample.json").read_text())
        missing = {r["fiche_id"] for r in sampled} - {q["fiche_id"] for q in questions}
        print(f"{len(questions)} questions; fiches without a question: {sorted(missing)}")
        for fiche_id, shared in title_violations(index, questions):
            print(f"{fiche_id}: shares {shared} with its title")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
