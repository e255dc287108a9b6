"""``fit`` under a plan's memory levers (real TensorFlow): a built-in SPEC is rebuilt under
the plan's ``mixed_precision`` policy and trains in it; a model the caller built trains as
given, with one line saying how to build it the way the plan measured."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import autobatch
from autobatch._models import resolve_model
from autobatch._models._levers import levers_in_effect
from autobatch._plan import Plan
from autobatch._settings import PipelineSettings

pytestmark = pytest.mark.slow


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(64, 32, 32, 3), dtype=np.uint8), np.arange(64) % 2


def _plan(**levers: str) -> Plan:
    return Plan(batch_size=16, num_examples=64, ceiling_batch_size=32,
                pipeline=PipelineSettings(num_parallel_calls=1, prefetch=1),
                image_size=(32, 32), **levers)  # type: ignore[arg-type]


def test_a_spec_trains_under_the_plans_policy() -> None:
    history = autobatch.fit("small_cnn", _arrays(), image_size=32, epochs=1, verbose=0,
                            plan=_plan(mixed_precision="mixed_bfloat16"))
    assert levers_in_effect(history.model)["compute_dtype"] == "bfloat16"
    assert history.history["examples_seen"] == [64]
    plain = autobatch.fit("small_cnn", _arrays(), image_size=32, epochs=1, verbose=0,
                          plan=_plan())
    assert levers_in_effect(plain.model)["compute_dtype"] == "float32"


def test_a_built_model_trains_as_given_with_the_hint(caplog: pytest.LogCaptureFixture) -> None:
    model = resolve_model("small_cnn", num_classes=2, image_size=(32, 32), channels=3)
    with caplog.at_level(logging.WARNING, logger="autobatch"):
        history = autobatch.fit(model, _arrays(), epochs=1, verbose=0,
                                plan=_plan(mixed_precision="mixed_bfloat16"))
    assert history.model is model
    assert levers_in_effect(model)["compute_dtype"] == "float32"
    hints = [r.getMessage() for r in caplog.records if "set_global_policy" in r.getMessage()]
    assert len(hints) == 1 and "'mixed_bfloat16'" in hints[0]
