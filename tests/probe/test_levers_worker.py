"""The probe worker under memory levers, with real TensorFlow on CPU: it rebuilds the model
under a request's ``mixed_precision`` policy or ``remat`` scope and reports what the model
computed in (one shared worker; ``small_cnn`` at 32 px on real JPEGs)."""

from __future__ import annotations

import pytest
from _probe_helpers import PROBE_FOLDER_CLASSES, folder_source, small
from conftest import make_image_folder

from autobatch._probe import SubprocessProbeRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory):
    root = make_image_folder(tmp_path_factory.mktemp("levers") / "data", PROBE_FOLDER_CLASSES)
    with SubprocessProbeRunner("small_cnn", folder_source(root), image_size=32,
                               host_memory_budget_bytes=16 << 30,
                               work_dir=tmp_path_factory.mktemp("work")) as r:
        yield r


def test_a_probe_under_mixed_bfloat16_computes_in_bfloat16(
        runner: SubprocessProbeRunner) -> None:
    plain = runner.run(small(8))
    assert plain.ok, plain.error
    # A lever-free probe's record keeps its keys (plans written before levers match).
    assert "compute_dtype" not in plain.to_dict() and plain.mixed_precision is None
    mixed = runner.run(small(8, mixed_precision="mixed_bfloat16"))
    assert mixed.ok, mixed.error
    assert mixed.mixed_precision == "mixed_bfloat16"
    assert mixed.compute_dtype == "bfloat16"  # read from the model's layers in the worker
    assert mixed.worker_pid == plain.worker_pid  # rebuilt in the same worker
    assert mixed.examples_per_s and mixed.examples_per_s > 0


def test_remat_keeps_float32_and_switching_back_reuses_the_model(
        runner: SubprocessProbeRunner) -> None:
    remat = runner.run(small(8, remat="larger_than"))
    assert remat.ok, remat.error
    assert remat.remat == "larger_than" and remat.compute_dtype == "float32"
    again = runner.run(small(8, mixed_precision="mixed_bfloat16", mode="fit"))
    assert again.ok and again.compute_dtype == "bfloat16", again.error


def test_a_memory_probe_with_a_lever_runs_in_a_fresh_worker(
        runner: SubprocessProbeRunner) -> None:
    runner.restart()
    result = runner.run(small(8, mixed_precision="mixed_bfloat16", mode="fit", own_peak=True))
    assert result.ok, result.error
    assert result.worker_started and result.worker_probe_number == 1
    assert result.compute_dtype == "bfloat16"
    # The worker loaded the model afresh for it and kept only the rebuilt one: a later
    # lever-free probe loads it again and still trains.
    plain = runner.run(small(8))
    assert plain.ok and not plain.worker_started, plain.error


def test_an_unknown_lever_is_a_crash_with_the_reason(runner: SubprocessProbeRunner) -> None:
    result = runner.run(small(8, mixed_precision="float8"))
    assert result.outcome == "crash"
    assert "mixed_precision must be one of" in (result.error or "")
