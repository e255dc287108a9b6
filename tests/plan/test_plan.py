"""The Plan: JSON round trip, atomic writes, fit hand-off, the tuned dataset.

``sample_plan`` is the plan the other plan tests (and the probe CLI test) build on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _plans import sample_plan  # noqa: E402

from autobatch._errors import PlanError, UsageError
from autobatch._plan import SCHEMA_VERSION, Plan, steps_per_epoch
from autobatch._settings import PipelineSettings


def test_steps_cover_every_example() -> None:
    assert steps_per_epoch(1003, 32) == 32  # 31 full batches + one of 11
    assert steps_per_epoch(1024, 32) == 32
    assert steps_per_epoch(5, 32) == 1
    plan = sample_plan()
    assert plan.steps_per_epoch == math.ceil(1003 / 48)
    assert plan.steps_per_epoch * plan.batch_size >= plan.num_examples
    assert (plan.steps_per_epoch - 1) * plan.batch_size < plan.num_examples


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    plan = sample_plan()
    path = plan.save(tmp_path / "sub" / "plan.json")
    assert path.is_file() and plan.path == str(path)
    loaded = Plan.load(path)
    assert loaded == plan
    assert loaded.to_dict() == plan.to_dict()
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["steps_per_epoch"] == 21
    assert data["image_size"] == [64, 48]
    assert data["pipeline"]["cache"] == "memory"
    assert data["learning_rate"] == {"reference_batch_size": 32, "factor": 1.5,
                                     "rule": "linear", "optimizer": "SGD"}
    for key in ("batch_size", "per_replica_batch_size", "num_replicas", "num_examples",
                "ceiling_batch_size", "channels", "jit_compile", "measured", "baseline",
                "ceiling", "trials", "fingerprints", "study", "data", "model", "audit",
                "autobatch_version", "created_at"):
        assert key in data, key


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old contents")
    sample_plan().save(target)
    assert json.loads(target.read_text())["batch_size"] == 48
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_plan_rejects_autotune_and_bad_batch() -> None:
    with pytest.raises(PlanError, match="AUTOTUNE"):
        sample_plan(pipeline=PipelineSettings.keras_default())
    with pytest.raises(PlanError, match="batch_size"):
        sample_plan(batch_size=0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"schema_version": 99, "batch_size": 1}), "schema version 99"),
        (json.dumps({"schema_version": 1, "batch_size": 8}), "missing"),
        (json.dumps([1, 2]), "JSON object"),
    ],
)
def test_load_errors_are_one_line_plan_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(PlanError, match=message) as info:
        Plan.load(path)
    assert "\n" not in str(info.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="not found"):
        Plan.load(tmp_path / "nope.json")


def test_fit_and_compile_kwargs() -> None:
    plan = sample_plan()
    # shuffle=False: the dataset reshuffles each epoch itself (Keras would warn otherwise).
    assert plan.fit_kwargs() == {"steps_per_epoch": 21, "shuffle": False}
    assert plan.fit_kwargs(num_examples=100) == {"steps_per_epoch": 3, "shuffle": False}
    assert "epochs" not in plan.fit_kwargs()  # the caller's
    assert plan.compile_kwargs() == {"jit_compile": True}
    assert plan.learning_rate_factor == pytest.approx(1.5)
    assert plan.speedup_over_baseline == pytest.approx(812.5 / 500.0)


def test_dataset_builds_the_tuned_pipeline(tmp_path: Path, image_folder: Path) -> None:
    plan = sample_plan(num_examples=23, batch_size=8, image_size=(32, 32), jit_compile=False,
                       pipeline=PipelineSettings(num_parallel_calls=2, prefetch=1))
    dataset = plan.dataset(image_folder, shuffle=False)
    batches = list(dataset)
    assert len(batches) == plan.steps_per_epoch == 3
    assert sum(int(images.shape[0]) for images, _ in batches) == 23
    assert tuple(batches[0][0].shape[1:]) == (32, 32, 3)


def test_disk_cache_is_kept_apart_per_form_of_the_examples(
        tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.setenv("AUTOBATCH_CACHE_DIR", str(tmp_path))
    disk = PipelineSettings(num_parallel_calls=2, prefetch=1, cache="disk")
    plans = {
        "float32 at 32": sample_plan(num_examples=23, batch_size=8, image_size=(32, 32),
                                     jit_compile=False, pipeline=disk),
        "uint8 at 32": sample_plan(num_examples=23, batch_size=8, image_size=(32, 32),
                                   jit_compile=False, pipeline=disk.replace(pixels="uint8")),
        "uint8 at 16": sample_plan(num_examples=23, batch_size=8, image_size=(16, 16),
                                   jit_compile=False, pipeline=disk.replace(pixels="uint8")),
    }
    folders = {name: plan.disk_cache_dir(image_folder) for name, plan in plans.items()}
    assert len(set(folders.values())) == 3
    # Each reads back what it cached, one after the other, two epochs each (the second from
    # the cache file): before the key held the form, the second plan read the first's floats.
    for name, plan in plans.items():
        size = plan.image_size[0]
        dtype = np.uint8 if "uint8" in name else np.float32
        for _ in range(2):
            images = np.concatenate([x.numpy() for x, _ in plan.dataset(image_folder)])
            assert images.shape == (23, size, size, 3) and images.dtype == dtype
        assert any(folders[name].iterdir())
    assert plans["uint8 at 32"].disk_cache_dir(image_folder) == folders["uint8 at 32"]


def test_steps_per_epoch_refuses_a_batch_below_one() -> None:
    for batch_size in (0, -4):
        with pytest.raises(UsageError) as info:
            steps_per_epoch(100, batch_size)
        assert info.value.parameter == "batch_size"
        assert str(info.value) == f"batch_size must be >= 1, got {batch_size}"
