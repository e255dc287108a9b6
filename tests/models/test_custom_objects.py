"""Models with the user's own classes go to the probe worker with no extra argument: the
modules that define them are imported there first, with the caller's import path; what cannot
go there (``__main__``, a class inside a function, a Lambda layer, a subclassed model Keras
cannot rebuild) is a one-line error naming it and the two ways out, one of which (a
model-building function) is tested here too. Workers never import from the current folder.

Real TensorFlow on CPU, a user module written to a temp folder, real JPEGs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image_folder

import autobatch
from autobatch._errors import ModelError

keras = pytest.importorskip("keras")

MODULE = "ab_userlayers"  # the user's own module, beside their script
USER_MODULE = '''
import keras
from keras import layers


@keras.saving.register_keras_serializable(package="ab_user")
class Scale(layers.Layer):
    """A registered custom layer."""

    def __init__(self, factor=1.0 / 255, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="ab_user")
class SmallNet(keras.Model):
    """A registered keras.Model subclass with get_config."""

    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.scale = Scale()
        self.conv = layers.Conv2D(4, 3, activation="relu")
        self.pool = layers.GlobalAveragePooling2D()
        self.out = layers.Dense(classes, activation="softmax")

    def call(self, x):
        return self.out(self.pool(self.conv(self.scale(x))))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


class TinyNet(keras.Model):
    """TensorFlow's "quickstart for experts" style, not registered, no get_config."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = layers.Conv2D(4, 3, activation="relu")
        self.pool = layers.GlobalAveragePooling2D()
        self.out = layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.pool(self.conv(x / 255.0)))


class Quickstart(keras.Model):
    """The quickstart to the letter: __init__ takes nothing, so Keras cannot revive it."""

    def __init__(self):
        super().__init__()
        self.conv = layers.Conv2D(4, 3, activation="relu")
        self.pool = layers.GlobalAveragePooling2D()
        self.out = layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.pool(self.conv(x / 255.0)))


def functional():
    inputs = keras.Input((32, 32, 3))
    x = Scale()(inputs)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="with_scale")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def build_quickstart():
    """A model-building function for the model a .keras file cannot carry (uncompiled:
    autobatch compiles it with its defaults)."""
    model = Quickstart()
    model.build((None, 32, 32, 3))
    return model
'''

N = 24
COUNTS = {"ants": 10, "bees": 8, "wasps": 6}
TUNE: dict[str, Any] = dict(trials=1, measure_baseline=False, try_xla=False,
                            max_batch_size=16, trial_steps=2, verify_steps=2, use_cache=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The user's module on sys.path (as beside their script), imported; an image folder;
    plan cache and study storage in a temp folder."""
    root = tmp_path_factory.mktemp("custom")
    code = root / "code"
    code.mkdir()
    (code / f"{MODULE}.py").write_text(textwrap.dedent(USER_MODULE))
    data = make_image_folder(root / "data", COUNTS, size=(32, 32))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(code))
        patch.setenv("AUTOBATCH_CACHE_DIR", str(root / "cache"))
        import importlib

        module = importlib.import_module(MODULE)
        yield {"module": module, "data": data, "root": root}
        sys.modules.pop(MODULE, None)


@pytest.fixture(scope="module")
def functional_plan(env: dict[str, Any]) -> Any:
    return autobatch.tune(env["module"].functional(), env["data"], **TUNE)


# ---------------------------------------------------------------- found and imported


def test_functional_model_with_a_registered_custom_layer_tunes(functional_plan: Any) -> None:
    assert functional_plan.batch_size >= 1
    assert functional_plan.num_examples == N
    assert tuple(functional_plan.image_size) == (32, 32)
    assert functional_plan.trials and functional_plan.trials[0]["outcome"] == "ok"


def test_the_worker_is_told_which_modules_define_the_objects(env: dict[str, Any],
                                                             tmp_path: Path) -> None:
    from autobatch._models import save_model_for_worker

    _, imports = save_model_for_worker(env["module"].functional(), tmp_path / "m.keras")
    assert imports["modules"] == [MODULE]
    assert {(o["module"], o["qualname"], o["name"]) for o in imports["custom_objects"]} == {
        (MODULE, "Scale", "ab_user>Scale")}


def test_registered_model_subclass_fits_every_image_once_per_epoch(
        env: dict[str, Any]) -> None:
    model = env["module"].SmallNet()
    model.build((None, 32, 32, 3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = autobatch.fit(model, env["data"], epochs=2, verbose=0, tune_options=TUNE)
    assert history.plan.fingerprints and history.plan.batch_size >= 1  # tuned in the worker
    assert history.history["examples_seen"] == [N, N]


def test_quickstart_style_subclassed_model_without_get_config_tunes(
        env: dict[str, Any]) -> None:
    model = env["module"].TinyNet()  # unregistered, no get_config, built, never called
    model.build((None, 32, 32, 3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    plan = autobatch.tune(model, env["data"], **TUNE)
    assert plan.batch_size >= 1 and tuple(plan.image_size) == (32, 32)
    assert plan.trials[0]["outcome"] == "ok"


def test_input_shape_of_subclassed_models_built_or_not(env: dict[str, Any]) -> None:
    from autobatch._models import model_input_shape

    built = env["module"].TinyNet()
    built.build((None, 32, 40, 3))
    assert model_input_shape(built) == (32, 40, 3)
    assert model_input_shape(env["module"].TinyNet()) is None  # not built: the data decide
    assert model_input_shape(env["module"].functional()) == (32, 32, 3)


# ---------------------------------------------------------------- model-building functions


def test_model_function_by_name_builds_what_a_keras_file_cannot_carry(
        env: dict[str, Any]) -> None:
    # The function that builds it, named module:function, is called in the worker.
    plan = autobatch.tune(f"{MODULE}:build_quickstart", env["data"], image_size=32, **TUNE)
    assert plan.batch_size >= 1 and plan.trials[0]["outcome"] == "ok"
    assert plan.model["spec"] == f"{MODULE}:build_quickstart"


def test_quickstart_model_to_the_letter_is_rebuilt_by_its_class(env: dict[str, Any]) -> None:
    # __init__(self) takes nothing, so Keras cannot revive it from a .keras file; its class,
    # importable and callable with no arguments, builds it in the worker, compiled as here.
    from autobatch._models import rebuildable_class_spec

    model = env["module"].build_quickstart()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert rebuildable_class_spec(model) == f"{MODULE}:Quickstart"
    history = autobatch.fit(model, env["data"], epochs=1, verbose=0,
                            tune_options={**TUNE, "image_size": 32})
    assert history.history["examples_seen"] == [N]
    assert history.plan.learning_rate.optimizer == "SGD"


def test_model_function_as_a_callable_fits(env: dict[str, Any]) -> None:
    history = autobatch.fit(env["module"].functional, env["data"], epochs=1, verbose=0,
                            tune_options=TUNE)
    assert history.plan.batch_size >= 1
    assert history.history["examples_seen"] == [N]


def test_resolve_model_calls_the_function_and_compiles_an_uncompiled_model(
        env: dict[str, Any]) -> None:
    from autobatch._models import model_function_spec, resolve_model

    assert model_function_spec(env["module"].build_quickstart) == f"{MODULE}:build_quickstart"
    assert model_function_spec("small_cnn") is None and model_function_spec("m.keras") is None
    model = resolve_model(f"{MODULE}:build_quickstart", num_classes=3, image_size=None)
    assert model.compiled and type(model).__name__ == "Quickstart"
    with pytest.raises(ModelError, match="has no function 'nope'"):
        resolve_model(f"{MODULE}:nope", num_classes=3, image_size=None)
    with pytest.raises(ModelError, match="cannot import module 'ab_no_such_module'"):
        resolve_model("ab_no_such_module:build", num_classes=3, image_size=None)


# ---------------------------------------------------------------- one-line errors


def test_class_defined_inside_a_function_is_a_one_line_error_naming_it(
        env: dict[str, Any]) -> None:
    @keras.saving.register_keras_serializable(package="ab_local")
    class LocalDouble(keras.layers.Layer):
        def call(self, x):  # type: ignore[no-untyped-def]
            return x * 2.0

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(LocalDouble()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError) as info:
        autobatch.tune(model, env["data"], **TUNE)
    message = str(info.value)
    assert "\n" not in message and "LocalDouble" in message and "inside a function" in message
    assert "importable module" in message
    assert "give model a function that builds the compiled model" in message


def test_class_from_main_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    from autobatch._models import save_for_worker

    # What a class in the user's script (or a notebook cell) looks like.
    ScriptLayer = type("ScriptLayer", (keras.layers.Layer,),
                       {"__module__": "__main__", "call": lambda self, x: x})
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(ScriptLayer()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError) as info:
        save_for_worker(model, tmp_path / "m.keras")
    message = str(info.value)
    assert "\n" not in message and "ScriptLayer" in message and "__main__" in message
    assert "give model a function that builds the compiled model" in message
    assert "'module:function'" in message
    # The CLI names the flag instead of the parameter.
    from autobatch._cli import _cli_message

    assert "give --model a function that builds the compiled model" in _cli_message(info.value)
    assert not (tmp_path / "m.keras").exists()


def test_model_function_from_main_is_a_one_line_error() -> None:
    from autobatch._models import model_function_spec

    def build():  # type: ignore[no-untyped-def]
        return None

    build.__module__ = "__main__"
    with pytest.raises(ModelError, match="__main__") as info:
        autobatch.tune(build, (None, None))
    assert "\n" not in str(info.value)
    def nested():  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ModelError, match="inside a function"):
        model_function_spec(nested)


def test_lambda_layer_error_gives_both_ways_out(env: dict[str, Any]) -> None:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0, name="scale_lambda")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError) as info:
        autobatch.tune(model, env["data"], **TUNE)
    message = str(info.value)
    assert "\n" not in message and "'scale_lambda' is a Lambda layer" in message
    assert "importable module" in message and "module:function" in message


# ---------------------------------------------------------------- never the current folder


TRAP = "import pathlib\npathlib.Path({marker!r}).write_text('imported')\n"


@pytest.fixture
def numpy_trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current folder holding a numpy.py that writes a marker file when imported; proven
    to work on a plain ``python -c 'import numpy'`` there."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "numpy-was-imported"
    (cwd / "numpy.py").write_text(TRAP.format(marker=str(marker)))
    subprocess.run([sys.executable, "-c", "import numpy"], cwd=cwd, check=True, timeout=60)
    assert marker.exists()  # the trap works where the current folder is on the path
    marker.unlink()
    monkeypatch.chdir(cwd)
    return marker


def test_probe_worker_never_imports_from_the_current_folder(
        env: dict[str, Any], numpy_trap: Path) -> None:
    from autobatch._probe import ProbeRequest, SubprocessProbeRunner

    # The user's module still comes along (it is on the caller's path, not in the cwd).
    with SubprocessProbeRunner(env["module"].functional(), env["data"],
                               host_memory_budget_bytes=16 << 30) as runner:
        result = runner.run(ProbeRequest(batch_size=4, steps=1, timeout_s=120))
    assert result.outcome == "ok", result.error
    assert not numpy_trap.exists()


def test_audit_deep_decoders_never_import_from_the_current_folder(
        env: dict[str, Any], numpy_trap: Path) -> None:
    report = autobatch.audit(env["data"], deep=True)
    assert len(report.usable_files) == N
    assert not numpy_trap.exists()


def test_import_path_drops_the_current_folder_and_keeps_the_scripts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autobatch._isolated import import_path

    script_dir, cwd = tmp_path / "project", tmp_path / "notebooks"
    script_dir.mkdir()
    cwd.mkdir()
    (cwd / "ab_nb_layers.py").write_text("VALUE = 1\n")
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", ["", str(script_dir), ".", *sys.path[1:]])
    path = import_path()
    assert str(script_dir) in path
    assert "" not in path and "." not in path and str(cwd) not in path
    # A module the caller imported through '' (a notebook beside its layers) still travels:
    # its folder joins the path, last, where it cannot shadow an installed package.
    monkeypatch.setattr(sys, "path", ["", *sys.path[1:]])
    import ab_nb_layers  # noqa: F401

    try:
        path = import_path(["ab_nb_layers"])
        assert path[-1] == str(cwd) and path.count(str(cwd)) == 1
    finally:
        sys.modules.pop("ab_nb_layers", None)
