"""``fit`` under ``tf.distribute`` strategies (issue #19, first part): a model built under
MirroredStrategy on two logical CPU devices (Keras' own way to test it) trains every
example once per epoch at the plan's global batch; what Keras 3 ``fit`` cannot do under a
strategy is refused in one line. Logical devices exist only if set before TensorFlow starts:
each case runs in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_image_folder

TESTS = str(Path(__file__).resolve().parents[1])

_SETUP = f"""
import sys
sys.path.insert(0, {TESTS!r})
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import autobatch
from autobatch._plan import Plan


def model_under(strategy, **optimizer):
    with strategy.scope():
        model = keras.Sequential([
            keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.Adam(**optimizer), "sparse_categorical_crossentropy")
    return model


def refused(call):
    try:
        call()
    except autobatch.UsageError as exc:
        print("REFUSED", exc)
    else:
        print("NOT REFUSED")
"""


def _run(code: str, tmp_path: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", _SETUP + code], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def folder_1003(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("mirrored") / "data",
                             {"a": 500, "b": 300, "c": 203}, size=(16, 16))


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_trains_every_example_once_per_epoch(
        folder_1003: Path, tmp_path: Path) -> None:
    out = _run(f"""
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
model = model_under(strategy)
plan = Plan(batch_size=64, num_examples=1003, ceiling_batch_size=128, image_size=(16, 16))
history = autobatch.fit(model, {str(folder_1003)!r}, plan=plan, epochs=2, verbose=0)
print("REPLICAS", history.num_replicas, strategy.num_replicas_in_sync)
print("SEEN", history.history["examples_seen"], history.coverage.complete)
print("STEPS", history.steps_per_epoch)
""", tmp_path)
    assert "REPLICAS 2 2" in out
    assert "SEEN [1003, 1003] True" in out  # summed across replicas, the last 43 included
    assert "STEPS 16" in out  # ceil(1003 / 64): the plan's batch is the global batch


def test_what_fit_cannot_do_under_a_strategy_is_refused(folder_1003: Path,
                                                        tmp_path: Path) -> None:
    out = _run(f"""
plan = Plan(batch_size=8, num_examples=1003, ceiling_batch_size=16, image_size=(16, 16))
model = model_under(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                    gradient_accumulation_steps=2)
refused(lambda: autobatch.fit(model, {str(folder_1003)!r}, plan=plan, verbose=0))
""", tmp_path)
    assert "REFUSED gradient accumulation (gradient_accumulation_steps=2) under " \
           "MirroredStrategy raises inside Keras' fit (keras-team/keras#20582)" in out, out
    out = _run(f"""
model = model_under(tf.distribute.MultiWorkerMirroredStrategy())
plan = Plan(batch_size=8, num_examples=1003, ceiling_batch_size=16, image_size=(16, 16))
refused(lambda: autobatch.fit(model, {str(folder_1003)!r}, plan=plan, verbose=0))
""", tmp_path)
    assert "REFUSED Keras 3 model.fit under MultiWorkerMirroredStrategy is broken since " \
           "TensorFlow 2.16 (keras-team/keras#20585)" in out, out


def _contexts(count: int) -> list[object]:
    import tensorflow as tf

    return [tf.distribute.InputContext(num_input_pipelines=count, input_pipeline_id=i,
                                       num_replicas_in_sync=2 * count) for i in range(count)]


def test_each_worker_gets_a_disjoint_part_that_covers_the_data(tmp_path: Path) -> None:
    """``plan.dataset(data, input_context=...)`` for ``distribute_datasets_from_function``: the
    parts of two workers are disjoint, cover every example once, and batch per replica."""
    import numpy as np

    from autobatch._plan import Plan

    x = np.arange(103 * 2 * 2 * 1, dtype=np.float32).reshape(103, 2, 2, 1)
    y = np.arange(103) % 3
    plan = Plan(batch_size=8, num_examples=103, ceiling_batch_size=16)
    parts = []
    for context in _contexts(2):
        batches = list(plan.dataset((x, y), shuffle=False, input_context=context)
                       .as_numpy_iterator())
        assert max(len(b[0]) for b in batches) == 2  # 8 global / (2 workers x 2 replicas)
        parts.append(sorted(int(v) for b in batches for v in b[0][:, 0, 0, 0] // 4))
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(103))


def test_tfrecord_shards_are_split_by_file_between_workers(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    try:
        from test_tfrecord import parse, write_shards
    finally:
        sys.path.pop(0)
    from autobatch._data import resolve_source

    source = resolve_source(write_shards(tmp_path / "shards", (5, 6, 7, 8)), parse=parse)
    parts = [source.shard(2, i) for i in range(2)]
    assert [p.num_examples for p in parts] == [5 + 7, 6 + 8]  # files 0, 2 and 1, 3
    assert not set(parts[0].files) & set(parts[1].files)
    by_record = source.shard(5, 4)  # more workers than files: every 5th record
    assert by_record.num_examples == 5
