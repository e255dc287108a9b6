"""Make an autobatch study readable in optuna-dashboard: names and numbers as user attributes.

The dashboard lists a study's user attributes on its page and each trial's user attributes
in the trial table. The search sets the trial ones while a trial runs (Optuna refuses
attributes on finished trials); ``annotate_study`` adds the study-level ones from a plan,
which works on a study loaded from storage at any time.
"""

from __future__ import annotations

from typing import Any

from autobatch._report._format import fmt_bytes, fmt_rate, is_number, lookup

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


def study_user_attrs(plan: dict[str, Any]) -> dict[str, Any]:
    """The study-level user attributes for a plan: JSON values a person can read."""
    attrs: dict[str, Any] = {
        "autobatch_version": plan.get("autobatch_version"),
        "objective": "training examples per second (higher is better)",
        "chosen_batch_size": plan.get("batch_size"),
        "ceiling_batch_size": plan.get("ceiling_batch_size"),
        "examples_per_s": lookup(plan, "measured.examples_per_s"),
        "device": lookup(plan, "measured.device"),
        "num_examples": plan.get("num_examples"),
        "baseline_examples_per_s": lookup(plan, "baseline.examples_per_s"),
    }
    peak = lookup(plan, "measured.peak_memory_bytes")
    budget = lookup(plan, "measured.memory_budget_bytes")
    if is_number(peak):
        attrs["peak_memory"] = fmt_bytes(peak)
    if is_number(budget):
        attrs["memory_budget"] = fmt_bytes(budget)
    if is_number(attrs["examples_per_s"]):
        attrs["examples_per_s"] = fmt_rate(attrs["examples_per_s"])
    if is_number(attrs["baseline_examples_per_s"]):
        attrs["baseline_examples_per_s"] = fmt_rate(attrs["baseline_examples_per_s"])
    return {key: value for key, value in attrs.items() if value is not None}


def annotate_study(study: Any, plan: Any) -> dict[str, Any]:
    """Write a plan's summary into its Optuna study so optuna-dashboard reads well.

    Sets the study user attributes listed in ``STUDY_USER_ATTRS`` and, for a
    single-objective study without metric names, names the objective ``examples_per_s``.

    Args:
        study: an ``optuna.Study`` (for example ``optuna.load_study(...)`` on the plan's
            ``study.storage`` and ``study.study_name``).
        plan: the plan dict (or an object with ``to_dict()``).

    Returns:
        The attributes that were set.
    """
    from autobatch._report import plan_dict

    attrs = study_user_attrs(plan_dict(plan))
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    if len(study.directions) == 1 and not study.metric_names:
        import warnings

        import optuna

        # Experimental since Optuna 3.2 but stable in use; the warning would only be noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE_NAME])
    return attrs
