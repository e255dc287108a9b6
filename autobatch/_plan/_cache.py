"""The plan cache: one JSON file per combination of fingerprints, under the user cache folder.

The cache is an optimisation, never a reason for a tune to fail: a cached file that cannot
be read (no permission, bytes that are not UTF-8 JSON, a folder in its place) or breaks the
schema is ignored with a warning (the tune then runs again); a cache that cannot be written
(the cache folder is a file or read-only, the disk is full) is a warning and the plan is
returned uncached.
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


def save_cached_plan(plan: Plan) -> Path | None:
    """Store ``plan`` in the cache under its own fingerprints (atomically); where it went.

    A cache that cannot be written is logged as a warning and None returned (the plan is
    not cached; nothing else is lost): an unwritable cache never ends a finished tune.
    """
    path = plan_cache_path(plan.fingerprints)
    try:
        atomic_write_text(path, plan.to_json())
    except OSError as exc:
        logger.warning("could not cache the plan in %s (%s); the next tune with these "
                       "options runs again (set AUTOBATCH_CACHE_DIR to a writable folder)",
                       path.parent, exc.strerror or exc)
        return None
    return path
