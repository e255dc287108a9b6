"""The report's door to the study's record (``autobatch._search._annotate``): annotate a
study from a plan given as a dict, a ``Plan`` or a plan file."""

from __future__ import annotations

from typing import Any

from autobatch._report._load import plan_dict
from autobatch._search._annotate import (
    OBJECTIVE_NAME,
    STUDY_USER_ATTRS,
    study_user_attrs,
)
from autobatch._search._annotate import annotate_study as _annotate_study

__all__ = ["OBJECTIVE_NAME", "STUDY_USER_ATTRS", "annotate_study", "study_user_attrs"]


def annotate_study(study: Any, plan: Any) -> dict[str, Any]:
    """Write a plan's summary into its Optuna study so optuna-dashboard reads well
    (``autobatch._search._annotate.annotate_study``).

    Args:
        study: an ``optuna.Study`` (for example ``optuna.load_study(...)`` on the plan's
            ``study.storage`` and ``study.study_name``).
        plan: the plan dict, an object with ``to_dict()``, or a plan file.

    Returns:
        The attributes that were set.
    """
    return _annotate_study(study, plan_dict(plan))
