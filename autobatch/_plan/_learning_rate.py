"""Learning-rate scaling for the tuned batch size: the rule per optimizer and the factor."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from autobatch._errors import UsageError

DEFAULT_REFERENCE_BATCH_SIZE = 32

LearningRateRule = Literal["linear", "sqrt", "none"]
LEARNING_RATE_RULES: tuple[str, ...] = ("linear", "sqrt", "none")

# Optimizer class names (lower case) by LR scaling rule. SGD-family: the linear scaling rule
# (Goyal et al. 2017). Adaptive (Adam-family): square-root scaling (Hoffer et al. 2017;
# Malladi et al. 2022). Layer-wise adaptive optimizers (LARS/LAMB) and learning-rate-free
# ones are built for large batches or take no LR, so they are left alone.
_LINEAR_OPTIMIZERS = frozenset({"sgd", "momentum", "nesterov"})
_SQRT_OPTIMIZERS = frozenset(
    {"adam", "adamw", "adamax", "nadam", "amsgrad", "rmsprop", "adagrad", "lion", "adafactor"}
)


@dataclass(frozen=True)
class LearningRateScaling:
    """How ``fit`` scales the model's learning rate for the tuned batch size.

    ``factor`` multiplies the learning rate the model was compiled with, which is assumed to
    have been chosen for ``reference_batch_size``.
    """

    reference_batch_size: int = DEFAULT_REFERENCE_BATCH_SIZE
    factor: float = 1.0
    rule: LearningRateRule = "none"
    optimizer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LearningRateScaling:
        """Rebuild from ``to_dict()`` output; keys it does not know are ignored, None or an
        empty dict is the default (no scaling). A plan's copy is checked by the plan schema."""
        if not data:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def learning_rate_rule(optimizer_name: str | None) -> LearningRateRule:
    """The scaling rule for an optimizer class name: linear for SGD, sqrt for Adam-family.

    Args:
        optimizer_name: the class name (``"SGD"``, ``"AdamW"``, ...) or a Keras string
            identifier (``"adam"``); None or unknown names get ``"none"``.
    """
    if not optimizer_name:
        return "none"
    name = optimizer_name.strip().lower().replace("_", "")
    if name.startswith("legacy") or name.startswith("keras."):
        name = name.rsplit(".", 1)[-1].replace("legacy", "")
    if name in _LINEAR_OPTIMIZERS:
        return "linear"
    if name in _SQRT_OPTIMIZERS:
        return "sqrt"
    return "none"


def rule_factor(rule: str, ratio: float) -> float:
    """The learning-rate factor of ``rule`` for a batch ``ratio`` times the reference."""
    return {"linear": ratio, "sqrt": math.sqrt(ratio)}.get(rule, 1.0)


def learning_rate_scaling(
    optimizer_name: str | None,
    batch_size: int,
    reference_batch_size: int = DEFAULT_REFERENCE_BATCH_SIZE,
) -> LearningRateScaling:
    """The learning-rate factor for training at ``batch_size`` instead of the reference.

    Args:
        optimizer_name: optimizer class name, e.g. ``type(model.optimizer).__name__``.
        batch_size: the global batch size the plan trains at.
        reference_batch_size: the batch size the compiled learning rate was chosen for.

    Returns:
        ``factor = batch_size / reference`` (linear), its square root (sqrt), or 1.0.

    Raises:
        UsageError: a batch size below 1.
    """
    if batch_size < 1:
        raise UsageError(f"{{param}} must be >= 1, got {batch_size}", parameter="batch_size")
    if reference_batch_size < 1:
        raise UsageError(f"{{param}} must be >= 1, got {reference_batch_size}",
                         parameter="reference_batch_size")
    rule = learning_rate_rule(optimizer_name)
    factor = rule_factor(rule, batch_size / reference_batch_size)
    return LearningRateScaling(
        reference_batch_size=reference_batch_size,
        factor=float(factor),
        rule=rule,
        optimizer=optimizer_name,
    )
