"""``autobatch probe``: the CLI over one isolated probe (real worker processes, real JPEGs,
a built-in model); the usage errors are one line and start no worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _probe_helpers import PROBE_FOLDER_CLASSES
from conftest import make_image_folder

from autobatch._probe import MAX_STEPS_FACTOR
from autobatch._settings import PipelineSettings


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("probe_cli") / "data", PROBE_FOLDER_CLASSES)


@pytest.mark.slow
def test_cli_probe_json_ok(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    code = main(["probe", str(data_root), "--model", "small_cnn", "--batch-size", "4",
                 "--image-size", "32", "--steps", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["outcome"] == "ok"
    for key in ("examples_per_s", "peak_host_memory_bytes", "peak_device_memory_bytes",
                "memory_budget_bytes", "step_time_s", "input_wait_fraction"):
        assert key in out
    assert out["peak_device_memory_bytes"] is None and out["peak_host_memory_bytes"] > 0
    assert out["mode"] == "fit"  # the default: a training process's own peak


@pytest.mark.slow
def test_cli_probe_fit_mode_times_epochs(data_root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    code = main(["probe", str(data_root), "--model", "small_cnn", "--batch-size", "4",
                 "--image-size", "32", "--steps", "2", "--mode", "fit", "--min-time", "0.3",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["outcome"] == "ok" and out["mode"] == "fit"
    assert out["input_wait_fraction"] is None  # Keras fetched the batches
    # Timed 2-step epochs until they added up to 0.3 s (or the cap of 20 epochs).
    epochs_s = [per_step * 2 for per_step in out["step_times_s"]]
    assert sum(epochs_s) >= 0.29 or len(epochs_s) == MAX_STEPS_FACTOR


def test_cli_probe_usage_error_is_one_line(data_root: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    code = main(["probe", str(data_root), "--model", "small_cnn", "--batch-size", "4",
                 "--memory-budget", "lots"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("autobatch probe: error: invalid memory size 'lots'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_probe_runs_a_plans_pipeline_with_flags_on_top(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _plans import sample_plan

    from autobatch._cli import main

    plan_path = tmp_path / "plan.json"
    sample_plan(batch_size=6, num_examples=24, image_size=(32, 32), jit_compile=False,
                pipeline=PipelineSettings(num_parallel_calls=3, prefetch=0, cache="memory",
                                          pixels="uint8")).save(plan_path)
    code = main(["probe", str(data_root), "--model", "small_cnn", "--plan", str(plan_path),
                 "--prefetch", "3", "--deterministic", "--steps", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["outcome"] == "ok" and out["batch_size"] == 6
    expected = PipelineSettings(num_parallel_calls=3, prefetch=3, cache="memory",
                                deterministic=True, pixels="uint8")
    assert PipelineSettings.from_dict(out["settings"]) == expected

    code = main(["probe", str(data_root), "--model", "small_cnn", "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "give --batch-size B" in err and len(err.strip().splitlines()) == 1
