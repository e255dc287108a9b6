"""One study shared by several tune processes (on one host through a journal file, across
machines through a database server).

How they share it, with nothing but the storage between them:

- Members: each process holds one RUNNING trial of the sibling study ``<name>:workers``
  while it tunes. The live member with the lowest number leads: it measures the untuned
  default, the ceiling, XLA and the pixels' dtype, and runs the verify phase; the others
  wait for what it stores on the study. A leader that dies (its member trial failed as
  stale) is replaced by the next member, which finds on the study what the dead one
  already stored and goes on from there.
- Slots: a throughput trial runs only under a RUNNING trial of ``<name>:slots``, admitted
  when fewer than the target trials are live (running or complete) before it. Trial
  numbers come from the storage under a lock (``SELECT ... FOR UPDATE`` on a server, the
  journal's file lock), so admission is exact: the study ends with the requested number of
  finished trials however many processes work on it.
- Stale trials: a process that is gone (``kill -9``, a lost machine) stops its heartbeats
  (a server; every ``HEARTBEAT_S``) and, on its own host, its pid ends. Any live process
  fails its trials (a heartbeat older than ``GRACE_S``, or a pid that is gone); its
  throughput point is enqueued again, and its slot, failed too, frees room for the retry.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autobatch._search._owners import (
    OWNER_ATTR,
    fail_stale_trials,
    process_identity,
    retry_stale,
)
from autobatch._search._storage import HEARTBEAT_S, own_heartbeats

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

POLL_S = 1.0
"""How often a waiting process reads the study again."""
def fail_stale(study: optuna.Study) -> list[int]:
    """Fail the study's stale trials: by heartbeat (a server), by pid (this host)."""
    import optuna

    before = {t.number for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # calls retry_stale for each (a server)
    by_beat = before - {t.number for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    by_pid = fail_stale_trials(study, on_failed=lambda t: retry_stale(study, t))
    return sorted(by_beat | set(by_pid))


@dataclass
class SharedStudy:
    """This process's membership of a shared study (``join``; ``leave`` when done)."""

    study: optuna.Study
    workers: optuna.Study
    slots: optuna.Study
    member: optuna.Trial
    identity: dict[str, Any]
    _held: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _beat: threading.Thread | None = None

    @classmethod
    def join(cls, study: optuna.Study) -> SharedStudy:
        import optuna

        def sibling(suffix: str) -> optuna.Study:
            return optuna.create_study(storage=study._storage,
                                       study_name=f"{study.study_name}:{suffix}",
                                       direction="maximize", load_if_exists=True)

        workers, slots = sibling("workers"), sibling("slots")
        identity = process_identity()
        for leftover in (study, workers, slots):
            fail_stale_trials(leftover, earlier_self=identity,
                              on_failed=functools.partial(retry_stale, leftover))
        with own_heartbeats():
            member = workers.ask()
        member.set_user_attr(OWNER_ATTR, identity)
        shared = cls(study=study, workers=workers, slots=slots, member=member,
                     identity=identity)
        shared.hold(member)
        shared._start_heartbeat()
        logger.info("joined shared study %s as member %d", study.study_name, member.number)
        return shared

    # ------------------------------------------------------------ members and leader

    def leader(self) -> int | None:
        """The lowest live member's number (stale members failed first)."""
        import optuna

        fail_stale(self.workers)
        running = [t.number for t in self.workers.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
        return min(running) if running else None

    def leads(self) -> bool:
        return self.leader() == self.member.number

    def lead_or_wait(self, key: str, deadline: float,
                     on_wait: Callable[[], None] | None = None) -> bool:
        """True when this process must do the work that stores ``key`` (it leads, and the
        study does not hold ``key`` yet); False when another process stored it. Waits while
        another member leads; a leader that dies hands the work to the next one."""
        waited = False
        while True:
            if key in self.study.user_attrs:
                return False
            if self.leads():
                return True
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if time.perf_counter() > deadline:
                return True  # out of time waiting: do it ourselves rather than return nothing
            time.sleep(POLL_S)

    def store(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    # ------------------------------------------------------------ slots

    def claim_slot(self, target: int, deadline: float) -> optuna.Trial | None:
        """A slot for one throughput trial, or None once the target is reached by trials
        finished or running elsewhere that do not die (it waits on those)."""
        import optuna

        live_states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE)
        while True:
            fail_stale(self.study)
            fail_stale(self.slots)
            live = self.slots.get_trials(deepcopy=False, states=live_states)
            if len(live) < target:
                with own_heartbeats():
                    slot = self.slots.ask()
                slot.set_user_attr(OWNER_ATTR, self.identity)
                before = [t for t in self.slots.get_trials(deepcopy=False, states=live_states)
                          if t.number < slot.number]
                if len(before) < target:
                    self.hold(slot)
                    return slot
                self.slots.tell(slot, state=optuna.trial.TrialState.PRUNED)  # lost the race
                continue
            if not any(t.state == optuna.trial.TrialState.RUNNING for t in live):
                return None  # the target is reached, nothing in flight can die
            if time.perf_counter() > deadline:
                return None
            time.sleep(POLL_S)

    def release_slot(self, slot: optuna.Trial, trial_number: int | None) -> None:
        """The slot's trial was told: the slot completes (its value the trial's number);
        without a trial (the tune failed first), the slot fails and frees its room."""
        import optuna

        self._held.discard(slot._trial_id)
        # skip_if_finished: another process that judged this one gone may have failed the
        # slot already; the trial's own result stands either way.
        if trial_number is None:
            self.slots.tell(slot, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        else:
            self.slots.tell(slot, float(trial_number), skip_if_finished=True)

    def finished_trials(self) -> list[optuna.trial.FrozenTrial]:
        """The study's throughput trials that finished (not failed), from every process."""
        import optuna

        return self.study.get_trials(deepcopy=False, states=(
            optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))

    # ------------------------------------------------------------ heartbeats

    def hold(self, trial: optuna.Trial) -> None:
        self._held.add(trial._trial_id)

    def _start_heartbeat(self) -> None:
        storage = self.study._storage
        if not (hasattr(storage, "record_heartbeat")
                and storage.get_heartbeat_interval() is not None):  # type: ignore[attr-defined]
            return  # a journal file: one host, stale trials are found by pid

        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                for trial_id in list(self._held) + self._own_running():
                    try:
                        storage.record_heartbeat(trial_id)
                    except Exception as exc:  # noqa: BLE001 - the database went away
                        logger.debug("heartbeat for trial %d failed: %s", trial_id, exc)
        for trial_id in self._held:
            storage.record_heartbeat(trial_id)
        self._beat = threading.Thread(target=beat, name="autobatch-heartbeat", daemon=True)
        self._beat.start()

    def _own_running(self) -> list[int]:
        """The throughput trials this process runs (asked by ``run_trial``)."""
        import optuna

        try:
            return [t._trial_id for t in self.study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                if (t.user_attrs.get(OWNER_ATTR) or {}) == self.identity]
        except Exception:  # noqa: BLE001 - the database went away; the tune will say so
            return []

    def leave(self, *, failed: bool = False) -> None:
        """Stop the heartbeats and end the membership (failed: the next member leads)."""
        import optuna

        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=HEARTBEAT_S + 1)
        try:
            if failed:
                self.workers.tell(self.member, state=optuna.trial.TrialState.FAIL)
            else:
                self.workers.tell(self.member, 1.0)
        except Exception as exc:  # noqa: BLE001 - the database went away
            logger.debug("could not end membership %d: %s", self.member.number, exc)
