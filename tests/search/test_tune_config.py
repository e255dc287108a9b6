"""Tune's options, checked before any probe: ``TuneConfig`` for the API (messages name the
parameter), one-line errors naming the flag for the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_image_folder

from autobatch._cli import main
from autobatch._search._tune import resolve_budgets, tune


def test_pixels_option_is_checked_before_any_probe() -> None:
    import numpy as np

    from autobatch._errors import UsageError

    floats = (np.zeros((8, 16, 16, 3), np.float32), np.zeros(8, np.int32))
    with pytest.raises(UsageError, match="needs 8-bit images"):
        tune("small_cnn", floats, image_size=16, pixels="uint8", trials=1, use_cache=False)
    # An API caller reads the parameter's name (the CLI shows --pixels instead).
    with pytest.raises(UsageError, match="^pixels must be one of"):
        tune("small_cnn", floats, image_size=16, pixels="half", trials=1, use_cache=False)
    with pytest.raises(UsageError, match="^pixels uint8 needs 8-bit images") as caught:
        tune("small_cnn", floats, image_size=16, pixels="uint8", trials=1, use_cache=False)
    assert caught.value.message_for("--pixels").startswith("--pixels uint8 needs 8-bit")


def test_budget_larger_than_the_machine_is_a_usage_error() -> None:
    from autobatch._env import environment
    from autobatch._errors import UsageError

    env = environment()
    with pytest.raises(UsageError, match="larger than this machine"):
        resolve_budgets("64TiB", env)
    host, device, what = resolve_budgets("0.5", env)
    assert (host or device) and what in ("host", "device")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trials", "-3"], "--trials must be a positive"),
        (["--time-budget", "0"], "--time-budget must be a positive"),
        (["--memory-budget", "64TiB"], "larger than this machine"),
        (["--memory-budget", "lots"], "invalid memory size"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          extra: list[str], message: str) -> None:
    data = make_image_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(16, 16))
    code = main(["tune", str(data), "--model", "small_cnn", "--image-size", "32", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("autobatch tune: error:")


def test_unknown_model_is_a_one_line_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = make_image_folder(tmp_path / "d", {"a": 2, "b": 2}, size=(16, 16))
    code = main(["tune", str(data), "--model", "resnet9000", "--image-size", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "unknown model 'resnet9000'" in err and "small_cnn" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("options", "parameter", "message"),
    [
        ({"trials": -3}, "trials", "trials must be a positive whole number, got -3"),
        ({"trials": 201}, "trials", "trials must be at most 200, got 201"),
        ({"time_budget_s": 0}, "time_budget", "time_budget must be a positive number"),
        ({"seed": -1}, "seed", "seed must be >= 0, got -1"),
        ({"pixels": "half"}, "pixels", "pixels must be one of auto, float32, uint8"),
    ],
)
def test_tune_config_names_the_parameter(options: dict[str, object], parameter: str,
                                         message: str) -> None:
    from autobatch._errors import UsageError
    from autobatch._search import TuneConfig

    arguments: dict[str, object] = {"time_budget_s": None, "trials": None, **options}
    with pytest.raises(UsageError) as caught:
        TuneConfig.create(**arguments)  # type: ignore[arg-type]
    assert caught.value.parameter == parameter
    assert str(caught.value).startswith(message)
    assert "--" not in str(caught.value)


def test_tune_config_applies_the_default_time_budget_once() -> None:
    import dataclasses

    from autobatch._search import TuneConfig
    from autobatch._search._config import DEFAULT_TIME_BUDGET_S, MAX_TRIALS

    default = TuneConfig.create(time_budget_s=None, trials=None)
    assert default.time_budget_s == DEFAULT_TIME_BUDGET_S and default.target_trials == MAX_TRIALS
    assert default.deadline(10.0) == 10.0 + DEFAULT_TIME_BUDGET_S
    counted = TuneConfig.create(time_budget_s=None, trials=4)
    assert counted.time_budget_s is None and counted.target_trials == 4
    assert counted.deadline(10.0) == float("inf")
    with pytest.raises(dataclasses.FrozenInstanceError):
        counted.trials = 5  # type: ignore[misc]

