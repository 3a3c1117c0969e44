"""The retrieval evaluation (``python -m benchmarks.retrieval_eval``): its scores, the lever table, and the
evaluation sets split by fiche and balanced."""

from __future__ import annotations

import json

import pytest

from benchmarks.retrieval_eval import first_rank, load_set, markdown_table, score
from tests.support.paths import DATA


def test_the_evaluation_scores_first_ranks_recall_and_mrr() -> None:
    assert first_rank(["F1", "F2", "F3"], frozenset({"F3", "F9"})) == 3
    assert first_rank(["F1"], frozenset({"F2"})) is None
    s = score([1, 3, 7, None])
    assert (s.n, s.recall5, s.recall10) == (4, 0.5, 0.75)
    assert s.mrr10 == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)


def test_the_lever_table_reads_the_reports() -> None:
    scores = {"n": 1, "recall@5": 0.5, "recall@10": 1.0, "mrr@10": 0.25}
    dev = {"scores": scores, "by_audience": {"particuliers": scores}}
    report = {"label": "x", "date": "2026-11-29", "cost_per_query": {"total_ms_p50": 47.6}, "sets": {"dev": dev}}
    row = markdown_table([report]).splitlines()[-1]
    assert row == "| x | 0.500 / 0.250 | – | – | – | – | – | – | – | 48 | 2026-11-29 |"
    report["sets"]["test"] = {**dev, "scores_first": {**scores, "recall@5": 0.25}}
    row = markdown_table([report]).splitlines()[-1]
    report["sets"]["select"] = {**dev, "scores": {**scores, "mrr@10": 0.125}}
    row = markdown_table([report]).splitlines()[-1]
    expected = (
        "| x | 0.500 / 0.250 | 0.500 / 0.250 | 0.500 | 0.250 / 0.250 | 0.500 / 0.125 | – | – | – | 48 | 2026-11-29 |"
    )
    assert row == expected


def test_evaluation_sets_are_split_by_fiche_and_balanced() -> None:
    dev, test = load_set("dev"), load_set("test")
    assert len(dev) == len(test) == 120
    rows = {name: json.loads((DATA / f"everyday_{name}.json").read_text()) for name in ("dev", "test")}
    assert not {r["source"] for r in rows["dev"]} & {r["source"] for r in rows["test"]}
    for name in ("dev", "test"):
        audiences = [r["audience"] for r in rows[name]]
        assert (
            audiences.count("particuliers"),
            audiences.count("professionnels"),
            audiences.count("associations"),
        ) == (
            78,
            30,
            12,
        )
        assert all(r["expected"][0] == r["source"] for r in rows[name])
        # The judgments extended over later rankers' pools keep the first ones, in order, at their head.
        assert all(r["expected"][: len(r["expected_first"])] == r["expected_first"] for r in rows[name])
        assert all(len(set(r["expected"])) == len(r["expected"]) for r in rows[name])


def test_the_select_set_is_fresh_and_balanced() -> None:
    from benchmarks.eval_sets import used_fiches

    rows = json.loads((DATA / "everyday_select.json").read_text())
    assert len(load_set("select")) == len(rows) == 120
    audiences = [r["audience"] for r in rows]
    assert [audiences.count(a) for a in ("particuliers", "professionnels", "associations")] == [78, 30, 12]
    assert all(r["expected"][0] == r["source"] for r in rows)
    # Its questions were written from fiches that no other committed set names.
    assert not {r["source"] for r in rows} & used_fiches()
