"""The user's own ``tf.data.Dataset`` as a source (issue #18, item 1): the seed's Example 2
pipeline as a user writes it, carried to the probe worker as a graph or by its function,
counted once per epoch; the bad datasets end in one line."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from _fitmodels import counting_model
from conftest import assert_cli_usage_errors, make_image_folder

import autobatch
from autobatch._data import DatasetSource, resolve_source
from autobatch._errors import DataError, UsageError
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

IMG = 32
COUNTS = {"cats": 7, "dogs": 6}


def example_2(data_dir: Path) -> Any:
    """The seed's Example 2 to the letter, up to its ``.shuffle().batch().prefetch()`` (the
    part autobatch chooses): string labels from the folder names."""
    def process_path(file_path: Any) -> Any:
        img = tf.io.read_file(file_path)
        img = tf.image.decode_jpeg(img, channels=3)
        img = tf.image.resize(img, [IMG, IMG])
        img = tf.cast(img, tf.float32) / 255.0
        return img

    list_ds = tf.data.Dataset.list_files(str(data_dir / "*/*"))
    return list_ds.map(lambda x: (process_path(x), tf.strings.split(x, "/")[-2]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("tfdata") / "photos", COUNTS,
                             size=(IMG, IMG))


def _plan(batch_size: int, n: int) -> Plan:
    return Plan(batch_size=batch_size, num_examples=n, ceiling_batch_size=2 * batch_size,
                image_size=(IMG, IMG))


def test_example_2_fits_every_element_once_per_epoch(folder: Path) -> None:
    model = counting_model((IMG, IMG, 3), 2)
    history = autobatch.fit(model, example_2(folder), epochs=2, plan=_plan(4, 13), verbose=0)
    assert int(model.seen.numpy()) == 26  # the model's own count: 13 per epoch
    assert history.history["examples_seen"] == [13, 13]
    assert history.coverage.complete and history.steps_per_epoch == 4


def test_string_labels_become_class_indices_in_sorted_order(folder: Path) -> None:
    source = resolve_source(example_2(folder))
    assert isinstance(source, DatasetSource) and source.num_examples == 13
    assert source.class_names() == ("cats", "dogs")
    assert source.label_spec().num_classes == 2 and source.label_spec().exact
    ds = source.build_dataset(batch_size=13, settings=PipelineSettings(), shuffle=False)
    (x, y), = ds.as_numpy_iterator()
    assert x.shape == (13, IMG, IMG, 3) and y.dtype == np.int32
    assert Counter(y.tolist()) == {0: 7, 1: 6}
    assert source.summary()["class_names"] == ["cats", "dogs"]
    # The user's own stages, reported as left: list_files (a shuffled file list), the map.
    assert source.summary()["stages"] == ["TensorSlice", "Shuffle", "Map"]


def test_the_graph_is_carried_to_another_process_and_rebuilt(folder: Path,
                                                             tmp_path: Path) -> None:
    source = resolve_source(example_2(folder))
    description = source.describe(tmp_path)
    assert description["factory"] is None and Path(description["graph_path"]).is_file()
    rebuilt = DatasetSource.rebuild(description)
    assert rebuilt.num_examples == 13 and rebuilt.class_names() == ("cats", "dogs")
    # The same images come out (list_files shuffles: compared as sets of pixel sums).
    got = sorted(float(x.sum()) for x, _ in rebuilt.dataset.as_numpy_iterator())
    want = sorted(float(x.sum()) for x, _ in source.dataset.as_numpy_iterator())
    assert got == pytest.approx(want)
    # The plan cache's key: the same pipeline built again (new function names) matches.
    assert resolve_source(example_2(folder)).fingerprint() == source.fingerprint()
    assert resolve_source(example_2(folder).take(6)).fingerprint() != source.fingerprint()
    assert rebuilt.head(5).num_examples == 5


def test_a_probe_runs_the_users_pipeline_in_the_worker(folder: Path) -> None:
    result = autobatch.probe("small_cnn", example_2(folder), batch_size=4, image_size=IMG,
                             steps=2)
    assert result.outcome == "ok" and result.examples_per_s > 0, result


def test_a_dataset_function_by_name(folder: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_data.py").write_text(
        "import numpy as np, tensorflow as tf\n"
        "def make():\n"
        "    x = np.arange(10 * 8 * 8 * 3, dtype=np.uint8).reshape(10, 8, 8, 3)\n"
        "    return tf.data.Dataset.from_tensor_slices((x, np.arange(10) % 2))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = resolve_source("user_data:make")
    assert isinstance(source, DatasetSource) and source.factory == "user_data:make"
    assert source.num_examples == 10 and source.eight_bit
    description = source.describe(tmp_path)
    assert "graph_path" not in description  # the worker calls the function again
    assert DatasetSource.rebuild(description).num_examples == 10
    with pytest.raises(DataError, match="cannot import the dataset function"):
        resolve_source("user_data:missing")
    sys.modules.pop("user_data", None)


def test_python_in_the_graph_asks_for_the_function(tmp_path: Path) -> None:
    def lookup(x: Any) -> Any:
        return x * 2

    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3), "float32"),
                                             np.arange(4) % 2))
    ds = ds.map(lambda x, y: (tf.py_function(lookup, [x], tf.float32), y))
    with pytest.raises(DataError, match="pass the function that builds the dataset as "
                                        "'module:function'"):
        resolve_source(ds).describe(tmp_path)


def test_an_endless_dataset_needs_num_examples() -> None:
    x = np.zeros((6, IMG, IMG, 3), "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(6) % 2)).repeat()
    model = counting_model((IMG, IMG, 3), 2)
    with pytest.raises(UsageError, match=r"length is infinite .* pass num_examples=N"):
        autobatch.fit(model, ds, epochs=1, plan=_plan(4, 6), verbose=0)
    history = autobatch.fit(model, ds, epochs=2, plan=_plan(4, 10), num_examples=10, verbose=0)
    assert int(model.seen.numpy()) == 20 and history.coverage.complete


def test_bad_datasets_are_one_line_errors() -> None:
    x = np.zeros((6, IMG, IMG, 3), "float32")
    pairs = tf.data.Dataset.from_tensor_slices((x, np.arange(6) % 2))
    model = counting_model((IMG, IMG, 3), 2)
    with pytest.raises(UsageError, match=r"yields batches .*drop its \.batch"):
        autobatch.fit(model, pairs.batch(2), epochs=1, plan=_plan(2, 6), verbose=0)
    with pytest.raises(DataError, match=r"must be \(image, label\) pairs"):
        resolve_source(tf.data.Dataset.from_tensor_slices(x))
    with pytest.raises(DataError, match=r"must be \(image, label\) pairs"):
        resolve_source(tf.data.Dataset.from_tensor_slices({"image": x, "label": np.arange(6)}))
    with pytest.raises(UsageError, match="validation_split cannot split a tf.data.Dataset"):
        autobatch.fit(model, pairs, epochs=1, plan=_plan(2, 6), validation_split=0.5, verbose=0)
    one_class = tf.data.Dataset.from_tensor_slices((x, ["only"] * 6))
    with pytest.raises(DataError, match="one class"):
        autobatch.fit(model, one_class, epochs=1, plan=_plan(2, 6), verbose=0)


@pytest.mark.slow
def test_example_2_is_tuned_and_trained_end_to_end(folder: Path) -> None:
    history = autobatch.fit("small_cnn", example_2(folder), epochs=2, image_size=IMG,
                            time_budget=40, verbose=0)
    plan = history.plan
    assert history.history["examples_seen"] == [13, 13] and history.coverage.complete
    assert plan.data["kind"] == "dataset" and plan.data["class_names"] == ["cats", "dogs"]
    assert plan.baseline["outcome"] == "ok"  # measured in the worker, on the user's pipeline


def test_cli_fit_takes_a_dataset_function_from_the_current_folder(
        folder: Path, user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    (user_folder / "cli_data.py").write_text(
        "import tensorflow as tf\n"
        "def make():\n"
        f"    files = tf.data.Dataset.list_files({str(folder / '*/*')!r})\n"
        "    def load(path):\n"
        "        image = tf.image.decode_jpeg(tf.io.read_file(path), channels=3)\n"
        f"        return tf.image.resize(image, [{IMG}, {IMG}]), "
        "tf.strings.split(path, '/')[-2]\n"
        "    return files.map(load)\n")
    _plan(4, 13).save(user_folder / "plan.json")
    args = ["fit", "--dataset", "cli_data:make", "--model", "small_cnn", "--image-size",
            str(IMG), "--plan", "plan.json", "--epochs", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 2: trained on 13 of 13 usable examples" in out and "audit:" not in out
    assert_cli_usage_errors([
        (["fit", str(folder), "--dataset", "cli_data:make"], "one of the two"),
        (["tune", "--dataset", "no/such", "--model", "small_cnn"],
         "--dataset must be MODULE:FUNCTION"),
        (["tune", "--dataset", "nosuch_module:make", "--model", "small_cnn", "--image-size", "32"],
         "cannot import the dataset function"),
        (["tune", str(folder), "--num-examples", "5", "--model", "small_cnn"],
         "--num-examples applies to --dataset and --parse only"),
    ], capsys)


def make_pairs() -> Any:
    """A dataset-building function at module level: found by name in another process."""
    x = np.arange(12 * 4 * 4 * 3, dtype=np.uint8).reshape(12, 4, 4, 3)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(12) % 3)).map(
        lambda image, label: (tf.image.flip_left_right(image), label))


_FINGERPRINT = """
import sys, tensorflow as tf
sys.path[:0] = {path!r}
from test_tfdata import example_2
from pathlib import Path
from autobatch._data import resolve_source
ds = example_2(Path({folder!r})).map(lambda x, y: (x * 2.0, y))
print(resolve_source(ds).fingerprint())
"""


def test_the_fingerprint_is_the_same_in_another_process(folder: Path) -> None:
    import subprocess

    here = str(Path(__file__).parent)
    code = _FINGERPRINT.format(path=[here, str(Path(__file__).parents[1])], folder=str(folder))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()[-1]
    ds = example_2(folder).map(lambda x, y: (x * 2.0, y))
    assert out == resolve_source(ds).fingerprint()


def test_a_function_returning_a_dataset_is_rebuilt_by_its_name(tmp_path: Path) -> None:
    source = resolve_source(make_pairs)
    assert isinstance(source, DatasetSource) and source.factory == f"{__name__}:make_pairs"
    assert source.num_examples == 12 and "graph_path" not in source.describe(tmp_path)
    model = counting_model((4, 4, 3), 3)
    plan = Plan(batch_size=5, num_examples=12, ceiling_batch_size=10, image_size=(4, 4))
    history = autobatch.fit(model, make_pairs, plan=plan, epochs=1, verbose=0)
    assert history.history["examples_seen"] == [12]


def test_random_stages_of_the_users_own_are_never_cached(
        caplog: pytest.LogCaptureFixture) -> None:
    x = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(6) % 2)).map(
        lambda image, label: (tf.image.random_flip_left_right(image), label))
    source = resolve_source(ds)
    assert source.random_stages and not resolve_source(make_pairs()).random_stages
    in_order = PipelineSettings(cache="memory", deterministic=True)
    built = source.build_dataset(batch_size=6, settings=in_order, shuffle=False)
    epochs = [next(built.as_numpy_iterator())[0] for _ in range(6)]
    assert any(not np.array_equal(epochs[0], e) for e in epochs[1:])  # not replayed
    assert "not cached" in caplog.text
