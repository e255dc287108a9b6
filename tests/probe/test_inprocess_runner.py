"""``InProcessProbeRunner``: the runner interface with the worker's code in this process
(real TensorFlow on CPU, a built-in model, real JPEGs; no worker process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _probe_helpers import PROBE_FOLDER_CLASSES, folder_source, small
from conftest import make_image_folder

from autobatch._probe import InProcessProbeRunner, ProbeRunner


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("probe_inproc") / "data",
                             PROBE_FOLDER_CLASSES)


def test_in_process_runner_same_interface(data_root: Path) -> None:
    runner = InProcessProbeRunner("small_cnn", folder_source(data_root), image_size=32,
                                  host_memory_budget_bytes=16 << 30)
    with runner:
        first, second = runner.run(small(4)), runner.run(small(8))
    assert (first.outcome, second.outcome) == ("ok", "ok")
    assert second.examples_per_s and second.peak_host_memory_bytes
    assert runner.probes_run == 2 and runner.memory_budget_bytes == 16 << 30


def test_in_process_runner_is_a_probe_runner_with_the_worker_geometry(data_root: Path) -> None:
    with InProcessProbeRunner("small_cnn", folder_source(data_root), image_size=32,
                              host_memory_budget_bytes=16 << 30) as runner:
        assert isinstance(runner, ProbeRunner)
        assert runner.worker_largest_batch == 0 and runner.worker_starts == 1
        assert runner.search_budget_bytes == runner.memory_budget_bytes == 16 << 30
        # The worker was built through its constructor with the runner's geometry.
        assert runner._worker.image_size == (32, 32) and runner._worker.channels == 3
        # A folder's JPEGs are 8-bit, and the built-in rescales inside the model.
        assert runner.accepts_uint8 is True


def test_a_probe_asked_for_the_noise_scale_measures_it_before_timing(data_root: Path) -> None:
    import dataclasses
    import json

    from autobatch._noise import NoiseScale

    with InProcessProbeRunner("small_cnn", folder_source(data_root), image_size=32,
                              host_memory_budget_bytes=16 << 30) as runner:
        result = runner.run(dataclasses.replace(small(16), noise_small_batch=4))
        plain = runner.run(small(16))
    assert result.ok and result.examples_per_s
    assert result.noise_scale is not None and plain.noise_scale is None
    json.dumps(result.noise_scale, allow_nan=False)  # strict JSON, as the plan is
    scale = NoiseScale.from_dict(result.noise_scale)
    assert (scale.small_batch_size, scale.large_batch_size) == (4, 16)
    assert scale.repeats >= 8 and scale.trace_covariance > 0
    # 24 near-random images at batches of 4 and 16: the noise dwarfs the gradient, which the
    # draws cannot resolve (the |G|^2 estimate near or below zero), and it says so.
    if scale.resolved:
        assert scale.b_simple > 16 and scale.low <= scale.b_simple <= scale.high
    else:
        assert scale.b_simple == float("inf") and result.noise_scale["b_simple"] is None


def test_a_noise_scale_small_batch_not_below_the_batch_is_one_line() -> None:
    import dataclasses

    from autobatch._errors import UsageError

    with pytest.raises(UsageError, match="noise_small_batch") as raised:
        dataclasses.replace(small(16), noise_small_batch=16)
    assert "\n" not in str(raised.value)
