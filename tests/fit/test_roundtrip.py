"""The API round-trips (issue #16): a plan from ``tune(model, folder)`` trains with Keras'
own ``fit`` as the README shows, ``autobatch.fit`` right after finds that plan in the cache,
``autobatch fit --plan`` needs no other flag; bad input fails before any work starts.

Real TensorFlow on the CPU, real JPEGs at 32 px, the real probe worker; two short tunes
shared by the module (a live keras.Model and the same model as a .keras file).
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _fitmodels import counting_model
from conftest import make_image_folder

import autobatch
from autobatch._cli import main
from autobatch._errors import DataError, PlanError, UsageError
from autobatch._plan import Plan, keras_file_input_shape, tune_geometry

keras = pytest.importorskip("keras")

COUNTS = {"ants": 24, "bees": 20, "wasps": 17}
N = sum(COUNTS.values())  # 61: no batch size divides it
TUNE = dict(trials=2, time_budget=30, measure_baseline=False, try_xla=False, max_batch_size=32)
FIT_TUNE = {k: v for k, v in TUNE.items() if k != "time_budget"}


def _model() -> Any:
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Rescaling(1.0 / 255)(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("roundtrip")
    old_cache = os.environ.get("AUTOBATCH_CACHE_DIR")
    os.environ["AUTOBATCH_CACHE_DIR"] = str(root / "cache")
    try:
        folder = make_image_folder(root / "data", COUNTS, size=(40, 36))
        model = _model()
        keras_path = root / "model.keras"
        model.save(keras_path)
        started = time.perf_counter()
        plan = autobatch.tune(model, folder, verbose=0, **TUNE)  # no image_size given
        tune_s = time.perf_counter() - started
        file_plan_path = root / "file-plan.json"
        file_plan = autobatch.tune(str(keras_path), folder, output=file_plan_path, verbose=0,
                                   **TUNE)
        yield {"root": root, "folder": folder, "model": model, "plan": plan, "tune_s": tune_s,
               "keras_path": keras_path, "file_plan": file_plan,
               "file_plan_path": file_plan_path}
    finally:
        if old_cache is None:
            os.environ.pop("AUTOBATCH_CACHE_DIR", None)
        else:
            os.environ["AUTOBATCH_CACHE_DIR"] = old_cache


# ---------------------------------------------------------------- the round trips


def test_tune_records_the_models_image_size_and_keras_fit_trains_one_pass_per_epoch(
        tuned: Any) -> None:
    plan, folder = tuned["plan"], tuned["folder"]
    assert not plan.cache_hit
    assert plan.image_size == (32, 32) and plan.channels == 3  # read from the model's input
    assert Plan.from_dict(plan.to_dict()).image_size == (32, 32)  # and saved in the JSON
    kwargs = plan.fit_kwargs()
    assert kwargs["steps_per_epoch"] == math.ceil(N / plan.batch_size)
    assert "epochs" not in kwargs  # the caller's

    counter = counting_model((32, 32, 3), 3)  # counts inside its own train_step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = counter.fit(plan.dataset(folder, repeat=True), epochs=2, verbose=0,
                              **plan.fit_kwargs())
    assert int(counter.seen.numpy()) == 2 * N  # each epoch exactly one pass, last batch kept
    assert len(history.history["loss"]) == 2
    assert not [w for w in caught if "shuffle" in str(w.message)]  # fit_kwargs says shuffle


def test_plan_dataset_takes_an_image_size_override(tuned: Any) -> None:
    plan, folder = tuned["plan"], tuned["folder"]
    images, _ = next(iter(plan.dataset(folder, image_size=16, shuffle=False)))
    assert tuple(images.shape[1:]) == (16, 16, 3)
    images, _ = next(iter(plan.dataset(folder, shuffle=False)))
    assert tuple(images.shape[1:]) == (32, 32, 3)
    sizeless = Plan(batch_size=8, num_examples=N, ceiling_batch_size=8)
    with pytest.raises(PlanError, match=r"image_size=N"):
        sizeless.dataset(folder)
    assert next(iter(sizeless.dataset(folder, image_size=20)))[0].shape[1:] == (20, 20, 3)


def test_fit_right_after_tune_reuses_the_plan(tuned: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, folder = tuned["model"], tuned["folder"]
    capsys.readouterr()
    history = autobatch.fit(model, folder, epochs=1, verbose=2, time_budget=30,
                            tune_options=FIT_TUNE)
    assert history.plan.cache_hit
    assert history.tune_time_s < 2.0, history.tune_time_s
    with capsys.disabled():
        print(f"\nfit after tune: {history.tune_time_s:.3f} s getting the plan")
    assert tuned["tune_s"] > 2.0  # the first tune really tuned
    assert history.plan.batch_size == tuned["plan"].batch_size
    assert history.history["examples_seen"] == [N]
    assert "cache" in capsys.readouterr().err  # fit's tune draws the progress display


def test_fit_with_the_keras_file_reuses_the_plan_tuned_for_that_file(tuned: Any) -> None:
    started = time.perf_counter()
    history = autobatch.fit(str(tuned["keras_path"]), tuned["folder"], epochs=1, verbose=0,
                            time_budget=30, tune_options=FIT_TUNE)
    assert history.plan.cache_hit, "fit must tune the SPEC it was given, not the built model"
    assert history.tune_time_s < 2.0
    assert history.history["examples_seen"] == [N]
    assert time.perf_counter() - started < 60


def test_plan_of_a_keras_file_names_it_and_its_size(tuned: Any) -> None:
    plan = tuned["file_plan"]
    assert plan.image_size == (32, 32)
    assert plan.model["spec"] == str(tuned["keras_path"].resolve())  # absolute: any cwd
    assert keras_file_input_shape(tuned["keras_path"]) == (32, 32, 3)  # read without TF
    assert tune_geometry(str(tuned["keras_path"])) == ((32, 32), 3)
    assert tune_geometry(tuned["model"]) == ((32, 32), 3)
    assert tune_geometry("small_cnn") == (None, 3)  # a built-in has no size of its own


def test_cli_fit_with_only_a_plan(tuned: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", str(tuned["folder"]), "--plan", str(tuned["file_plan_path"])])
    out = capsys.readouterr().out
    assert code == 0
    assert f"epoch 1: trained on {N} of {N} usable images" in out


def test_cli_fit_with_a_plan_of_a_live_model_asks_for_model(
        tuned: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tuned["plan"].save(tuned["root"] / "live-plan.json")
    code = main(["fit", str(tuned["folder"]), "--plan", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "pass --model" in err and len(err.splitlines()) == 1


def test_time_budget_s_still_works_with_a_deprecation_warning(tuned: Any) -> None:
    options = {k: v for k, v in TUNE.items() if k != "time_budget"}
    with pytest.warns(DeprecationWarning, match="time_budget="):
        plan = autobatch.tune(tuned["model"], tuned["folder"], time_budget_s=30, verbose=0,
                              **options)
    assert plan.cache_hit  # the same budget under its old name: the same plan
    with pytest.raises(UsageError, match="time_budget= only"):
        autobatch.tune(tuned["model"], tuned["folder"], time_budget=30, time_budget_s=30)


# ---------------------------------------------------------------- bad input, before any work


def test_endless_generator_without_num_examples_fails_before_training() -> None:
    x = np.zeros((10, 16, 16, 3), np.float32)
    y = np.zeros(10, np.int64)

    def endless():
        while True:
            yield from zip(x, y, strict=True)

    model = counting_model((16, 16, 3), 3)
    plan = Plan(batch_size=4, num_examples=10, ceiling_batch_size=8)
    started = time.perf_counter()
    with pytest.raises(UsageError, match="num_examples=N") as info:
        autobatch.fit(model, endless, plan=plan, verbose=0)
    assert time.perf_counter() - started < 30
    assert "\n" not in str(info.value) and "endless" in str(info.value)
    assert int(model.seen.numpy()) == 0
    # With its length it trains: exactly that many examples per epoch.
    history = autobatch.fit(model, endless, plan=plan, epochs=2, num_examples=10, verbose=0)
    assert history.history["examples_seen"] == [10, 10]


def test_one_shot_generator_without_num_examples_is_refused_without_reading_it() -> None:
    x = np.zeros((10, 16, 16, 3), np.float32)
    y = np.arange(10) % 3
    stream = iter(zip(x, y, strict=True))
    model = counting_model((16, 16, 3), 3)
    plan = Plan(batch_size=4, num_examples=10, ceiling_batch_size=8)
    with pytest.raises(UsageError, match="num_examples=N"):
        autobatch.fit(model, stream, plan=plan, verbose=0)
    assert len(list(stream)) == 10  # not one example was taken from it
    assert int(model.seen.numpy()) == 0


def test_finite_generator_function_is_counted_once_before_training() -> None:
    x = np.zeros((13, 16, 16, 3), np.float32)
    y = np.arange(13) % 3
    calls = itertools.count()

    def examples():
        next(calls)
        yield from zip(x, y, strict=True)

    model = counting_model((16, 16, 3), 3)
    plan = Plan(batch_size=4, num_examples=13, ceiling_batch_size=8)
    history = autobatch.fit(model, examples, plan=plan, epochs=2, verbose=0)
    assert history.coverage.expected_examples == 13  # known before the first epoch
    assert history.history["examples_seen"] == [13, 13]
    assert history.steps_per_epoch == 4


@pytest.mark.parametrize(("counts", "message"), [
    ({"only": 5}, "one class only ('only')"),
    ({"only": 1}, "1 usable image"),
    ({"a": 3, "empty": 0}, "one class only ('a')"),
])
def test_a_folder_with_nothing_to_learn_is_an_error_before_tuning(
        tmp_path: Path, counts: dict[str, int], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_image_folder(tmp_path / "data", counts, size=(32, 32))
    for name in counts:
        (folder / name).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with pytest.raises(DataError, match=re.escape(message)):
        autobatch.tune("small_cnn", folder, image_size=32, verbose=0, use_cache=False)
    with pytest.raises(DataError, match=re.escape(message)):
        autobatch.fit(_model(), folder, verbose=0)
    code = main(["tune", str(folder), "--model", "small_cnn", "--image-size", "32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert time.perf_counter() - started < 30  # no probe ran


# ---------------------------------------------------------------- CLI checks and signatures


@pytest.mark.parametrize("command", ["tune", "fit", "probe"])
def test_cli_checks_the_folder_before_the_image_size(
        tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--batch-size", "4"] if command == "probe" else []
    code = main([command, str(tmp_path / "missing"), "--model", "small_cnn", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "does not exist" in err and len(err.splitlines()) == 1
    folder = make_image_folder(tmp_path / "data", {"a": 2, "b": 2}, size=(16, 16))
    code = main([command, str(folder), "--model", "small_cnn", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "needs an image size; pass --image-size N" in err


@pytest.mark.parametrize("command", ["tune", "fit", "probe"])
def test_cli_synopsis_says_when_image_size_is_required(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "--image-size N is required when SPEC is a built-in model" in " ".join(out.split())


@pytest.mark.parametrize("function", [autobatch.probe, autobatch.tune, autobatch.fit,
                                      autobatch.dataset, Plan.dataset])
def test_public_functions_show_their_parameters(function: Any) -> None:
    params = inspect.signature(function).parameters
    doc = inspect.getdoc(function) or ""
    named = [p for p in params.values()
             if p.kind is p.KEYWORD_ONLY and p.name not in ("time_budget_s",)]
    assert named, f"{function.__qualname__} has no keyword parameters"
    for param in named:
        assert f"{param.name}:" in doc, f"{function.__qualname__}: {param.name} undocumented"
    if function is not autobatch.fit:  # fit passes the rest on to model.fit
        assert not [p for p in params.values() if p.kind is p.VAR_KEYWORD]
    if function in (autobatch.tune, autobatch.fit):
        assert {"time_budget", "memory_budget", "verbose"} <= set(params)
        assert params["verbose"].default == "auto"
