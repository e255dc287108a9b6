"""Generators and PyDataset as tf.data pipelines: one epoch is one whole pass."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from autobatch._data import GeneratorSource, build_dataset
from autobatch._errors import DataError
from autobatch._settings import PipelineSettings

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def _examples(n: int = 53):
    rng = np.random.default_rng(1)
    x = rng.random((n, 4, 4, 1))  # float64 on purpose: the pipeline yields float32
    y = rng.integers(0, 3, n)
    return x, y


def _epoch_sizes(ds, epochs: int = 2) -> list[list[int]]:
    return [[int(xb.shape[0]) for xb, _ in ds] for _ in range(epochs)]


def test_generator_function_is_batched_without_dropping_the_last_partial_batch() -> None:
    x, y = _examples(53)

    def gen():
        for i in range(len(x)):
            yield x[i], y[i]

    ds = build_dataset(GeneratorSource(gen), batch_size=10, settings=PipelineSettings())
    assert _epoch_sizes(ds) == [[10, 10, 10, 10, 10, 3]] * 2  # a fresh pass every epoch
    first_x, first_y = next(iter(ds))
    assert first_x.dtype == tf.float32 and first_y.dtype == tf.int64
    np.testing.assert_allclose(first_x.numpy(), x[:10].astype(np.float32))


def test_generator_dataset_keeps_the_autotuner_only_for_autotune_settings() -> None:
    from autobatch._settings import AUTOTUNE

    x, y = _examples(12)

    def gen():
        for i in range(len(x)):
            yield x[i], y[i]

    source = GeneratorSource(gen)
    concrete = build_dataset(source, batch_size=5, settings=PipelineSettings(prefetch=2))
    assert concrete.options().autotune.enabled is False
    assert source.epoch(5).batch_size == 5  # the epoch facts come from the source
    assert _epoch_sizes(concrete, 1) == [[5, 5, 2]]
    tuned = build_dataset(GeneratorSource(gen), batch_size=5,
                          settings=PipelineSettings(prefetch=AUTOTUNE))
    assert tuned.options().autotune.enabled is True


def test_endless_generator_with_a_length_takes_exactly_one_pass_per_epoch() -> None:
    x, y = _examples(53)

    def endless():  # the "while True" generator of many tutorials
        while True:
            for i in range(len(x)):
                yield x[i], y[i]

    source = GeneratorSource(endless, num_examples_hint=53)
    ds = build_dataset(source, batch_size=16, settings=PipelineSettings())
    assert [sum(e) for e in _epoch_sizes(ds, 3)] == [53, 53, 53]
    epoch = source.epoch(16)
    assert epoch.uneven and epoch.last_batch_size == 5 and epoch.steps == 4
    assert "do not divide" in (epoch.note or "")


def test_one_shot_batched_stream_continues_across_epochs_without_losing_the_peeked_batch() -> None:
    x, y = _examples(50)

    def batches(batch: int):
        while True:
            for i in range(0, len(x), batch):
                yield x[i:i + batch], y[i:i + batch]

    stream = batches(20)  # a generator object: can be read only once
    source = GeneratorSource(stream, num_examples_hint=50, batched=True)
    ds = build_dataset(source, batch_size=64, settings=PipelineSettings())
    assert source.epoch(64).batch_size == 20  # the generator's own batch size is kept
    assert source.fixed_batch_size == 20
    labels = [np.concatenate([yb.numpy() for _, yb in ds]) for _ in range(2)]
    np.testing.assert_array_equal(labels[0], y)  # the first (peeked) batch was not lost
    np.testing.assert_array_equal(labels[1], y)


def test_py_dataset_uneven_length_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    x, y = _examples(53)

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epochs_ended = 0

        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int):
            return x[index * 10:(index + 1) * 10], y[index * 10:(index + 1) * 10]

        def on_epoch_end(self) -> None:
            self.epochs_ended += 1

    data = Batches()
    source = GeneratorSource(data)
    with caplog.at_level(logging.WARNING, logger="autobatch._data"):
        ds = build_dataset(source, batch_size=32, settings=PipelineSettings())
    info = source.epoch(32)
    assert (source.is_batched, info.batch_size, info.num_examples) == (True, 10, 53)
    assert info.uneven and info.last_batch_size == 3 and info.steps == 6
    assert "do not divide" in caplog.text
    assert _epoch_sizes(ds) == [[10, 10, 10, 10, 10, 3]] * 2
    assert data.epochs_ended == 2


def test_empty_generator_is_a_data_error() -> None:
    with pytest.raises(DataError, match="yielded nothing"):
        build_dataset(GeneratorSource(lambda: iter(())), batch_size=8, settings=PipelineSettings())


def test_sample_arrays_reads_a_fresh_pass() -> None:
    x, y = _examples(30)
    sample = GeneratorSource(lambda: zip(x, y, strict=False)).sample_arrays(max_examples=12)
    xs, ys = sample.x, sample.y
    assert xs.shape == (12, 4, 4, 1) and xs.dtype == np.float32
    np.testing.assert_array_equal(ys, y[:12])
    with pytest.raises(DataError, match="one-shot"):
        GeneratorSource(itertools.islice(zip(x, y, strict=False), 5)).sample_arrays()


def test_a_generator_is_read_through_one_stream_and_its_first_element_once() -> None:
    calls = []
    x, y = _examples(20)

    def gen():
        calls.append(1)
        yield from zip(x, y, strict=False)

    source = GeneratorSource(gen, num_examples_hint=20)
    source.example_shape()
    source.label_spec()
    import dataclasses

    copy = dataclasses.replace(source, batched=False)
    copy.example_shape()
    assert copy.stream is source.stream
    assert len(calls) == 1  # peeked once, for every question and every copy
    assert copy.tuning_source() is not None and copy.tuning_source().num_examples == 20
