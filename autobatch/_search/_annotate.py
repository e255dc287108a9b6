"""The study's own record of its plan: names and numbers as study user attributes, so that
optuna-dashboard reads well.

The dashboard lists a study's user attributes on its page and each trial's user attributes
in the trial table. The search sets the trial ones while a trial runs (Optuna refuses
attributes on finished trials); ``annotate_study`` adds the study-level ones from a plan,
which works on a study loaded from storage at any time.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from autobatch._sizes import format_bytes

if TYPE_CHECKING:
    import optuna

    from autobatch._plan import Plan

OBJECTIVE_NAME = "examples_per_s"
"""The metric name the dashboard shows for the objective value."""

STUDY_USER_ATTRS = (
    "autobatch_version",
    "objective",
    "chosen_batch_size",
    "ceiling_batch_size",
    "examples_per_s",
    "peak_memory",
    "memory_budget",
    "device",
    "num_examples",
    "baseline_examples_per_s",
)
"""Study user attributes ``annotate_study`` sets (absent plan parts are left out).

The search itself sets ``model``, ``data``, ``hardware``, ``baseline``, ``ceiling``,
``xla_ok`` and ``search_space`` on the study; these names stay clear of them.
"""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _part(plan: dict[str, Any], section: str, key: str) -> Any:
    part = plan.get(section)
    return part.get(key) if isinstance(part, dict) else None


def study_user_attrs(plan: dict[str, Any]) -> dict[str, Any]:
    """The study-level user attributes for a plan: JSON values a person can read."""
    attrs: dict[str, Any] = {
        "autobatch_version": plan.get("autobatch_version"),
        "objective": "training examples per second (higher is better)",
        "chosen_batch_size": plan.get("batch_size"),
        "ceiling_batch_size": plan.get("ceiling_batch_size"),
        "examples_per_s": _part(plan, "measured", "examples_per_s"),
        "device": _part(plan, "measured", "device"),
        "num_examples": plan.get("num_examples"),
        "baseline_examples_per_s": _part(plan, "baseline", "examples_per_s"),
    }
    peak = _part(plan, "measured", "peak_memory_bytes")
    budget = _part(plan, "measured", "memory_budget_bytes")
    if _number(peak):
        attrs["peak_memory"] = format_bytes(peak)
    if _number(budget):
        attrs["memory_budget"] = format_bytes(budget)
    for rate in ("examples_per_s", "baseline_examples_per_s"):
        if _number(attrs[rate]):
            attrs[rate] = f"{float(attrs[rate]):,.1f} examples/s"
    return {key: value for key, value in attrs.items() if value is not None}


def annotate_study(study: optuna.Study, plan: Plan | dict[str, Any]) -> dict[str, Any]:
    """Write a plan's summary into its Optuna study so optuna-dashboard reads well.

    Sets the study user attributes listed in ``STUDY_USER_ATTRS`` and, for a
    single-objective study without metric names, names the objective ``examples_per_s``.

    Args:
        study: an ``optuna.Study`` (for example ``optuna.load_study(...)`` on the plan's
            ``study.storage`` and ``study.study_name``).
        plan: the plan, or its dict.

    Returns:
        The attributes that were set.
    """
    attrs = study_user_attrs(plan if isinstance(plan, dict) else plan.to_dict())
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    if len(study.directions) == 1 and not study.metric_names:
        import optuna

        # Experimental since Optuna 3.2 but stable in use; the warning would only be noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE_NAME])
    return attrs
