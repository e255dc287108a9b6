"""Learning-rate scaling: the rule per optimizer, the factor, and bad batch sizes."""

from __future__ import annotations

import pytest

from autobatch._errors import AutobatchError, UsageError
from autobatch._plan import LearningRateScaling, learning_rate_rule, learning_rate_scaling


@pytest.mark.parametrize(
    ("name", "rule"),
    [("SGD", "linear"), ("sgd", "linear"), ("Adam", "sqrt"), ("AdamW", "sqrt"),
     ("Nadam", "sqrt"), ("RMSprop", "sqrt"), ("Adagrad", "sqrt"), ("LegacySGD", "linear"),
     ("Lamb", "none"), ("Ftrl", "none"), ("MyOptimizer", "none"), (None, "none")],
)
def test_learning_rate_rule(name: str | None, rule: str) -> None:
    assert learning_rate_rule(name) == rule


def test_learning_rate_factor() -> None:
    assert learning_rate_scaling("SGD", 128).factor == pytest.approx(4.0)
    assert learning_rate_scaling("Adam", 128).factor == pytest.approx(2.0)
    assert learning_rate_scaling("Adam", 8).factor == pytest.approx(0.5)
    assert learning_rate_scaling("Lamb", 128).factor == 1.0
    assert learning_rate_scaling("SGD", 64, reference_batch_size=256).factor == pytest.approx(0.25)
    assert LearningRateScaling.from_dict(None) == LearningRateScaling()


@pytest.mark.parametrize(("batch_size", "reference", "parameter"),
                         [(0, 32, "batch_size"), (-3, 32, "batch_size"),
                          (64, 0, "reference_batch_size")])
def test_learning_rate_scaling_refuses_a_batch_below_one(batch_size: int, reference: int,
                                                         parameter: str) -> None:
    with pytest.raises(UsageError) as info:
        learning_rate_scaling("SGD", batch_size, reference_batch_size=reference)
    assert isinstance(info.value, AutobatchError)
    assert info.value.parameter == parameter
    assert str(info.value).startswith(f"{parameter} must be >= 1")
    assert info.value.message_for("--flag").startswith("--flag must be >= 1")
