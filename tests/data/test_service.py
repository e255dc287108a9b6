"""The tuned preprocessing on a tf.data service (issue #19, item 5), against a real cluster
started in this process: a dispatcher and two workers, TensorFlow's own servers. In
``distributed_epoch`` mode every example arrives exactly once per epoch through
``plan.dataset``, ``fit`` trains on each once per epoch, a probe worker (another process)
measures the pipeline there, and what cannot run on a service worker is refused in one line
before any work."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from _fitmodels import counting_model
from conftest import assert_cli_usage_errors, make_image_folder

import autobatch
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

N = 103
COUNTS = {"a": 50, "b": 30, "c": 23}


@pytest.fixture(scope="module")
def service() -> Any:
    """``grpc://localhost:PORT`` of a dispatcher with two workers (stopped with the module)."""
    service_api = tf.data.experimental.service
    dispatcher = service_api.DispatchServer()
    address = dispatcher.target.split("://")[1]
    workers = [service_api.WorkerServer(service_api.WorkerConfig(dispatcher_address=address))
               for _ in range(2)]
    yield dispatcher.target
    for worker in workers:
        worker._stop()  # noqa: SLF001 - TF's servers have no public stop
    dispatcher._stop()  # noqa: SLF001


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("service") / "data", COUNTS, size=(16, 16))


def _plan(batch_size: int = 16) -> Plan:
    return Plan(batch_size=batch_size, num_examples=N, ceiling_batch_size=64,
                image_size=(16, 16), pipeline=PipelineSettings(num_parallel_calls=2,
                                                               prefetch=1, cache="none"))


def test_distributed_epoch_yields_each_example_once_per_epoch(service: str) -> None:
    """Each example is its own number: two epochs through one endless iterator, each the
    103 numbers once (in the service's order, so compared as a multiset)."""
    x = np.arange(N, dtype=np.float32).reshape(N, 1, 1, 1) * np.ones((1, 4, 4, 1), np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(N) % 3))
    plan = Plan(batch_size=10, num_examples=N, ceiling_batch_size=32,
                pipeline=PipelineSettings(num_parallel_calls=2, prefetch=1, cache="none"))
    batches = iter(plan.dataset(dataset, repeat=True, data_service=service))
    for _epoch in range(2):
        seen: Counter[int] = Counter()
        for _ in range(plan.steps_per_epoch):
            images, _labels = next(batches)
            seen.update(int(v) for v in images.numpy()[:, 0, 0, 0])
        assert seen == Counter(range(N))


def test_fit_through_the_service_trains_every_image_once_per_epoch(service: str,
                                                                   folder: Path) -> None:
    model = counting_model((16, 16, 3), 3)
    history = autobatch.fit(model, folder, plan=_plan(), epochs=2, verbose=0,
                            data_service=service)
    assert int(model.seen.numpy()) == 2 * N  # the model's own count
    assert history.history["examples_seen"] == [N, N] and history.coverage.complete


def test_a_probe_worker_measures_the_pipeline_on_the_service(service: str,
                                                              folder: Path) -> None:
    """The tune's probes run in another process; they read from the same cluster."""
    import keras

    from autobatch._probe import ProbeRequest, SubprocessProbeRunner

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with SubprocessProbeRunner(model, folder, data_service=service) as runner:
        result = runner.run(ProbeRequest(batch_size=8, steps=3,
                                         settings=_plan().pipeline))
    assert result.ok, result.error
    assert result.examples_per_s and result.examples_per_s > 0


def test_what_no_service_worker_can_run_is_refused_in_one_line(
        service: str, folder: Path, user_folder: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    def examples() -> Any:
        for i in range(N):
            yield np.zeros((16, 16, 3), np.float32), i % 3

    plan = _plan()
    for data, num_examples, reason in [
        (examples, N, "a Python generator runs only in the process that made it"),
        ((np.zeros((N, 16, 16, 3), np.float32), np.arange(N) % 3), None,
         "arrays live in this process's memory"),
        (tf.data.Dataset.range(N).map(lambda i: (tf.py_function(
            lambda v: tf.zeros((16, 16, 3)), [i], tf.float32), i % 3)), N,
         "the dataset runs Python code"),
    ]:
        with pytest.raises(autobatch.UsageError) as raised:
            autobatch.fit(counting_model((16, 16, 3), 3), data, plan=plan,
                          num_examples=num_examples, verbose=0, data_service=service)
        message = str(raised.value)
        assert reason in message and "drop data_service," in message and "\n" not in message
    (user_folder / "gen_data.py").write_text(
        "import numpy as np, tensorflow as tf\n"
        "def make():\n"
        "    def examples():\n"
        "        for i in range(20):\n"
        "            yield np.zeros((16, 16, 3), np.float32), i % 2\n"
        "    return tf.data.Dataset.from_generator(examples, output_signature=(\n"
        "        tf.TensorSpec((16, 16, 3), tf.float32), tf.TensorSpec((), tf.int64)))\n")
    assert_cli_usage_errors([
        (["tune", "--dataset", "gen_data:make", "--num-examples", "20", "--model", "small_cnn",
          "--image-size", "16", "--data-service", service],
         "the dataset runs Python code (tf.py_function, tf.numpy_function or "
         "Dataset.from_generator), which only this process can run, so no tf.data service "
         "can make its examples: drop --data-service"),
        (["tune", str(folder), "--model", "small_cnn", "--image-size", "16", "--data-service",
          "grpc://nohost"], "--data-service 'grpc://nohost' is no dispatcher address"),
    ], capsys)
