"""The blind answer-quality sets: disjoint by fiche, balanced, and fresh for the tune set."""

from __future__ import annotations

from collections import Counter

from benchmarks.answer_sets import load_answer_set
from benchmarks.eval_sets import used_fiches


def test_answer_sets_are_disjoint_by_fiche_and_balanced() -> None:
    sets = {name: load_answer_set(name) for name in ("dev", "test", "tune")}
    fiches = {name: {f for row in rows for f in row["expected"]} for name, rows in sets.items()}  # type: ignore[attr-defined]
    assert not fiches["dev"] & fiches["test"]
    assert not fiches["tune"] & (fiches["dev"] | fiches["test"])
    expected_sizes = {"dev": (26, 9, 5), "test": (26, 9, 5), "tune": (52, 18, 10)}
    for name, rows in sets.items():
        audiences = Counter(row["audience"] for row in rows)
        assert (audiences["particuliers"], audiences["professionnels"], audiences["associations"]) == (
            expected_sizes[name]
        )
        assert all(2 <= len(row["key_points"]) <= 5 for row in rows)  # type: ignore[arg-type]
        assert len({row["id"] for row in rows}) == len(rows)


def test_tune_set_names_no_fiche_of_another_set() -> None:
    tune = {f for row in load_answer_set("tune") for f in row["expected"]}  # type: ignore[attr-defined]
    assert not tune & used_fiches(leave_out="answers_tune.json")
    assert tune <= used_fiches()  # the select set's freshness rule sees the tune set too
