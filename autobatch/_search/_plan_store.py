"""Plans kept in a shared study storage (a database server, a journal file): the other
nodes of a cluster, or the next run of a scheduled job on a fresh container, get the plan
without tuning, and without TensorFlow.

The plans live as user attributes of one study, ``autobatch-plans``, keyed as the local
plan cache is (``plan-<key of the fingerprints>``), so a plan is found only for the same
model, data, hardware, TensorFlow and options.
"""

from __future__ import annotations

import logging
from typing import Any

from autobatch._plan import Plan
from autobatch._plan._fingerprints import combined_key
from autobatch._search._storage import is_shared, make_storage, redact_url

logger = logging.getLogger(__name__)

PLANS_STUDY = "autobatch-plans"


def _key(fingerprints: dict[str, str]) -> str:
    return f"plan-{combined_key(fingerprints)}"


def load_shared_plan(url: str | None, fingerprints: dict[str, str]) -> Plan | None:
    """The plan the shared storage keeps for these fingerprints, or None (none kept, or a
    storage that cannot be read now: the tune that follows says why, in one line)."""
    if not is_shared(url):
        return None
    assert url is not None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = make_storage(url)
        study_id = storage.get_study_id_from_name(PLANS_STUDY)
        data: Any = storage.get_study_user_attrs(study_id).get(_key(fingerprints))
    except KeyError:
        return None  # no plan was ever kept there
    except Exception as exc:  # noqa: BLE001 - reading a cache never fails the tune
        logger.warning("could not read the plans kept in %s: %s", redact_url(url),
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    if not isinstance(data, dict):
        return None
    try:
        plan = Plan.from_dict(data)
    except Exception as exc:  # noqa: BLE001 - a plan of another autobatch version
        logger.warning("the plan kept in %s cannot be read (%s); tuning again",
                       redact_url(url), exc)
        return None
    plan.path = None
    return plan


def save_shared_plan(url: str | None, plan: Plan, storage: Any = None) -> bool:
    """Keep the plan in the shared storage (``storage``: the tune's own, already open); a
    storage that fails now is a warning."""
    if not is_shared(url) or not plan.fingerprints:
        return False
    assert url is not None
    import optuna

    try:
        storage = storage if storage is not None else make_storage(url)
        study = optuna.create_study(storage=storage, study_name=PLANS_STUDY,
                                    load_if_exists=True)
        study.set_user_attr(_key(plan.fingerprints), plan.to_dict())
    except Exception as exc:  # noqa: BLE001 - the plan is still returned and cached
        logger.warning("could not keep the plan in %s: %s", redact_url(url),
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return True
