"""The search space and how a point is scored (``autobatch._search._space``): pure."""

from __future__ import annotations

import pytest

from autobatch._search._space import (
    batch_candidates,
    build_search_space,
    decoded_dataset_bytes,
    epoch_efficiency,
    memory_cache_fits,
    seed_points,
    should_prune,
    should_repeat,
)
from autobatch._settings import AUTOTUNE


def test_batch_candidates_are_powers_of_two_and_the_ceiling() -> None:
    assert batch_candidates(100) == (8, 16, 32, 64, 100)
    assert batch_candidates(64) == (8, 16, 32, 64)
    assert batch_candidates(5) == (1, 2, 4, 5)


def test_memory_cache_only_when_the_decoded_data_fits() -> None:
    size = decoded_dataset_bytes(1000, (96, 96), 3)
    assert size == 1000 * 96 * 96 * 3 * 4
    assert memory_cache_fits(size, 4 << 30, 1 << 30)
    assert not memory_cache_fits(size, 1 << 30, 1 << 30)
    assert not memory_cache_fits(size, None, 0)
    space = build_search_space(ceiling=100, cpus=2, memory_cache_ok=False)
    assert "memory" not in space.cache and "disk" in space.cache


def test_search_space_is_concrete() -> None:
    space = build_search_space(ceiling=300, cpus=8, memory_cache_ok=True, xla_ok=True)
    for name, values in space.choices().items():
        assert AUTOTUNE not in [v for v in values if not isinstance(v, str)], name
    assert space.num_parallel_calls == (1, 2, 4, 8)
    assert space.jit_compile == (False, True)
    assert space.size == len(list(space.grid()))


def test_epoch_efficiency_counts_the_partial_last_step() -> None:
    # 600 examples: batch 150 is 4 full steps; batch 128 is 5 steps for 600 (640 of room).
    assert epoch_efficiency(600, 150) == 1.0
    assert epoch_efficiency(600, 128) == pytest.approx(600 / 640)
    assert epoch_efficiency(600, 1000) == pytest.approx(0.6)  # one partial step
    assert epoch_efficiency(50_000, 128) > 0.999  # large data: negligible
    assert epoch_efficiency(None, 128) == epoch_efficiency(0, 128) == 1.0


def test_prune_and_repeat_rules() -> None:
    assert should_prune(40.0, 100.0)
    assert not should_prune(70.0, 100.0)
    assert not should_prune(1.0, None)
    assert should_repeat(90.0, 100.0) and should_repeat(1.0, None)
    assert not should_repeat(70.0, 100.0)


def test_seed_points_sweep_the_largest_batches_at_good_defaults() -> None:
    space = build_search_space(ceiling=600, cpus=2, memory_cache_ok=True)
    points = seed_points(space, limit=4)
    # Keras' default batch first (cheap, and a concrete rival to the untuned default).
    assert [p["batch_size"] for p in points] == [32, 600, 512, 256]
    for point in points:
        assert point["num_parallel_calls"] == 2 and point["cache"] == "memory"
        assert point["deterministic"] is False
        assert all(point[name] in values for name, values in space.choices().items())
