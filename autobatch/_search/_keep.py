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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch import __version__
from autobatch._plan import Plan, load_cached_plan, save_cached_plan
from autobatch._plan._output import output_error
from autobatch._search._annotate import annotate_study
from autobatch._search._assemble import hardware_record, model_summary
from autobatch._search._config import TuneConfig
from autobatch._search._effort import cached_plan_fits_the_job
from autobatch._search._events import Emitter
from autobatch._search._job import TuneJob
from autobatch._search._plan_store import load_shared_plan, save_shared_plan
from autobatch._search._shared import SharedStudy
from autobatch._search._storage import (
    StorageError,
    fallback_warning,
    is_shared,
    is_storage_fault,
    redact_url,
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


def cached_plan(job: TuneJob, config: TuneConfig, emit: Emitter) -> Plan | None:
    """The plan cached for these fingerprints, here or in a shared storage (also written to
    ``output``, and a shared one to the local cache), or None."""
    cached = load_cached_plan(job.fingerprints)
    if cached is None:
        cached = load_shared_plan(config.storage, job.fingerprints)
        if cached is not None:
            cached.path = str(save_cached_plan(cached) or "") or None
            emit("cache", f"plan kept in {redact_url(config.storage or '')}")
    if cached is None:
        return None
    if not cached_plan_fits_the_job(cached, config, job.count):
        emit("cache", "the cached plan was sized to a smaller job: tuning again")
        return None
    emit("cache", f"cached plan {cached.path}")
    if config.output is not None:
        kept_at = Path(cached.path) if cached.path else None
        try:
            cached.save(config.output)
        except OSError as exc:
            raise output_error(cached, config.output, exc, kept_at=kept_at) from None
    cached.cache_hit = True
    return cached


def join_shared(study: optuna.Study, config: TuneConfig, *, in_memory: bool,
                emit: Emitter) -> SharedStudy | None:
    """This process's membership of the study, where other processes may share it (a
    journal file, a database server); None for SQLite and memory."""
    if in_memory or not is_shared(config.storage):
        return None
    try:
        shared = SharedStudy.join(study)
    except Exception as exc:
        if is_storage_fault(exc):
            raise storage_error(config.storage or "", exc) from None
        raise
    emit("search", f"shared study {study.study_name}: member {shared.member.number}")
    return shared


def _other_hardware(study: optuna.Study, job: TuneJob) -> int:
    """Studies in the same storage of this model, data and options on other hardware."""
    import optuna

    mine = {k: v for k, v in job.fingerprints.items() if k != "hardware"}
    count = 0
    for summary in optuna.get_all_study_summaries(study._storage):
        theirs = summary.user_attrs.get("fingerprints") or {}
        if (summary.study_name != study.study_name and isinstance(theirs, dict)
                and {k: v for k, v in theirs.items() if k != "hardware"} == mine
                and theirs.get("hardware") != job.fingerprints.get("hardware")):
            count += 1
    return count


def _prepared_study(job: TuneJob, config: TuneConfig, emit: Emitter, *,
                    in_memory: bool) -> optuna.Study:
    study = reset_and_open_study(config.storage, job.study_name, seed=config.seed,
                                 force=config.force, in_memory=in_memory)
    made_by = study.user_attrs.get("autobatch_version")
    if made_by is not None and made_by != __version__:
        raise StorageError(
            f"the study {job.study_name} in {redact_url(config.storage or 'the cache')} was "
            f"made by autobatch {made_by}, and this is {__version__}: pass --force to start "
            "it afresh, or another {p:storage}", parameter="storage")
    study.set_user_attr("autobatch_version", __version__)
    study.set_user_attr("fingerprints", dict(job.fingerprints))
    if is_shared(config.storage) and not in_memory:
        others = _other_hardware(study, job)
        if others:
            emit("search", f"{others} other machine(s) tuned this model and data in this "
                 f"storage on other hardware: this one gets its own study {job.study_name}")
    stale = fail_stale_trials(study)
    if stale:
        emit("search", f"marked {len(stale)} trial(s) failed that a killed tune left running")
    study.set_user_attr("model", model_summary(job.model, image_size=job.size,
                                               channels=job.channels,
                                               num_classes=job.num_classes))
    study.set_user_attr("data", {**job.source.summary(), "num_examples": job.count})
    study.set_user_attr("hardware", hardware_record(job.env))
    return study


def keep_plan(plan: Plan, config: TuneConfig, storage: Any = None) -> None:
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
    if config.use_cache:
        save_shared_plan(config.storage, plan, storage)
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
