"""A plan for the report: read from a file, a ``Plan`` or a dict, and checked against the
plan schema (the rules ``Plan.from_dict`` applies everywhere a plan is read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autobatch._errors import PlanError, UsageError
from autobatch._plan import Plan, PlanFieldError, read_plan_json

SUPPORTED_SCHEMA_VERSIONS = (1,)


def check_plan_dict(data: Any, source: str = "plan") -> dict[str, Any]:
    """Check ``data`` against the plan schema (the rules ``Plan.from_dict`` applies
    everywhere a plan is read); return it unchanged.

    Raises:
        PlanError: not a JSON object, no ``schema_version`` or ``batch_size``, a version
            this autobatch does not read, or a field that breaks its rule (named).
    """
    if not isinstance(data, dict):
        raise PlanError(f"{source} is not an autobatch plan: expected a JSON object, got "
                        f"{type(data).__name__}; pass the file written by `autobatch tune`")
    if "schema_version" not in data or "batch_size" not in data:
        raise PlanError(f"{source} is not an autobatch plan: it has no schema_version or "
                        "batch_size; pass the file written by `autobatch tune`")
    version = data["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        readable = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise PlanError(f"{source} has plan schema version {version!r}, but this autobatch "
                        f"reads version {readable}; re-run `autobatch tune` or upgrade autobatch")
    try:
        Plan.from_dict(data)
    except PlanFieldError as exc:
        raise PlanFieldError(exc.field, exc.problem,
                             message=f"{source} is not a valid autobatch plan: {exc}") from None
    return data


def load_plan_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a plan JSON file into a dict, checked against the plan schema.

    Raises:
        UsageError: the file does not exist or is a folder.
        PlanError: unreadable, not UTF-8 JSON, or not a valid plan of a known schema version.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"plan file {str(path)!r} does not exist; pass the JSON file "
                         "written by `autobatch tune`")
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a folder; pass the plan JSON file inside it")
    return check_plan_dict(read_plan_json(path), repr(str(path)))


def plan_dict(plan: Any) -> dict[str, Any]:
    """A plan as a dict, from a dict, an object with ``to_dict()``, or a file path."""
    if isinstance(plan, (str, os.PathLike)):
        return load_plan_dict(plan)
    if hasattr(plan, "to_dict"):
        return check_plan_dict(plan.to_dict())
    return check_plan_dict(plan)
