"""The plan schema (version 1): one validator for every reader, each rule refusing its field.

``Plan.from_dict`` is what ``Plan.load``, the plan cache, ``fit --plan`` and the report all
go through; a malformed plan is a ``PlanFieldError`` naming the field, on one line.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _plans import sample_plan

from autobatch._errors import AutobatchError, PlanError
from autobatch._plan import SCHEMA_VERSION, LearningRateScaling, Plan, PlanFieldError
from autobatch._settings import PipelineSettings

PLANS = Path(__file__).parent / "plans"


def _valid() -> dict[str, Any]:
    return sample_plan().to_dict()


# ---------------------------------------------------------------- plans that must load


@pytest.mark.parametrize("name", ["plan-v1-5c62e21.json", "plan-v1-5c62e21-generator.json"])
def test_a_plan_saved_before_the_validator_loads_unchanged(name: str, tmp_path: Path) -> None:
    """Files written by ``Plan.save`` at 5c62e21 (the last commit before this package):
    loading and saving again gives the same bytes."""
    text = (PLANS / name).read_text(encoding="utf-8")
    plan = Plan.load(PLANS / name)
    assert plan.to_json() == text
    assert plan.save(tmp_path / name).read_text(encoding="utf-8") == text
    assert Plan.load(tmp_path / name) == plan


def test_a_generator_plan_of_unknown_length_loads() -> None:
    plan = Plan.load(PLANS / "plan-v1-5c62e21-generator.json")
    assert plan.num_examples == 0 and plan.steps_per_epoch == 1
    assert plan.image_size is None and plan.batch_size == 16


def test_the_first_plan_shape_still_loads() -> None:
    """Written by the first Plan (820abdf): no ``hardware``, no ``pipeline.pixels``."""
    data = json.loads((PLANS / "plan-v1-first.json").read_text(encoding="utf-8"))
    assert "hardware" not in data and "pixels" not in data["pipeline"]
    plan = Plan.load(PLANS / "plan-v1-first.json")
    assert plan.batch_size == 48 and plan.image_size == (64, 48) and plan.jit_compile
    assert plan.pipeline == PipelineSettings(num_parallel_calls=3, prefetch=4, cache="memory")
    assert plan.hardware == {} and plan.pipeline.pixels == "float32"
    assert plan.learning_rate.rule == "sqrt"
    again = plan.to_dict()
    for key, value in data.items():
        if key != "pipeline":
            assert again[key] == value, key
    assert {**data["pipeline"], "pixels": "float32"} == again["pipeline"]


def test_sample_plan_round_trips_through_from_dict() -> None:
    plan = sample_plan()
    data = json.loads(plan.to_json())
    assert Plan.from_dict(data) == plan
    assert Plan.from_dict(data).to_dict() == data


def test_optional_fields_absent_or_null_take_their_defaults() -> None:
    bare = {"schema_version": 1, "batch_size": 8, "num_examples": 20, "ceiling_batch_size": 8,
            "pipeline": {}}
    nulls = {**bare, "channels": None, "num_replicas": None, "image_size": None,
             "jit_compile": None, "measured": None, "learning_rate": None, "trials": None,
             "fingerprints": None, "ceiling": None, "audit": None, "baseline": None,
             "created_at": None, "per_replica_batch_size": None, "steps_per_epoch": None}
    for data in (bare, nulls):
        plan = Plan.from_dict(data)
        assert (plan.channels, plan.num_replicas, plan.per_replica_batch_size) == (3, 1, 8)
        assert plan.image_size is None and plan.jit_compile is False
        assert plan.pipeline == PipelineSettings()
        assert plan.learning_rate == LearningRateScaling()
        assert plan.measured == {} and plan.trials == [] and plan.fingerprints == {}
        assert plan.steps_per_epoch == 3


def test_keys_a_newer_writer_adds_are_ignored() -> None:
    data = _valid()
    data["future_section"] = {"anything": 1}
    data["pipeline"]["future_knob"] = "on"
    data["learning_rate"]["warmup"] = 5
    assert Plan.from_dict(data) == sample_plan()


def test_numpy_integers_and_bools_are_taken() -> None:
    data = _valid()
    data["batch_size"] = np.int64(48)
    data["image_size"] = [np.int32(64), np.int64(48)]
    plan = Plan.from_dict(data)
    assert plan.batch_size == 48 and type(plan.batch_size) is int
    assert plan.image_size == (64, 48) and all(type(side) is int for side in plan.image_size)
    data["jit_compile"] = np.bool_(False)
    data["pipeline"]["deterministic"] = np.bool_(True)
    plan = Plan.from_dict(data)
    assert plan.jit_compile is False and plan.pipeline.deterministic


# ---------------------------------------------------------------- one rule per field


def _set(path: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[part]
        target[last] = value
    return change


def _drop(key: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        del data[key]
    return change


BROKEN = [
    (_drop("pipeline"), "pipeline"),
    (_drop("batch_size"), "batch_size"),
    (_drop("num_examples"), "num_examples"),
    (_drop("ceiling_batch_size"), "ceiling_batch_size"),
    (_set("batch_size", -5), "batch_size"),
    (_set("batch_size", 0), "batch_size"),
    (_set("batch_size", "abc"), "batch_size"),
    (_set("batch_size", "48"), "batch_size"),
    (_set("batch_size", 48.5), "batch_size"),
    (_set("batch_size", True), "batch_size"),
    (_set("batch_size", None), "batch_size"),
    (_set("num_examples", -1), "num_examples"),
    (_set("num_examples", "many"), "num_examples"),
    (_set("ceiling_batch_size", 0), "ceiling_batch_size"),
    (_set("steps_per_epoch", 0), "steps_per_epoch"),
    (_set("steps_per_epoch", "21"), "steps_per_epoch"),
    (_set("per_replica_batch_size", 0), "per_replica_batch_size"),
    (_set("num_replicas", 0), "num_replicas"),
    (_set("channels", 0), "channels"),
    (_set("channels", -3), "channels"),
    (_set("channels", "rgb"), "channels"),
    (_set("image_size", [-1, 0]), "image_size"),
    (_set("image_size", [32]), "image_size"),
    (_set("image_size", [32, 32, 3]), "image_size"),
    (_set("image_size", "32x32"), "image_size"),
    (_set("image_size", [32.0, 32.0]), "image_size"),
    (_set("jit_compile", "yes"), "jit_compile"),
    (_set("pipeline", "fast"), "pipeline"),
    (_set("pipeline", None), "pipeline"),
    (_set("pipeline.prefetch", "2"), "pipeline.prefetch"),
    (_set("pipeline.prefetch", -3), "pipeline"),
    (_set("pipeline.num_parallel_calls", 0), "pipeline"),
    (_set("pipeline.num_parallel_calls", -1), "pipeline"),  # AUTOTUNE in a tuned plan
    (_set("pipeline.deterministic", 1), "pipeline.deterministic"),
    (_set("pipeline.cache", "ram"), "pipeline"),
    (_set("pipeline.cache", None), "pipeline.cache"),
    (_set("pipeline.pixels", "float16"), "pipeline"),
    (_set("measured", []), "measured"),
    (_set("measured.examples_per_s", "fast"), "measured.examples_per_s"),
    (_set("measured.peak_memory_bytes", -1), "measured.peak_memory_bytes"),
    (_set("baseline", "none"), "baseline"),
    (_set("baseline.examples_per_s", -2.0), "baseline.examples_per_s"),
    (_set("learning_rate", "linear"), "learning_rate"),
    (_set("learning_rate.factor", 0), "learning_rate.factor"),
    (_set("learning_rate.factor", "2x"), "learning_rate.factor"),
    (_set("learning_rate.rule", "cubic"), "learning_rate.rule"),
    (_set("learning_rate.reference_batch_size", 0), "learning_rate.reference_batch_size"),
    (_set("learning_rate.optimizer", 3), "learning_rate.optimizer"),
    (_set("trials", {"0": {}}), "trials"),
    (_set("trials", [1, 2]), "trials"),
    (_set("fingerprints", {"model": 3}), "fingerprints"),
    (_set("fingerprints", ["m"]), "fingerprints"),
    (_set("ceiling", [120]), "ceiling"),
    (_set("study", "sqlite:///x.db"), "study"),
    (_set("data", "/data"), "data"),
    (_set("model", "small_cnn"), "model"),
    (_set("audit", []), "audit"),
    (_set("hardware", "2 cpus"), "hardware"),
    (_set("created_at", 20250102), "created_at"),
    (_set("autobatch_version", 1.0), "autobatch_version"),
]


@pytest.mark.parametrize(("change", "field"), BROKEN)
def test_each_broken_field_is_refused_by_name(change: Any, field: str) -> None:
    data = _valid()
    change(data)
    with pytest.raises(PlanFieldError) as info:
        Plan.from_dict(data)
    error = info.value
    assert isinstance(error, PlanError) and isinstance(error, AutobatchError)
    assert error.field == field
    message = str(error)
    assert "\n" not in message and field.rsplit(".", 1)[-1] in message
    assert error.exit_code == 1


@pytest.mark.parametrize(("change", "field"), BROKEN[:8])
def test_plan_load_names_the_file_and_the_field(change: Any, field: str,
                                                tmp_path: Path) -> None:
    data = _valid()
    change(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanFieldError) as info:
        Plan.load(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"plan file {str(path)!r}: ")
    assert field in str(info.value) and "\n" not in str(info.value)


def test_all_missing_required_fields_are_named_at_once() -> None:
    with pytest.raises(PlanFieldError, match="missing num_examples, ceiling_batch_size, "
                                             "pipeline") as info:
        Plan.from_dict({"schema_version": 1, "batch_size": 8})
    assert info.value.field == "num_examples"


@pytest.mark.parametrize("version", [2, 0, "1", 1.5, True, None])
def test_an_unknown_schema_version_is_refused(version: Any) -> None:
    data = _valid()
    data["schema_version"] = version
    with pytest.raises(PlanError, match="schema version") as info:
        Plan.from_dict(data)
    assert f"version {SCHEMA_VERSION}" in str(info.value)
    data.pop("schema_version")
    with pytest.raises(PlanError, match="schema version None"):
        Plan.from_dict(data)


@pytest.mark.parametrize("value", [[1, 2], "plan", 3, None])
def test_a_plan_must_be_an_object(value: Any) -> None:
    with pytest.raises(PlanError, match="JSON object"):
        Plan.from_dict(value)


def test_the_keras_default_pipeline_only_in_a_plan_that_keeps_it() -> None:
    data = _valid()
    data["pipeline"] = PipelineSettings.keras_default().to_dict()
    with pytest.raises(PlanFieldError, match="AUTOTUNE") as info:
        Plan.from_dict(copy.deepcopy(data))
    assert info.value.field == "pipeline"
    data["measured"]["versus_default"] = {"decision": "default"}
    assert Plan.from_dict(data).keeps_default


# ---------------------------------------------------------------- the file's bytes


@pytest.mark.parametrize("raw", [
    b"\xff\xfe{\x00}\x00",  # UTF-16
    "{\"schema_version\": 1, \"model\": {\"name\": \"caf\xe9\"}}".encode("latin-1"),
    bytes(range(256)),
])
def test_bytes_that_are_not_utf8_are_one_plan_error(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(raw)
    with pytest.raises(PlanError, match="is not UTF-8 text") as info:
        Plan.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_folder_in_place_of_the_plan_is_a_plan_error(tmp_path: Path) -> None:
    (tmp_path / "plan.json").mkdir()
    with pytest.raises(PlanError, match="cannot read plan file"):
        Plan.load(tmp_path / "plan.json")
