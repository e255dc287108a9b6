"""autobatch.fit: every usable example trained on exactly once per epoch, counted inside the
model's own training step; pre-flight checks; validation split; LR scaling; the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from _fitmodels import counting_model
from conftest import make_image_folder

import autobatch
from autobatch._errors import DataError, UsageError
from autobatch._plan import Plan

keras = pytest.importorskip("keras")

N = 1003
COUNTS = {"ants": 512, "bees": 330, "wasps": 161}  # 3 uneven classes, 1003 images


@pytest.fixture(scope="module")
def folder_1003(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("fit") / "data", COUNTS, size=(16, 16))


@pytest.fixture
def plan() -> Plan:
    """A hand-made plan (batch 64) so that these tests do not spend time tuning."""
    return Plan(batch_size=64, num_examples=N, ceiling_batch_size=128, image_size=(16, 16))


def _arrays(n: int = N, shape: tuple[int, ...] = (16, 16, 3)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.random((n, *shape), dtype=np.float32) * 255).astype(np.float32)
    return x, rng.integers(0, 3, n)


# ---------------------------------------------------------------- must show


def test_folder_of_1003_images_two_epochs_counts_2006(folder_1003: Path, plan: Plan) -> None:
    model = counting_model((16, 16, 3), 3)
    history = autobatch.fit(model, folder_1003, epochs=2, plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 2006  # counted by the model's own train_step
    assert history.history["examples_seen"] == [N, N]
    assert history.coverage.complete and history.coverage.expected_examples == N
    assert history.plan.batch_size == 64 and history.steps_per_epoch == 16  # ceil(1003/64)


def test_arrays_of_1003_examples_two_epochs_counts_2006(plan: Plan) -> None:
    model = counting_model((16, 16, 3), 3)
    history = autobatch.fit(model, _arrays(), epochs=2, plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 2006
    assert history.history["examples_seen"] == [N, N]


def test_uint8_plan_trains_on_every_image_and_falls_back_where_it_cannot_apply(
        folder_1003: Path, plan: Plan, caplog: pytest.LogCaptureFixture) -> None:
    import tensorflow as tf

    uint8_plan = Plan(batch_size=64, num_examples=N, ceiling_batch_size=128, image_size=(16, 16),
                      pipeline=plan.pipeline.replace(pixels="uint8", cache="memory"))
    model = counting_model((16, 16, 3), 3)
    with caplog.at_level(logging.WARNING, logger="autobatch"):
        history = autobatch.fit(model, folder_1003, epochs=2, plan=uint8_plan, verbose=0)
    assert history.plan.pipeline.pixels == "uint8"
    assert int(model.seen.numpy()) == 2006 and history.history["examples_seen"] == [N, N]
    assert np.isfinite(history.history["loss"]).all()
    assert not [r for r in caplog.records if "uint8" in r.getMessage()]

    # Float arrays cannot travel as uint8: the plan falls back to float32, with a warning.
    caplog.clear()
    model = counting_model((16, 16, 3), 3)
    with caplog.at_level(logging.WARNING, logger="autobatch"):
        history = autobatch.fit(model, _arrays(), epochs=1, plan=uint8_plan, verbose=0)
    assert history.plan.pipeline.pixels == "float32" and int(model.seen.numpy()) == N
    assert any("not 8-bit images" in r.getMessage() for r in caplog.records)

    # A model whose first operation does arithmetic on its raw input (uint8 would overflow).
    class Doubling(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.dense(self.pool(tf.cast(x * 2, "float32") / 510.0))

    doubling = Doubling()
    doubling.build((None, 16, 16, 3))
    doubling.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="autobatch"):
        history = autobatch.fit(doubling, folder_1003, epochs=1, plan=uint8_plan, verbose=0)
    assert history.plan.pipeline.pixels == "float32"
    assert history.history["examples_seen"] == [N]
    assert any("output changes" in r.getMessage() for r in caplog.records)


def test_generator_of_1003_examples_two_epochs_counts_2006(plan: Plan) -> None:
    x, y = _arrays()

    def examples():
        for i in range(N):
            yield x[i], y[i]

    model = counting_model((16, 16, 3), 3)
    history = autobatch.fit(model, examples, epochs=2, plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 2006
    assert history.history["examples_seen"] == [N, N]


def test_real_tune_path_then_full_coverage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    x, y = _arrays(203)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    history = autobatch.fit(
        model, (x, y), epochs=2, verbose=0,
        time_budget=30, tune_options={"trials": 2, "measure_baseline": False,
                      "try_xla": False, "max_batch_size": 64},
    )
    assert history.plan.fingerprints  # a real, tuned plan
    assert 1 <= history.plan.batch_size <= 64
    assert history.history["examples_seen"] == [203, 203]


# ---------------------------------------------------------------- folders


def test_folder_channels_converted_and_validation_split_disjoint(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "gray", {"a": 12, "b": 7, "c": 6}, size=(20, 24),
                             fmt="PNG", ext=".png")
    for path in data.rglob("*.png"):  # grayscale files for an RGB model
        from PIL import Image

        Image.open(path).convert("L").save(path)
    plan = Plan(batch_size=4, num_examples=25, ceiling_batch_size=8)
    model = counting_model((16, 16, 3), 3)
    history = autobatch.fit(model, data, epochs=1, plan=plan, validation_split=0.2, seed=3,
                            verbose=0)
    assert history.history["examples_seen"] == [20]
    assert "val_loss" in history.history


def test_split_is_stratified_deterministic_and_disjoint() -> None:
    from autobatch._data import FileSource

    labels = [0] * 50 + [1] * 30 + [2] * 20
    source = FileSource(tuple(f"f{i}.jpg" for i in range(100)), tuple(labels), ("a", "b", "c"))
    train, val = source.split(0.2, seed=7)
    again_train, again_val = source.split(0.2, seed=7)
    _, other_val = source.split(0.2, seed=8)
    assert val.paths == again_val.paths and train.paths == again_train.paths
    assert set(val.paths) != set(other_val.paths)
    assert not set(train.paths) & set(val.paths)
    assert len(train.paths) + len(val.paths) == 100
    assert sorted(np.bincount(val.labels).tolist()) == [4, 6, 10]  # 20% of every class
    with pytest.raises(UsageError, match="validation_split"):
        source.split(1.5, seed=0)


# ---------------------------------------------------------------- pre-flight checks


def test_preflight_model_not_taking_images(folder_1003: Path, plan: Plan) -> None:
    model = counting_model((10,), 3)
    with pytest.raises(DataError, match=r"shape \(10\), not images"):
        autobatch.fit(model, folder_1003, plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 0


def test_preflight_channels_the_images_cannot_convert_to(folder_1003: Path, plan: Plan) -> None:
    model = counting_model((16, 16, 5), 3)
    with pytest.raises(DataError, match="5-channel"):
        autobatch.fit(model, folder_1003, plan=plan, verbose=0)


def test_preflight_classes_differ_from_output_units(folder_1003: Path, plan: Plan) -> None:
    model = counting_model((16, 16, 3), 4)
    with pytest.raises(DataError, match="3 classes but the model outputs 4 units"):
        autobatch.fit(model, folder_1003, plan=plan, verbose=0)


def test_one_hot_loss_on_a_folder_is_fed_one_hot_rows(folder_1003: Path, plan: Plan) -> None:
    # Issue #18: the label form follows the loss (Keras' label_mode="categorical"), instead
    # of refusing; label_mode="int" asks for indices, which that loss cannot take.
    model = counting_model((16, 16, 3), 3, loss="categorical_crossentropy")
    history = autobatch.fit(model, folder_1003, plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 1003 and history.coverage.complete
    with pytest.raises(DataError, match="expects one-hot labels.*label_mode"):
        autobatch.fit(model, folder_1003, plan=plan, verbose=0, label_mode="int")


def test_preflight_sparse_loss_with_one_hot_arrays(plan: Plan) -> None:
    x, y = _arrays(40)
    model = counting_model((16, 16, 3), 3)
    with pytest.raises(DataError, match="expects class indices.*one-hot"):
        autobatch.fit(model, (x, np.eye(3, dtype=np.float32)[y]), plan=plan, verbose=0)


def test_preflight_array_shape_mismatch(plan: Plan) -> None:
    model = counting_model((16, 16, 3), 3)
    with pytest.raises(DataError, match=r"\(16, 16, 3\) but the data has \(8, 8, 3\)"):
        autobatch.fit(model, _arrays(40, (8, 8, 3)), plan=plan, verbose=0)


def test_errors_are_one_line_usage_errors(plan: Plan) -> None:
    model = counting_model((16, 16, 3), 3)
    with pytest.raises(UsageError) as info:
        autobatch.fit(model, _arrays(40), plan=plan, batch_size=8)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="generator"):
        autobatch.fit(model, lambda: iter([]), plan=plan, validation_split=0.1)


# ---------------------------------------------------------------- coverage causes, LR


def test_user_steps_per_epoch_is_reported_with_its_cause(
        plan: Plan, caplog: pytest.LogCaptureFixture) -> None:
    model = counting_model((16, 16, 3), 3)
    with caplog.at_level(logging.WARNING, logger="autobatch._fit._coverage"):
        history = autobatch.fit(model, _arrays(), epochs=1, plan=plan, steps_per_epoch=5,
                                verbose=0)
    assert history.history["examples_seen"] == [320]
    assert not history.coverage.complete
    assert "steps_per_epoch=5 was passed" in caplog.text
    assert "trained on 320 of 1003" in caplog.text


def test_one_shot_batched_generator_like_the_tutorial(plan: Plan) -> None:
    x, y = _arrays(100)

    def image_generator(batch_size: int):  # the generator users write, fixed up
        while True:
            for i in range(0, len(x), batch_size):
                yield x[i:i + batch_size], y[i:i + batch_size]

    model = counting_model((16, 16, 3), 3)
    history = autobatch.fit(model, image_generator(32), epochs=2, plan=plan, num_examples=100,
                            verbose=0)
    assert int(model.seen.numpy()) == 200
    assert history.coverage.uneven_last_batch == 4  # 100 = 3 x 32 + 4: reported, kept


def test_scale_lr_applies_the_linear_factor_for_sgd() -> None:
    plan = Plan(batch_size=128, num_examples=200, ceiling_batch_size=128)
    x, y = _arrays(200)
    model = counting_model((16, 16, 3), 3, optimizer=keras.optimizers.SGD(0.01))
    history = autobatch.fit(model, (x, y), plan=plan, scale_lr=True, verbose=0)
    lr = history.learning_rate
    assert (lr["rule"], lr["factor"], lr["applied"]) == ("linear", 4.0, True)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.04)

    model = counting_model((16, 16, 3), 3)  # Adam: sqrt rule, reported but not applied
    history = autobatch.fit(model, (x, y), plan=plan, reference_batch_size=32, verbose=0)
    assert history.learning_rate["factor"] == pytest.approx(2.0)
    assert not history.learning_rate["applied"]
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.001)


# ---------------------------------------------------------------- CLI


def test_cli_prints_audit_sentence_and_coverage_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    data = make_image_folder(tmp_path / "data", {"a": 9, "b": 6, "c": 4}, size=(16, 16))
    (data / "a" / "notes.txt").write_text("not an image")
    plan_path = Plan(batch_size=4, num_examples=19, ceiling_batch_size=8,
                     image_size=(16, 16)).save(tmp_path / "plan.json")
    saved = tmp_path / "out" / "model.keras"
    code = main(["fit", str(data), "--model", "small_cnn", "--image-size", "16", "--epochs", "2",
                 "--plan", str(plan_path), "--save", str(saved), "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "audit:" in out
    assert "epoch 1: trained on 19 of 19 usable images" in out
    assert "epoch 2: trained on 19 of 19 usable images" in out
    assert saved.is_file()


def test_cli_usage_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    code = main(["fit", str(tmp_path), "--model", "small_cnn", "--validation-split", "2"])
    assert code == 2
    assert "--validation-split must be between 0 and 1" in capsys.readouterr().err


def test_single_example_generator_is_tuned_on_a_sample(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    x, y = _arrays(150)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = autobatch.fit(
        model, lambda: zip(x, y, strict=True), epochs=2, verbose=0,
        time_budget=30, tune_options={"trials": 2, "measure_baseline": False,
                      "try_xla": False, "max_batch_size": 64},
    )
    assert history.plan.data["kind"] == "generator"
    assert history.plan.fingerprints  # tuned in the worker, on arrays drawn from the generator
    assert history.history["examples_seen"] == [150, 150]
    assert history.coverage.expected_examples == 150  # counted in a pass before training


def test_plan_xla_is_used_for_the_fit_and_the_users_flag_restored(plan: Plan) -> None:
    import dataclasses

    x, y = _arrays(64)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=False)
    during: list[bool] = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            during.append(bool(self.model.jit_compile))

    xla_plan = dataclasses.replace(plan, jit_compile=True, num_examples=64, batch_size=32)
    autobatch.fit(model, (x, y), epochs=1, plan=xla_plan, callbacks=[Watch()], verbose=0)
    assert during and all(during)  # trained as the plan measured it
    assert model.jit_compile is False  # the user's own setting is back
