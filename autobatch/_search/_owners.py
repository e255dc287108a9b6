"""Who runs a trial, and what becomes of a trial whose process is gone: its owner recorded
(host, pid, start time), stale trials failed (by pid on this host; a database server's
heartbeats are Optuna's), and a stale throughput trial's point enqueued again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)


OWNER_ATTR = "owner"
"""Trial user attribute naming the process that runs it: ``{host, pid, started}``."""


def process_identity(pid: int | None = None) -> dict[str, Any]:
    import socket

    import psutil

    process = psutil.Process(pid)
    return {"host": socket.gethostname(), "pid": process.pid,
            "started": round(process.create_time(), 2)}


STARTED_SLACK_S = 2.0
"""How far the owner's recorded start time may be from the live pid's and still be it."""

RETRY_ATTR = "retry_of"
"""User attribute of a trial enqueued again for a stale one: that trial's number."""


def retry_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue a stale throughput trial's point again (Optuna's heartbeat callback and the
    pid check both end here); trials of a shared study's siblings are not retried."""
    if ":" in study.study_name or not trial.params:
        return
    study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: trial.number})
    logger.warning("trial %d's process is gone; its point is enqueued again", trial.number)


def fail_stale_trials(study: optuna.Study, *,
                      on_failed: Callable[[optuna.trial.FrozenTrial], None] | None = None,
                      earlier_self: dict[str, Any] | None = None) -> list[int]:
    """Fail the RUNNING trials whose process is gone (killed with SIGKILL, a lost session),
    calling ``on_failed`` for each this process failed (another may fail it first).

    Only trials owned by a process on this host can be checked by pid (other hosts' are
    left to heartbeats); a trial with no owner (its process died between ask and the first
    write) is stale once older than ``GRACE_S``. Trials owned by ``earlier_self`` (this very
    process, whose earlier tune failed when the database went away and could not say so)
    are stale too, though its pid lives. Returns the trial numbers failed.
    """
    import datetime
    import socket

    import optuna
    import psutil

    from autobatch._search._storage import GRACE_S

    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER_ATTR) or {}
        if not owner:
            start = trial.datetime_start
            age = ((datetime.datetime.now(start.tzinfo) - start).total_seconds() if start
                   else 0.0)
            if age < GRACE_S:
                continue
        elif earlier_self is not None and owner == earlier_self:
            pass  # this process's earlier tune left it
        elif owner.get("host") != host:
            continue
        else:
            try:
                started = process_identity(int(owner["pid"]))["started"]
                # psutil derives the start time from the boot time each process reads once,
                # and the kernel's btime can shift by a second: a pid reused within
                # STARTED_SLACK_S of the owner's start is not a case worth a false verdict.
                alive = abs(float(started) - float(owner["started"])) <= STARTED_SLACK_S
            except (psutil.Error, KeyError, TypeError, ValueError):
                alive = False
            if alive:
                continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            continue  # another process failed it first
        failed.append(trial.number)
        logger.warning("trial %d was left RUNNING by a process that is gone (pid %s); marked "
                       "failed", trial.number, owner.get("pid"))
        if on_failed is not None:
            on_failed(trial)
    return failed
