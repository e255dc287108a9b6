"""The plan file's schema, version 1: the rules every field obeys, checked wherever a plan
is read (``Plan.from_dict``, hence ``Plan.load``, the plan cache, ``fit --plan`` and the
report), and the decoding of a plan file's bytes.

Older plans of version 1 still load: fields added since (``pipeline.pixels``,
``measured.versus_default``, ...) are optional, keys a reader does not know are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, TypeGuard

from autobatch._errors import AutobatchError, PlanError
from autobatch._plan._learning_rate import LEARNING_RATE_RULES, LearningRateScaling
from autobatch._settings import PipelineSettings

SCHEMA_VERSION = 1
MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
REMAT_MODES = ("larger_than", "full", "activations")
"""The levers a plan may name (``autobatch._models._levers`` applies them)."""
REQUIRED_FIELDS = ("batch_size", "num_examples", "ceiling_batch_size", "pipeline")
_RERUN = "tune again"


class PlanFieldError(PlanError):
    """One field of a plan breaks the schema; ``field`` is its dotted name in the JSON."""

    def __init__(self, field: str, problem: str, *, message: str | None = None) -> None:
        self.field = field
        self.problem = problem
        super().__init__(message or f"plan field {field!r} {problem}; {_RERUN}")


def read_plan_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value in a plan file, not yet checked against the schema.

    Raises:
        PlanError: the file is missing or unreadable, not UTF-8 text, or not JSON.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise PlanError(f"plan file {str(source)!r} not found; tune first"
                        ) from None
    except OSError as exc:
        raise PlanError(f"cannot read plan file {str(source)!r}: {exc.strerror or exc}"
                        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"plan file {str(source)!r} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
            f"offset {exc.start}); tune again with a fresh study ({{p:force}})"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"plan file {str(source)!r} is not valid JSON (line {exc.lineno}); "
            "tune again with a fresh study ({p:force})"
        ) from None


def plan_fields(data: Any) -> dict[str, Any]:
    """The ``Plan`` constructor's arguments from a plan dict, every field checked.

    Raises:
        PlanError: not a JSON object, or a schema version this autobatch does not read.
        PlanFieldError: a required field is missing or a field breaks its rule.
    """
    if not isinstance(data, dict):
        raise PlanError(f"a plan must be a JSON object; {_RERUN}")
    version = data.get("schema_version")
    if not _is_int(version) or version != SCHEMA_VERSION:
        raise PlanError(
            f"plan schema version {version!r} is not supported (this autobatch reads "
            f"version {SCHEMA_VERSION}); tune again with a fresh study ({{p:force}})"
        )
    missing = [key for key in REQUIRED_FIELDS if key not in data]
    if missing:
        raise PlanFieldError(missing[0], "is missing",
                             message=f"plan is missing {', '.join(missing)}; {_RERUN}")
    _count(data, "steps_per_epoch", minimum=1, optional=True)  # derived: checked, not kept
    return {
        "batch_size": _count(data, "batch_size", minimum=1),
        "num_examples": _count(data, "num_examples", minimum=0),  # 0: a generator's unknown
        "ceiling_batch_size": _count(data, "ceiling_batch_size", minimum=1),
        "pipeline": _pipeline(data["pipeline"]),
        "per_replica_batch_size": _count(data, "per_replica_batch_size", minimum=1,
                                         optional=True),
        "num_replicas": _count(data, "num_replicas", minimum=1, optional=True) or 1,
        "image_size": _image_size(data.get("image_size")),
        "channels": _count(data, "channels", minimum=1, optional=True) or 3,
        "jit_compile": _flag(data, "jit_compile"),
        "gradient_accumulation_steps": _count(data, "gradient_accumulation_steps", minimum=1,
                                              optional=True) or 1,
        "mixed_precision": _choice(data, "mixed_precision", MIXED_PRECISION_POLICIES),
        "remat": _choice(data, "remat", REMAT_MODES),
        "measured": _numbers(_record(data, "measured") or {}, "measured",
                             ("examples_per_s", "peak_memory_bytes", "memory_budget_bytes")),
        "baseline": _numbers(_record(data, "baseline"), "baseline", ("examples_per_s",)),
        "learning_rate": _learning_rate(data.get("learning_rate")),
        "ceiling": _record(data, "ceiling") or {},
        "trials": _trials(data.get("trials")),
        "fingerprints": _fingerprints(data.get("fingerprints")),
        "study": _record(data, "study") or {},
        "data": _record(data, "data") or {},
        "model": _record(data, "model") or {},
        "audit": _record(data, "audit"),
        "hardware": _record(data, "hardware") or {},
        "autobatch_version": _text(data, "autobatch_version"),
        "created_at": _text(data, "created_at"),
        "schema_version": SCHEMA_VERSION,
    }


# ---------------------------------------------------------------- one rule per kind of field


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_bool(value: Any) -> bool:
    """A bool, or numpy's (a setting computed with numpy, before the JSON round trip)."""
    kind = type(value)
    numpy_bool = kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")
    return isinstance(value, bool) or numpy_bool


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _count(data: dict[str, Any], key: str, *, minimum: int, optional: bool = False,
           prefix: str = "") -> int | None:
    """An integer of at least ``minimum``; None when ``optional`` and absent or null."""
    value = data.get(key)
    if value is None and optional:
        return None
    if not _is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise PlanFieldError(prefix + key, f"must be {kind}, got {value!r}")
    return int(value)


def _image_size(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(_is_int(side) and side >= 1 for side in value)):
        raise PlanFieldError("image_size", "must be null or [height, width] as two positive "
                                           f"integers, got {value!r}")
    return int(value[0]), int(value[1])


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not _is_bool(value):
        raise PlanFieldError(key, f"must be true or false, got {value!r}")
    return bool(value)


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    """One of ``choices``, or None when absent or null."""
    value = data.get(key)
    if value is not None and value not in choices:
        raise PlanFieldError(key, f"must be null or one of {', '.join(choices)}, got {value!r}")
    return value


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PlanFieldError(key, f"must be a string, got {value!r}")
    return value


def _record(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A nested JSON object (kept as a dict), or None when absent or null."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PlanFieldError(key, f"must be a JSON object, got {type(value).__name__}")
    return dict(value)


def _numbers(record: dict[str, Any] | None, name: str,
             keys: tuple[str, ...]) -> dict[str, Any] | None:
    """``record`` with the readings the Plan computes with checked: null or >= 0."""
    for key in keys:
        value = (record or {}).get(key)
        if value is not None and (not _is_number(value) or value < 0):
            raise PlanFieldError(f"{name}.{key}", f"must be null or a number >= 0, "
                                                  f"got {value!r}")
    return record


def _pipeline(value: Any) -> PipelineSettings:
    """The pipeline settings: each known key of the type of its default, then whatever
    ``PipelineSettings`` itself checks. Keys it does not know are ignored (newer writers)."""
    if not isinstance(value, dict):
        raise PlanFieldError("pipeline", f"must be a JSON object, got {type(value).__name__}")
    for spec in dataclasses.fields(PipelineSettings):
        if spec.name not in value:
            continue
        item = value[spec.name]
        expected: type[Any] = type(spec.default)
        ok = (_is_bool(item) if expected is bool
              else _is_int(item) if expected is int
              else isinstance(item, expected))
        if not ok:
            kind = {bool: "true or false", int: "an integer", str: "a string"}.get(
                expected, expected.__name__)
            raise PlanFieldError(f"pipeline.{spec.name}", f"must be {kind}, got {item!r}")
    try:
        return PipelineSettings.from_dict(value)
    except (AutobatchError, TypeError, ValueError) as exc:
        raise PlanFieldError("pipeline", f"is not a valid pipeline ({exc})") from None


def _learning_rate(value: Any) -> LearningRateScaling:
    if value is None:
        return LearningRateScaling()
    if not isinstance(value, dict):
        raise PlanFieldError("learning_rate",
                             f"must be a JSON object, got {type(value).__name__}")
    if "reference_batch_size" in value:
        _count(value, "reference_batch_size", minimum=1, prefix="learning_rate.")
    factor = value.get("factor", 1.0)
    if not _is_number(factor) or not math.isfinite(factor) or factor <= 0:
        raise PlanFieldError("learning_rate.factor", f"must be a number > 0, got {factor!r}")
    if value.get("rule", "none") not in LEARNING_RATE_RULES:
        raise PlanFieldError("learning_rate.rule", f"must be one of "
                             f"{', '.join(LEARNING_RATE_RULES)}, got {value.get('rule')!r}")
    if not isinstance(value.get("optimizer"), (str, type(None))):
        raise PlanFieldError("learning_rate.optimizer",
                             f"must be null or a string, got {value.get('optimizer')!r}")
    return LearningRateScaling.from_dict(value)


def _trials(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise PlanFieldError("trials", "must be a list of JSON objects")
    return list(value)


def _fingerprints(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PlanFieldError("fingerprints", "must be a JSON object of strings")
    return {str(k): v for k, v in value.items()}
