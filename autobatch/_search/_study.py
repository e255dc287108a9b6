"""The Optuna study: its storage and name, opening (or resetting) it, and running one trial
(ask, probe once or twice, tell), with the trials a killed tune left RUNNING failed.

Every trial is one short probe in the reused worker (throughput figures need no fresh
worker); a promising trial is measured twice and scored by the median, a poor one is pruned
after its first measurement. Storage is an Optuna storage URL (an embedded SQLite file in
the user cache by default), the study name comes from the fingerprints, so an interrupted
tune resumes from its stored trials. Optuna is imported lazily (it is not on the cache-hit
path).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from autobatch._plan import cache_root, combined_key
from autobatch._probe import ProbeRunner
from autobatch._probe._types import ProbeResult
from autobatch._search._owners import (
    OWNER_ATTR,
    RETRY_ATTR,
    fail_stale_trials,
    process_identity,
    retry_stale,
)
from autobatch._search._space import (
    SearchSpace,
    epoch_efficiency,
    epoch_rate,
    params_to_request,
    robust_value,
    should_prune,
    should_repeat,
)
from autobatch._search._storage import (
    bad_url_error,
    is_bad_url,
    is_storage_fault,
    make_storage,
    own_heartbeats,
    storage_error,
)

if TYPE_CHECKING:
    import optuna

__all__ = [
    "OWNER_ATTR",
    "RETRY_ATTR",
    "SearchSpace",
    "TrialRecord",
    "default_storage_url",
    "epoch_efficiency",
    "fail_stale_trials",
    "process_identity",
    "retry_stale",
    "open_study",
    "params_to_request",
    "record_from_frozen",
    "reset_and_open_study",
    "run_trial",
    "study_name_for",
]
"""``SearchSpace``, ``epoch_efficiency`` and ``params_to_request`` live in ``_space``; they
are named here too for the callers that import them from this module."""

logger = logging.getLogger(__name__)


def default_storage_url() -> str:
    """An embedded SQLite file in the user cache folder (its folder created when it can be;
    when it cannot, opening the study says so)."""
    path = cache_root() / "optuna.db"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def study_name_for(fingerprints: dict[str, str]) -> str:
    """A stable study name from the fingerprints (the same tune resumes the same study)."""
    return f"autobatch-{combined_key(fingerprints)}"


def open_study(storage: str | None, study_name: str, *, seed: int,
               n_startup_trials: int = 6, in_memory: bool = False) -> optuna.Study:
    """Create or load the study (``load_if_exists``), with a seeded TPE sampler; the
    storage's schema is created under an inter-process lock (``_storage``).

    Raises:
        UsageError: a storage URL that does not parse or whose driver is missing.
        StorageError: a storage that cannot be created, opened or read (one line).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                         multivariate=True)
    url = storage or default_storage_url()
    try:
        return optuna.create_study(
            storage=None if in_memory else make_storage(url, on_stale=retry_stale),
            study_name=study_name,
            direction="maximize",
            sampler=sampler,
            load_if_exists=True,
        )
    except Exception as exc:
        if is_bad_url(exc):
            raise bad_url_error(storage, exc) from None
        if is_storage_fault(exc):
            raise storage_error(url, exc) from None
        raise


def reset_and_open_study(storage: str | None, name: str, *, seed: int,
                         force: bool, in_memory: bool = False) -> optuna.Study:
    """``open_study``; with ``force``, the stored study of that name is deleted first."""
    if force and not in_memory:
        import optuna

        try:
            kept = make_storage(storage or default_storage_url())
            for suffix in ("", ":workers", ":slots"):  # a shared study's siblings too
                with contextlib.suppress(KeyError):  # no such study yet
                    optuna.delete_study(study_name=name + suffix, storage=kept)
        except Exception as exc:  # storage problems surface in open_study with a clear message
            logger.debug("could not delete study %s: %s", name, exc)
    return open_study(storage, name, seed=seed, in_memory=in_memory)


# ---------------------------------------------------------------- running trials


@dataclass
class TrialRecord:
    """One trial as the plan stores it."""

    number: int
    state: str
    params: dict[str, Any]
    measurements: list[float] = field(default_factory=list)
    """The scores measured: examples/s over an epoch, times ``efficiency``."""
    peak_memory_bytes: int | None = None
    outcome: str = "ok"
    duration_s: float = 0.0
    efficiency: float = 1.0
    """The batch's statistical efficiency under the goodput objective (1: throughput)."""

    @property
    def examples_per_s(self) -> float | None:
        """The point's score: the median measurement (goodput under that objective)."""
        return robust_value(self.measurements) if self.measurements else None

    @property
    def raw_examples_per_s(self) -> float | None:
        """Examples/s as measured, without the efficiency."""
        score = self.examples_per_s
        return score / self.efficiency if score is not None and self.efficiency else score

    def to_plan_dict(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.params.items() if k not in ("batch_size", "jit_compile")}
        return {
            "number": self.number,
            "state": self.state,
            "batch_size": self.params.get("batch_size"),
            "settings": settings,
            "jit_compile": bool(self.params.get("jit_compile", False)),
            "examples_per_s": self.raw_examples_per_s,
            "measurements": [m / self.efficiency for m in self.measurements]
            if self.efficiency else list(self.measurements),
            **({"efficiency": self.efficiency, "goodput": self.examples_per_s}
               if self.efficiency != 1.0 else {}),
            "peak_memory_bytes": self.peak_memory_bytes,
            "outcome": self.outcome,
        }


def record_from_frozen(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """Rebuild a record from a stored Optuna trial (resume)."""
    attrs = trial.user_attrs
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        measurements=list(attrs.get("measurements_examples_per_s", [])),
        peak_memory_bytes=attrs.get("peak_memory_bytes"),
        outcome=attrs.get("outcome", "ok"),
        duration_s=float(attrs.get("duration_s", 0.0)),
        efficiency=float(attrs.get("efficiency", 1.0)),
    )


def run_trial(
    study: optuna.Study,
    runner: ProbeRunner,
    space: SearchSpace,
    *,
    best: float | None,
    steps: int,
    warmup_steps: int,
    timeout_s: float,
    on_result: Callable[[ProbeResult], None] | None = None,
    min_time_s: float = 0.0,
    num_examples: int | None = None,
    weight: Callable[[int], float] | None = None,
) -> TrialRecord:
    """Ask the study for a point, measure it (once, twice when promising), tell the result.

    Its value is the epoch rate over ``num_examples`` (``epoch_efficiency``): the probe's
    full-batch examples/s times the share of the epoch's steps that carries examples;
    under the goodput objective, times the batch's statistical efficiency (``weight``).

    A KeyboardInterrupt marks the trial failed in the storage before it propagates, so a
    resumed study does not wait on a trial left RUNNING.
    """
    import optuna

    with _interrupts_deferred(), own_heartbeats():
        # An interrupt inside ask (the trial row exists, its number is not ours yet) would
        # leave a trial RUNNING that nobody can tell: it waits until ask has returned.
        trial = study.ask(space.distributions())
    needs_fail = False
    try:
        return _run_asked_trial(study, trial, runner, best=best, steps=steps,
                                warmup_steps=warmup_steps, timeout_s=timeout_s,
                                on_result=on_result, min_time_s=min_time_s,
                                num_examples=num_examples, weight=weight)
    except BaseException:
        needs_fail = True
        raise
    finally:
        # An interrupt at any moment (inside a probe, or between the result and the tell)
        # leaves no trial RUNNING: whatever was not told is told as failed.
        if needs_fail and trial.number in _unfinished(study):
            try:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except Exception:  # noqa: BLE001 - already told, or the storage is gone
                logger.debug("could not mark trial %d failed", trial.number)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block and deliver them after it, to the handlers that
    were in place (main thread only; elsewhere signals do not arrive anyway)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
        sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
        for sig in watched}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                signal.raise_signal(signum)  # the default action: end the process


def _unfinished(study: optuna.Study) -> set[int]:
    import optuna

    return {t.number for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}


def _run_asked_trial(study: optuna.Study, trial: optuna.Trial, runner: ProbeRunner, *,
                     best: float | None, steps: int, warmup_steps: int, timeout_s: float,
                     on_result: Callable[[ProbeResult], None] | None, min_time_s: float,
                     num_examples: int | None,
                     weight: Callable[[int], float] | None = None) -> TrialRecord:
    import optuna

    trial.set_user_attr(OWNER_ATTR, process_identity())
    params = dict(trial.params)
    started = time.perf_counter()
    record = TrialRecord(number=trial.number, state="RUNNING", params=params,
                         efficiency=weight(int(params["batch_size"])) if weight else 1.0)
    try:
        for attempt in range(2):
            request = params_to_request(params, steps=steps, warmup_steps=warmup_steps,
                                        timeout_s=timeout_s, min_time_s=min_time_s)
            result = runner.run(request)
            if on_result is not None:
                on_result(result)
            record.outcome = result.outcome
            if result.peak_memory_bytes is not None:
                record.peak_memory_bytes = max(record.peak_memory_bytes or 0,
                                               int(result.peak_memory_bytes))
            if not result.ok or not result.examples_per_s:
                record.state = "FAIL"
                break
            record.measurements.append(
                float(epoch_rate(result, num_examples) or 0.0) * record.efficiency)
            trial.report(record.measurements[-1], attempt)
            if attempt == 0 and should_prune(record.measurements[0], best):
                record.state = "PRUNED"
                break
            if attempt == 0 and not should_repeat(record.measurements[0], best):
                break
        else:
            pass
        if record.state == "RUNNING":
            record.state = "COMPLETE"
    except BaseException:
        record.duration_s = time.perf_counter() - started
        _set_trial_attrs(trial, record)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    record.duration_s = time.perf_counter() - started
    _set_trial_attrs(trial, record)
    if record.state == "COMPLETE":
        study.tell(trial, record.examples_per_s)
    elif record.state == "PRUNED":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        # A point that does not run (over budget, crash) is told to Optuna as pruned at
        # zero examples/s: TPE ignores FAILED trials and would propose the point again,
        # each time costing a worker restart. The plan keeps the real outcome.
        trial.report(0.0, len(record.measurements))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    logger.info("trial %d %s: %s examples/s %s", record.number, record.state, params,
                record.examples_per_s)
    return record


def _set_trial_attrs(trial: optuna.Trial, record: TrialRecord) -> None:
    # Readable attributes for optuna-dashboard.
    trial.set_user_attr("batch_size", record.params.get("batch_size"))
    trial.set_user_attr("examples_per_s", record.examples_per_s)
    trial.set_user_attr("measurements_examples_per_s", record.measurements)
    trial.set_user_attr("peak_memory_bytes", record.peak_memory_bytes)
    trial.set_user_attr("outcome", record.outcome)
    trial.set_user_attr("duration_s", round(record.duration_s, 3))
    if record.efficiency != 1.0:
        trial.set_user_attr("efficiency", record.efficiency)
    trial.set_user_attr("settings", {k: v for k, v in record.params.items() if k != "batch_size"})
