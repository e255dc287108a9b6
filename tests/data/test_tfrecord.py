"""TFRecord shards with the user's parse function (issue #18, item 2): 1003 examples in
three shards counted once per epoch, the reads' parallelism from the plan, the worker
rebuilding them by the parse function's name, a corrupt record named by shard and offset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from _fitmodels import counting_model

import autobatch
from autobatch._data import resolve_source
from autobatch._data._tfrecord import TFRecordSource
from autobatch._errors import DataError, UsageError
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

SIDE = 8
FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}


def parse(record: Any) -> Any:
    """One serialized ``tf.train.Example`` -> (uint8 image, class index)."""
    example = tf.io.parse_single_example(record, FEATURES)
    image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), (SIDE, SIDE, 3))
    return image, tf.cast(example["label"], tf.int32)


def write_shards(folder: Path, sizes: tuple[int, ...]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    index = 0
    for shard, size in enumerate(sizes):
        with tf.io.TFRecordWriter(str(folder / f"train-{shard:05d}.tfrecord")) as writer:
            for _ in range(size):
                image = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[image.tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[index % 3])),
                }))
                writer.write(example.SerializeToString())
                index += 1
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shards(tmp_path_factory.mktemp("records") / "shards", (400, 400, 203))


def test_1003_records_in_three_shards_train_2006_over_two_epochs(shards: Path) -> None:
    model = counting_model((SIDE, SIDE, 3), 3)
    plan = Plan(batch_size=64, num_examples=1003, ceiling_batch_size=128)
    history = autobatch.fit(model, shards, parse=parse, epochs=2, plan=plan, verbose=0)
    assert int(model.seen.numpy()) == 2006 and history.history["examples_seen"] == [1003, 1003]
    assert history.coverage.complete and history.steps_per_epoch == 16


def test_the_shards_are_counted_and_read_with_the_plans_parallelism(shards: Path) -> None:
    source = resolve_source(str(shards / "*.tfrecord"), parse=parse)
    assert isinstance(source, TFRecordSource) and source.num_examples == 1003
    assert len(source.files) == 3 and source.eight_bit
    assert source.label_spec().kind == "index" and source.label_spec().num_classes == 3
    settings = PipelineSettings(num_parallel_calls=3, deterministic=True, cache="none")
    ds = source.build_dataset(batch_size=1003, settings=settings, shuffle=False)
    (x, y), = ds.as_numpy_iterator()
    assert x.shape == (1003, SIDE, SIDE, 3) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [335, 334, 334]  # every record once
    folder = resolve_source(shards, parse=parse)
    assert folder.fingerprint() == source.fingerprint()
    # The reads follow the plan: one reader per shard at most, its parallelism.
    for calls, readers in ((3, 3), (2, 2), (8, 3)):
        read = source.elements(PipelineSettings(num_parallel_calls=calls))
        assert _interleave_inputs(read) == (readers, min(calls, readers))


def _interleave_inputs(ds: Any) -> tuple[int, int]:
    """(cycle_length, num_parallel_calls) of the ParallelInterleaveDataset in ``ds``'s graph."""
    graph = tf.compat.v1.GraphDef.FromString(tf.raw_ops.DatasetToGraphV2(
        input_dataset=ds._variant_tensor, external_state_policy=0).numpy())
    nodes = {node.name: node for node in graph.node}
    (node,) = [n for n in graph.node if n.op.startswith("ParallelInterleaveDataset")]

    def value(name: str) -> int:
        return int(tf.make_ndarray(nodes[name.split(":")[0]].attr["value"].tensor))

    inputs = [name for name in node.input if not name.startswith("^")]
    return value(inputs[1]), value(inputs[-1])


def test_the_worker_rebuilds_them_by_the_parse_functions_name(shards: Path,
                                                              tmp_path: Path) -> None:
    source = resolve_source(shards, parse=parse)
    description = source.describe(tmp_path)
    assert description["parse"] == f"{__name__}:parse"
    rebuilt = TFRecordSource.rebuild(description)
    assert rebuilt.num_examples == 1003 and rebuilt.files == source.files
    result = autobatch.probe("small_cnn", source, batch_size=32, image_size=SIDE, steps=2)
    assert result.outcome == "ok" and result.examples_per_s > 0, result


def test_a_corrupt_record_is_named_by_shard_and_offset(tmp_path: Path) -> None:
    folder = write_shards(tmp_path / "bad", (5, 5))
    shard = folder / "train-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF  # inside the first record's payload: its CRC no longer matches
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard '.*train-00001\.tfrecord' has a corrupt "
                                        r"record at offset \d+ \(after 5 good records"):
        resolve_source(folder, parse=parse)


def test_bad_shard_arguments_are_one_line_errors(shards: Path, tmp_path: Path) -> None:
    def local_parse(record: Any) -> Any:
        return parse(record)

    with pytest.raises(UsageError, match="holds TFRecord shards: pass parse=FUNCTION"):
        resolve_source(shards)
    with pytest.raises(DataError, match="no TFRecord shards in"):
        resolve_source(tmp_path, parse=parse)
    with pytest.raises(UsageError, match="parse applies to TFRecord shards"):
        resolve_source((np.zeros((2, 4)), np.zeros(2)), parse=parse)
    with pytest.raises(DataError, match="define it at module level"):
        resolve_source(shards, parse=local_parse).describe(tmp_path)

    def wrong_features(record: Any) -> Any:
        example = tf.io.parse_single_example(
            record, {"img": tf.io.FixedLenFeature([], tf.string)})
        return example["img"], 0

    with pytest.raises(DataError, match=r"parse function .*wrong_features fails on the first "
                                        r"record of '.*train-00000\.tfrecord'"):
        resolve_source(shards, parse=wrong_features)
    with pytest.raises(DataError, match="fails on the first record"):
        resolve_source(shards, parse=lambda record: record["image"])  # fails as it is traced


def test_cli_tune_takes_parse(shards: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from autobatch._cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["tune", str(shards), "--parse", "no_such_module:parse", "--model",
                 "small_cnn", "--image-size", str(SIDE)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot import the parse function" in err
