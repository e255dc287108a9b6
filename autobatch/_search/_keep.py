"""What a tune writes, and what becomes of each write that fails: its study (opened, and
written once, before any probe), the plan's ``output`` and the plan cache.

- the study: see ``_storage`` (a named storage that cannot be used is a one-line
  ``StorageError`` before any probe; the default one falls back to an in-memory study with
  a warning; a fault while the search writes is one line, and a rerun resumes);
- ``output`` is written first, then the cache: a cache that cannot be written is a warning
  and the plan is still returned; an ``output`` that cannot be written is a one-line
  ``PlanOutputError`` carrying the plan (and naming the cache file that keeps it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from autobatch._plan import Plan, save_cached_plan
from autobatch._plan._output import output_error
from autobatch._search._annotate import annotate_study
from autobatch._search._assemble import hardware_record, model_summary
from autobatch._search._config import TuneConfig
from autobatch._search._events import Emitter
from autobatch._search._job import TuneJob
from autobatch._search._storage import (
    StorageError,
    fallback_warning,
    is_storage_fault,
    storage_error,
)
from autobatch._search._study import (
    default_storage_url,
    fail_stale_trials,
    reset_and_open_study,
)

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)


def open_tune_study(job: TuneJob, config: TuneConfig,
                    emit: Emitter) -> tuple[optuna.Study, bool]:
    """The tune's study (a fresh one with ``force``), its stale trials failed, with the
    model, data and hardware it measures as user attributes; and whether it is in memory.

    Opening writes to the storage, so a storage that cannot be used is known before any
    probe: a storage the caller named is a one-line ``StorageError``; the default one (the
    user cache's SQLite file) is a warning, and the tune goes on with an in-memory study.
    """
    try:
        return _prepared_study(job, config, emit, in_memory=False), False
    except StorageError as exc:
        if config.storage is not None:
            raise
        reason: Exception = exc
    except Exception as exc:
        if not is_storage_fault(exc):
            raise
        if config.storage is not None:
            raise storage_error(config.storage, exc) from None
        reason = exc
    logger.warning(fallback_warning(default_storage_url(), reason))
    return _prepared_study(job, config, emit, in_memory=True), True


def _prepared_study(job: TuneJob, config: TuneConfig, emit: Emitter, *,
                    in_memory: bool) -> optuna.Study:
    study = reset_and_open_study(config.storage, job.study_name, seed=config.seed,
                                 force=config.force, in_memory=in_memory)
    stale = fail_stale_trials(study)
    if stale:
        emit("search", f"marked {len(stale)} trial(s) failed that a killed tune left running")
    study.set_user_attr("model", model_summary(job.model, image_size=job.size,
                                               channels=job.channels,
                                               num_classes=job.num_classes))
    study.set_user_attr("data", {**job.source.summary(), "num_examples": job.count})
    study.set_user_attr("hardware", hardware_record(job.env))
    return study


def keep_plan(plan: Plan, config: TuneConfig) -> None:
    """``output`` first, then the cache: a cache that cannot be written is a warning (the
    plan is returned); an ``output`` that cannot be written is a ``PlanOutputError`` that
    carries the plan, raised after the cache has kept it where it could."""
    failed: OSError | None = None
    if config.output is not None:
        try:
            plan.save(config.output)
        except OSError as exc:
            failed = exc
    kept_at = save_cached_plan(plan) if config.use_cache else None
    if failed is not None and config.output is not None:
        raise output_error(plan, config.output, failed, kept_at=kept_at)


def annotate_or_warn(study: optuna.Study, plan: Plan) -> None:
    """The plan's summary on the study; a storage that fails now costs the summary only."""
    try:
        annotate_study(study, plan)
    except Exception as exc:
        if not is_storage_fault(exc):
            raise
        logger.warning("could not write the plan's summary to the study: %s", exc)


def raise_storage_fault(exc: Exception, config: TuneConfig, *, in_memory: bool) -> None:
    """A storage fault while the search ran (the disk filled up, another process locked
    the database) raised as one line; anything else is left to the caller to re-raise."""
    if is_storage_fault(exc) and not isinstance(exc, OSError) and not in_memory:
        raise storage_error(config.storage or default_storage_url(), exc,
                            during_search=True) from None
