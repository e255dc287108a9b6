"""The plan: what ``tune`` decided, its JSON schema, fingerprints and the plan cache.

``_record`` (the Plan), ``_schema`` (the field rules of version 1, checked wherever a plan
is read), ``_learning_rate`` (LR scaling rules), ``_fingerprints``, ``_cache``,
``_geometry`` (image size and channels from the model), ``_dataset`` (the plan's pipeline:
the one place here that touches the user's data). No TensorFlow at import.
"""

from __future__ import annotations

from autobatch._plan._cache import load_cached_plan, plan_cache_path, save_cached_plan
from autobatch._plan._fingerprints import (
    combined_key,
    file_fingerprint,
    hardware_fingerprint,
    model_fingerprint,
    options_fingerprint,
    software_fingerprint,
)
from autobatch._plan._geometry import keras_file_input_shape, tune_geometry
from autobatch._plan._learning_rate import (
    DEFAULT_REFERENCE_BATCH_SIZE,
    LearningRateRule,
    LearningRateScaling,
    learning_rate_rule,
    learning_rate_scaling,
)
from autobatch._plan._paths import cache_root
from autobatch._plan._record import DEFAULT_PLAN_FILENAME, Plan, load_plan, steps_per_epoch
from autobatch._plan._schema import SCHEMA_VERSION, PlanFieldError, plan_fields, read_plan_json

__all__ = [
    "DEFAULT_PLAN_FILENAME",
    "DEFAULT_REFERENCE_BATCH_SIZE",
    "SCHEMA_VERSION",
    "LearningRateRule",
    "LearningRateScaling",
    "Plan",
    "PlanFieldError",
    "cache_root",
    "combined_key",
    "file_fingerprint",
    "hardware_fingerprint",
    "keras_file_input_shape",
    "learning_rate_rule",
    "learning_rate_scaling",
    "load_plan",
    "load_cached_plan",
    "model_fingerprint",
    "options_fingerprint",
    "plan_cache_path",
    "plan_fields",
    "read_plan_json",
    "save_cached_plan",
    "software_fingerprint",
    "steps_per_epoch",
    "tune_geometry",
]
