"""The benchmark's measurement helpers (benchmarks/_stats.py): its headline ratios rest on them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import _stats  # noqa: E402


def test_interleaved_rotates_and_keeps_the_group_back_to_back() -> None:
    calls: list[str] = []

    def run(name: str):  # type: ignore[no-untyped-def]
        def sample() -> float:
            calls.append(name)
            return float(len(calls))
        return sample

    names = ["keras", "plan", "a", "roof", "b"]
    samples = _stats.interleaved({n: run(n) for n in names}, 4, together=("keras", "plan", "roof"))
    assert {n: len(v) for n, v in samples.items()} == dict.fromkeys(names, 4)
    rounds = [calls[i: i + 5] for i in range(0, 20, 5)]
    assert all(sorted(r) == sorted(names) for r in rounds)  # everyone once per round
    for index, order in enumerate(rounds):
        group = [n for n in order if n in ("keras", "plan", "roof")]
        start = order.index(group[0])
        assert order[start: start + 3] == group  # back to back
        assert group == (["keras", "plan", "roof"] if index % 2 == 0
                         else ["roof", "plan", "keras"])  # direction alternates
    # The round's first unit rotates, so no one always starts (a slow phase hits all alike).
    assert [r[0] for r in rounds] == ["keras", "a", "b", "roof"]
    # Each sample is the value its own call returned, in round order.
    for name in names:
        assert samples[name] == [i + 1.0 for i, c in enumerate(calls) if c == name]


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    # The machine halves its speed in rounds 3-4: each round's ratio stays 2, the ratio of
    # the medians does not.
    plan = [200.0, 200.0, 100.0, 100.0, 100.0]
    base = [100.0, 100.0, 50.0, 50.0, 50.0]
    assert _stats.paired_ratio(plan, base) == pytest.approx(2.0)
    assert _stats.paired_ratio([3.0, 1.0, 5.0], [1.0, 0.0, 1.0]) == pytest.approx(4.0)  # 0 skipped
    with pytest.raises(ValueError):
        _stats.paired_ratio([1.0, 2.0], [1.0])
    assert _stats.spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert _stats.spread([5.0]) == 0.0


def test_every_internal_the_benchmarks_use_resolves() -> None:
    # The benchmarks take private names from one table; a restructuring that moves one
    # fails here rather than in a benchmark run days later.
    import autobatch._for_benchmarks as internals

    for name in internals.__all__:
        assert getattr(internals, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_name"):
        internals.no_such_name  # noqa: B018
