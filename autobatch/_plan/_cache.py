"""The plan cache: one JSON file per combination of fingerprints, under the user cache folder.

A cached file that cannot be read or breaks the schema is ignored with a warning (the tune
then runs again); it never ends a tune with a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

from autobatch._atomic import atomic_write_text
from autobatch._errors import PlanError
from autobatch._plan._fingerprints import combined_key
from autobatch._plan._paths import cache_root
from autobatch._plan._record import Plan

logger = logging.getLogger(__name__)


def plan_cache_path(fingerprints: dict[str, str]) -> Path:
    """Where the plan for these fingerprints is cached."""
    return cache_root() / "plans" / f"plan-{combined_key(fingerprints)}.json"


def load_cached_plan(fingerprints: dict[str, str]) -> Plan | None:
    """The cached plan for exactly these fingerprints, or None.

    A missing file, one that cannot be read (a folder in its place, no permission, bytes
    that are not UTF-8 JSON) or one that breaks the plan schema is None: a broken file is
    logged as a warning and tuned again, never raised.
    """
    path = plan_cache_path(fingerprints)
    try:
        if not path.is_file():
            return None
        plan = Plan.load(path)
    except (PlanError, OSError) as exc:
        logger.warning("ignoring unreadable cached plan %s: %s", path, exc)
        return None
    if plan.fingerprints != fingerprints:
        logger.info("cached plan %s has other fingerprints; tuning again", path)
        return None
    plan.cache_hit = True
    return plan


def save_cached_plan(plan: Plan) -> Path:
    """Store ``plan`` in the cache under its own fingerprints (atomically)."""
    path = plan_cache_path(plan.fingerprints)
    atomic_write_text(path, plan.to_json())
    return path
