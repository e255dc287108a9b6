"""JSON encoding shared by the plan file and the fingerprints: one encoder, one canonical form."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from autobatch._errors import PlanError


def json_default(value: Any) -> Any:
    """What ``json.dumps`` writes for values it does not know: dataclasses (their
    ``to_dict()``), paths, sets and tuples, numpy scalars.

    Raises:
        PlanError: any other type.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise PlanError(f"a {type(value).__name__} cannot be written to a plan or fingerprint "
                    "as JSON; pass plain numbers, strings, lists and dicts")


def canonical_json(value: Any) -> str:
    """``value`` as compact JSON with sorted keys: equal data, equal text (for hashing)."""
    return json.dumps(value, sort_keys=True, default=json_default, separators=(",", ":"))
