"""Model SPECs, introspection and saving for the worker (real Keras on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autobatch._errors import ModelError
from autobatch._models import (
    model_input_shape,
    model_output_units,
    resolve_model,
    save_for_worker,
)


def test_small_cnn_is_sized_and_compiled() -> None:
    model = resolve_model("small_cnn", num_classes=5, image_size=(32, 40), channels=1)
    assert model_input_shape(model) == (32, 40, 1)
    assert model_output_units(model) == 5
    assert model.compiled
    assert type(model.optimizer).__name__ == "Adam"
    assert "sparse_categorical_crossentropy" in str(model.loss)


def test_keras_file_round_trip(tmp_path: Path) -> None:
    model = resolve_model("small_cnn", num_classes=3, image_size=32)
    path = save_for_worker(model, tmp_path / "m")
    assert path.suffix == ".keras" and path.is_file()
    loaded = resolve_model(str(path), num_classes=0, image_size=None)
    assert model_input_shape(loaded) == (32, 32, 3) and model_output_units(loaded) == 3
    assert loaded.compiled


@pytest.mark.parametrize("spec, match", [
    ("no_such_model", "unknown model .no_such_model.: pass a .keras file"),
    ("missing.keras", "does not exist"),
])
def test_bad_specs_are_model_errors(spec: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        resolve_model(spec, num_classes=3, image_size=32)


def test_builtin_without_image_size_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="image size"):
        resolve_model("small_cnn", num_classes=3, image_size=None)


def test_lambda_layer_cannot_go_to_the_worker(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError, match="'doubler' is a Lambda layer"):
        save_for_worker(model, tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()


def test_subclassed_model_without_get_config_names_the_cause(tmp_path: Path) -> None:
    import keras

    class Opaque(keras.Model):
        def __init__(self, hidden: keras.layers.Layer) -> None:  # not serialisable arg
            super().__init__()
            self.hidden = hidden
            self.out = keras.layers.Dense(2)

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.out(self.hidden(x))

    model = Opaque(keras.layers.Dense(4))
    model.build((None, 3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError, match="cannot be serialised") as info:
        save_for_worker(model, tmp_path / "m.keras")
    assert "\n" not in str(info.value)


def test_uncompiled_model_is_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ModelError, match="not compiled"):
        save_for_worker(model, tmp_path / "m.keras")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "efficientnet_b0"])
def test_applications_build_at_the_asked_size(name: str) -> None:
    model = resolve_model(name, num_classes=7, image_size=64)
    assert model_input_shape(model) == (64, 64, 3)
    assert model_output_units(model) == 7
    assert model.compiled


def test_uint8_input_check_tells_casting_models_from_raw_arithmetic() -> None:
    import keras
    import tensorflow as tf

    from autobatch._models import model_accepts_uint8, resolve_model

    # The built-ins start with a Keras Input (and Rescaling): they cast uint8 themselves.
    small = resolve_model("small_cnn", num_classes=3, image_size=(24, 24))
    assert model_accepts_uint8(small, (24, 24), 3)

    class RawScale(keras.Model):  # divides its raw input: uint8 / float is a TypeError
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.dense(tf.reduce_mean(x / 255.0, axis=(1, 2)))

    class Wrapping(keras.Model):  # uint8 arithmetic overflows: a different output
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.dense(tf.reduce_mean(tf.cast(x + x, "float32"), axis=(1, 2)))

    assert not model_accepts_uint8(RawScale(), (24, 24), 3)
    assert not model_accepts_uint8(Wrapping(), (24, 24), 3)
    assert not model_accepts_uint8(small, None, 3)  # unknown input size: no claim


def test_optimizer_name_without_tensorflow_for_specs(tmp_path: Path) -> None:
    import json
    import zipfile

    from autobatch._models import optimizer_name

    assert optimizer_name("small_cnn") == "Adam"
    assert optimizer_name("some_module:build") is None
    assert optimizer_name(tmp_path / "missing.keras") is None
    saved = {
        "plain.keras": {"compile_config": {"optimizer": {"class_name": "SGD"}}},
        "string.keras": {"compile_config": {"optimizer": "rmsprop"}},
        "scaled.keras": {"compile_config": {"optimizer": {
            "class_name": "LossScaleOptimizer",
            "config": {"inner_optimizer": {"class_name": "AdamW"}}}}},
        "uncompiled.keras": {"compile_config": None},
    }
    for name, config in saved.items():
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr("config.json", json.dumps(config))
    (tmp_path / "broken.keras").write_text("not a zip")
    assert optimizer_name(tmp_path / "plain.keras") == "SGD"
    assert optimizer_name(str(tmp_path / "string.keras")) == "rmsprop"
    assert optimizer_name(tmp_path / "scaled.keras") == "AdamW"
    assert optimizer_name(tmp_path / "uncompiled.keras") is None
    assert optimizer_name(tmp_path / "broken.keras") is None


def test_optimizer_name_of_a_live_model_and_its_file(tmp_path: Path) -> None:
    import keras

    from autobatch._models import optimizer_name

    model = resolve_model("small_cnn", num_classes=3, image_size=16)
    model.compile(optimizer=keras.optimizers.SGD(), loss="sparse_categorical_crossentropy")
    assert optimizer_name(model) == "SGD"
    assert optimizer_name(save_for_worker(model, tmp_path / "m")) == "SGD"
    scaled = resolve_model("small_cnn", num_classes=3, image_size=16)
    scaled.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW()),
                   loss="sparse_categorical_crossentropy")
    assert optimizer_name(scaled) == "AdamW"
    assert optimizer_name(save_for_worker(scaled, tmp_path / "s")) == "AdamW"
    uncompiled = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert optimizer_name(uncompiled) is None
