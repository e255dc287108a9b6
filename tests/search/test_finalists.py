"""Judging the finalists (``autobatch._search._finalists``): pure functions over readings."""

from __future__ import annotations

import pytest

from autobatch._search._finalists import (
    compare_with_default,
    pick_finalists,
    relative_scores,
    undecided,
)
from autobatch._search._study import TrialRecord


def test_relative_scores_cancel_the_drift_between_rounds() -> None:
    # The machine slows by half in round 1; "b" is 10% faster than "a" in every round.
    rounds = {0: {"a": 1000.0, "b": 1100.0, "c": 1050.0},
              1: {"a": 500.0, "b": 550.0, "c": 520.0},
              2: {"a": 990.0, "b": 1090.0}}
    scores = relative_scores(rounds)
    assert sorted(scores, key=scores.__getitem__, reverse=True) == ["b", "c", "a"]
    assert scores["b"] / scores["a"] == pytest.approx(1.1, rel=0.01)
    # A round with one reading compares nothing; a point seen only there scores 1.0.
    assert relative_scores({0: {"a": 10.0}}) == {"a": 1.0}


def test_finalists_span_at_least_two_batch_sizes() -> None:
    def record(number: int, batch: int) -> TrialRecord:
        return TrialRecord(number=number, state="COMPLETE", params={"batch_size": batch})

    ranked = [record(0, 32), record(1, 32), record(2, 32), record(3, 150), record(4, 64)]
    assert [r.number for r in pick_finalists(ranked)] == [0, 1, 3]
    # One batch size only: the best three of it.
    same = [record(i, 32) for i in range(5)]
    assert [r.number for r in pick_finalists(same)] == [0, 1, 2]
    assert [r.number for r in pick_finalists(ranked[:2])] == [0, 1]


def test_relative_scores_do_not_tie_when_each_was_the_middle_once() -> None:
    # The three finalists of a real plan (fit readings in three rounds): "a" and "b" were
    # each the middle reading of one round, which scored both exactly 1.0 against the
    # round's median.
    rounds = {0: {"a": 2030.8, "b": 2138.11, "c": 1815.13},
              1: {"a": 1831.03, "b": 1742.4, "c": 1720.07},
              2: {"a": 1416.12, "b": 1488.76, "c": 1685.18}}
    scores = relative_scores(rounds)
    assert len(set(scores.values())) == 3
    assert sorted(scores, key=scores.__getitem__, reverse=True) == ["a", "b", "c"]
    # A zero reading scores zero without zeroing the rest of its round.
    zero = relative_scores({0: {"a": 0.0, "b": 100.0, "c": 121.0}})
    assert zero["a"] == 0.0 and zero["c"] / zero["b"] == pytest.approx(1.21)


def test_a_candidate_replaces_the_default_only_beyond_the_noise() -> None:
    def rounds_of(pairs: list[tuple[float, float]]) -> dict[int, dict[str, float]]:
        return {i: {"c": c, "d": d} for i, (c, d) in enumerate(pairs)}

    # A drifting machine: the default reads 100 then 50, the candidate 1.3x it each time.
    clear = compare_with_default(rounds_of([(130, 100), (65, 50), (130, 100)]), "c", "d")
    assert clear["beats_default"] and clear["median_ratio"] == pytest.approx(1.3)
    assert clear["low"] == pytest.approx(1.3) and clear["noise"] == pytest.approx(0.0)
    # Faster on the median but lost one round: undecided, so more rounds are measured.
    mixed = compare_with_default(rounds_of([(130, 100), (95, 100), (120, 100)]), "c", "d")
    assert not mixed["beats_default"] and undecided(mixed)
    assert mixed["low"] == pytest.approx(0.95) and mixed["high"] == pytest.approx(1.3)
    # From six rounds on, one lost round is forgiven.
    six = compare_with_default(rounds_of([(130, 100)] * 5 + [(95, 100)]), "c", "d")
    assert six["beats_default"] and six["low"] == pytest.approx(1.3)
    # Two rounds are too few for a modest lead; a quick tune's few rounds replace the
    # default only at DECISIVE_RATIO (2x) or more in every one; a tie never beats it.
    assert not compare_with_default(rounds_of([(190, 100), (190, 100)]), "c", "d")[
        "beats_default"]
    assert compare_with_default(rounds_of([(200, 100), (390, 100)]), "c", "d")["beats_default"]
    assert not compare_with_default(rounds_of([(390, 100), (150, 100)]), "c", "d")[
        "beats_default"]
    tie = compare_with_default(rounds_of([(101, 100), (100, 100), (101, 100)]), "c", "d")
    assert not tie["beats_default"] and not undecided(tie)
    # Rounds without both readings are not paired.
    partial = compare_with_default({0: {"c": 120.0}, 1: {"c": 120.0, "d": 100.0}}, "c", "d")
    assert partial["rounds"] == 1 and partial["paired_ratios"] == [1.2]
