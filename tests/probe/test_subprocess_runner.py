"""``SubprocessProbeRunner`` with real TensorFlow on CPU: one shared worker-backed runner,
tiny model, real JPEGs. Tests run in file order and share the runner (each worker start costs
a TF import); those that start a worker process are ``slow`` (integration tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from pathlib import Path

import pytest
from _probe_helpers import MISBEHAVE_ENV, PROBE_FOLDER_CLASSES, folder_source, small, tiny_model
from conftest import make_image_folder

from autobatch._errors import ModelError
from autobatch._probe import MAX_STEPS_FACTOR, ProbeResult, SubprocessProbeRunner
from autobatch._settings import PipelineSettings

MiB = 1 << 20


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("probe") / "data", PROBE_FOLDER_CLASSES)


@pytest.fixture(scope="module")
def runner(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    model = tiny_model()
    with SubprocessProbeRunner(model, folder_source(data_root),
                               custom_objects_module="_probe_helpers",
                               host_memory_budget_bytes=16 << 30,
                               work_dir=tmp_path_factory.mktemp("work")) as r:
        yield r


@pytest.mark.slow
def test_ok_probe_measures_speed_and_kernel_peak(runner: SubprocessProbeRunner) -> None:
    result = runner.run(small(4))
    assert result.outcome == "ok", result.error
    assert result.worker_started and runner.worker_starts == 1
    assert len(result.step_times_s) == 3
    assert result.examples_per_s and result.examples_per_s > 0
    assert result.step_time_s == pytest.approx(4 / result.examples_per_s)
    assert 0.0 <= (result.input_wait_fraction or -1) <= 1.0
    # The kernel's high-water mark of a process that imported TF: hundreds of MiB.
    assert result.peak_host_memory_bytes and result.peak_host_memory_bytes > 100 * MiB
    # The worker's resident memory before the probe: the model and TF, less than the peak.
    assert 100 * MiB < result.baseline_host_memory_bytes < result.peak_host_memory_bytes
    assert result.peak_device_memory_bytes is None and result.device == "cpu"
    assert result.memory_budget_bytes == 16 << 30
    # The result survives the JSON round trip the CLI and the plan use.
    assert ProbeResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.slow
def test_worker_is_reused_and_traces_once(runner: SubprocessProbeRunner) -> None:
    before = runner.worker_starts
    pid = runner.worker_pid
    results = [runner.run(small(b, settings=PipelineSettings(num_parallel_calls=1, prefetch=1)))
               for b in (8, 16, 40)]
    assert [r.outcome for r in results] == ["ok"] * 3
    assert runner.worker_starts == before == 1
    assert {r.worker_pid for r in results} == {pid}
    assert not any(r.worker_started for r in results)
    numbers = [r.worker_probe_number for r in results]
    assert numbers == sorted(numbers) and numbers[-1] == numbers[0] + 2
    # One trace of the train step served every batch size (dynamic batch dimension).
    assert {r.worker_trace_count for r in results} == {1}
    assert results[-1].batch_size == 40  # more than the 24 images: the probe repeats them


@pytest.mark.slow
def test_min_time_takes_more_steps_until_the_window_is_long_enough(
        runner: SubprocessProbeRunner) -> None:
    plain = runner.run(small(8, steps=3))
    longer = runner.run(small(8, steps=3, min_time_s=0.5))
    assert plain.ok and longer.ok
    assert len(plain.step_times_s) == 3
    # Past its 3 steps the probe stepped on until the timed steps added up to 0.5 s (or
    # reached the cap of MAX_STEPS_FACTOR x steps), and never stopped short of both.
    timed = sum(longer.step_times_s)
    assert len(longer.step_times_s) > 3
    assert timed >= 0.5 or len(longer.step_times_s) == MAX_STEPS_FACTOR * 3
    assert sum(longer.step_times_s[:-1]) < 0.5


@pytest.mark.slow
def test_fit_mode_trains_with_model_fit_and_times_whole_epochs(
        runner: SubprocessProbeRunner) -> None:
    one = runner.run(small(8, steps=2, mode="fit"))
    longer = runner.run(small(8, steps=2, mode="fit", min_time_s=0.5))
    assert one.ok and longer.ok, (one.error, longer.error)
    assert one.mode == longer.mode == "fit"
    # No min_time: one untimed epoch, then exactly one timed epoch of 2 steps.
    assert len(one.step_times_s) == 1
    assert one.examples_per_s == pytest.approx(8 / one.step_time_s)
    # Keras fetched the batches: the input wait was not seen, so it is not reported as 0.
    assert one.input_wait_fraction is None
    # With a window, epochs go on until their time adds up to it (or the cap), no longer.
    epochs_s = [per_step * 2 for per_step in longer.step_times_s]
    assert len(epochs_s) > 1
    assert sum(epochs_s) >= 0.45 or len(epochs_s) == MAX_STEPS_FACTOR
    assert sum(epochs_s[:-1]) < 0.5
    # The loop mode's traced step was not touched: fit traces its own train function.
    assert longer.worker_trace_count == one.worker_trace_count
    assert ProbeResult.from_dict(json.loads(json.dumps(longer.to_dict()))) == longer


@pytest.mark.slow
def test_over_budget_is_oom_and_the_next_probe_recovers(runner: SubprocessProbeRunner) -> None:
    ok = runner.run(small(8))
    assert ok.outcome == "ok"
    saved = runner.host_memory_budget_bytes
    runner.host_memory_budget_bytes = ok.peak_host_memory_bytes + 150 * MiB
    try:
        result = runner.run(small(8192, steps=2))
    finally:
        runner.host_memory_budget_bytes = saved
    assert result.outcome == "oom", (result.outcome, result.error)
    assert "budget" in (result.error or "")
    assert not runner.is_alive()
    starts = runner.worker_starts
    again = runner.run(small(8))
    assert again.outcome == "ok" and again.worker_started
    assert runner.worker_starts == starts + 1


@pytest.mark.slow
def test_sigkill_mid_probe_is_crash(runner: SubprocessProbeRunner) -> None:
    runner.run(small(2))  # make sure the worker is up and traced
    timer = threading.Timer(1.5, runner.kill_worker, args=(signal.SIGKILL,))
    timer.start()
    try:
        result = runner.run(small(2, steps=100_000, timeout_s=120.0))
    finally:
        timer.cancel()
    assert result.outcome == "crash"
    assert "SIGKILL" in (result.error or "")
    assert runner.run(small(2)).outcome == "ok"


@pytest.mark.slow
def test_python_exception_in_child_is_crash_with_its_lines(runner: SubprocessProbeRunner) -> None:
    runner.worker_env[MISBEHAVE_ENV] = "raise"
    runner.restart()
    try:
        result = runner.run(small(4))
    finally:
        del runner.worker_env[MISBEHAVE_ENV]
    assert result.outcome == "crash"
    assert "injected failure in Misbehave.call" in (result.error or "")
    assert not runner.is_alive()


@pytest.mark.slow
def test_hanging_child_times_out(runner: SubprocessProbeRunner) -> None:
    runner.worker_env[MISBEHAVE_ENV] = "sleep"
    runner.restart()
    try:
        runner.start()
        result = runner.run(small(4, timeout_s=8.0))
    finally:
        del runner.worker_env[MISBEHAVE_ENV]
    assert result.outcome == "timeout"
    assert "8 s" in (result.error or "")
    assert not runner.is_alive()
    assert runner.run(small(4)).outcome == "ok"


@pytest.mark.slow
def test_cached_probes_fill_their_cache_then_time_the_cached_passes(
    runner: SubprocessProbeRunner,
) -> None:
    from autobatch._settings import PipelineSettings

    traces = None
    for cache in ("memory", "disk"):
        settings = PipelineSettings(num_parallel_calls=1, prefetch=1, cache=cache)
        result = runner.run(small(8, settings=settings, own_peak=False))
        assert result.ok and (result.examples_per_s or 0) > 0
        assert len(result.step_times_s) == 3  # the timed steps only; the fill is untimed
        # The fill reads batches without training: no new trace of the train step.
        traces = traces if traces is not None else result.worker_trace_count
        assert result.worker_trace_count == traces
    # The disk cache was written, in a fresh folder for the probe's subset.
    assert list((runner.work_dir / "cache").glob("probe-cache-*/tfdata*"))


@pytest.mark.slow
def test_smaller_batch_gets_a_fresh_worker(runner: SubprocessProbeRunner) -> None:
    runner.run(small(16))
    assert runner.worker_largest_batch == 16
    starts = runner.worker_starts
    # A throughput-only probe (own_peak=False) reuses the worker whatever it ran.
    reused = runner.run(dataclasses.replace(small(4), own_peak=False))
    assert reused.outcome == "ok" and not reused.worker_started
    # By default a probe's memory reading is its own: a fresh worker for the smaller batch.
    result = runner.run(small(8))
    assert result.outcome == "ok" and result.worker_started
    assert runner.worker_starts == starts + 1
    assert runner.worker_largest_batch == 8


@pytest.mark.slow
def test_budget_below_idle_footprint_is_a_clear_oom(data_root: Path) -> None:
    with SubprocessProbeRunner("small_cnn", folder_source(data_root), image_size=32,
                               host_memory_budget_bytes=120 * MiB) as r:
        result = r.run(small(4))
    assert result.outcome == "oom"
    assert "idle footprint" in (result.error or "")


def test_unsaveable_model_is_a_model_error_and_leaves_no_work_dir(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    import keras

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes its folder
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0, name="scale_lambda")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError, match="scale_lambda.*Lambda"):
        SubprocessProbeRunner(model, folder_source(data_root))
    assert not list(tmp_path.glob("autobatch-probe-*"))
    # A runner that made its own work dir removes it on close.
    runner = SubprocessProbeRunner("small_cnn", folder_source(data_root), image_size=32,
                                   host_memory_budget_bytes=16 << 30)
    assert runner.work_dir.parent == tmp_path and runner.work_dir.is_dir()
    runner.close()
    assert not list(tmp_path.glob("autobatch-probe-*"))


def test_builtin_needs_an_image_size(data_root: Path) -> None:
    with pytest.raises(ModelError, match="image size"):
        SubprocessProbeRunner("small_cnn", folder_source(data_root))


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_probe_reports_device_peak_and_nvml(data_root: Path) -> None:
    from autobatch._env import environment

    if not environment().gpus:
        pytest.skip("no NVML GPU")
    with SubprocessProbeRunner("small_cnn", folder_source(data_root), image_size=32) as r:
        result = r.run(small(8))
    assert result.outcome == "ok", result.error
    assert result.device.startswith("GPU")
    assert result.peak_device_memory_bytes and result.peak_device_memory_bytes > 0
    assert result.memory_budget_bytes == r.device_memory_budget_bytes
    if result.nvml_device_memory_bytes is not None:
        # NVML charges the process at least what TF's allocator peaked at.
        assert result.nvml_device_memory_bytes >= result.peak_device_memory_bytes * 0.5


def test_worker_env_does_not_leak(runner: SubprocessProbeRunner) -> None:
    assert MISBEHAVE_ENV not in os.environ
    assert MISBEHAVE_ENV not in runner.worker_env
