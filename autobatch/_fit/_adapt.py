"""``fit(..., adapt=True)``: move the batch between epochs as the gradient noise scale grows.

The noise scale ``B_simple = tr(Σ)/|G|²`` grows as the loss falls (McCandlish et al. 2018),
so the batch that trains fastest to a target grows with it: Pollux (OSDI 2021) re-estimates
it during training and re-picks the batch by goodput, ``examples/s x efficiency(B)``.

Here the estimate costs no extra pass: ``_noise_tracking`` draws it from the gradients of
consecutive steps inside the traced step. At each epoch's end the draws' means give the
epoch's ``|G|²`` and ``tr(Σ)`` (``_noise.two_batch_terms``), pooled with the earlier
epochs' (each epoch's weight halves the past's), and the next batch is picked among the
plan's **verified** batch sizes: the trials' batches, all under the search ceiling that
fresh ``model.fit`` processes fitted under the budget, each with the pipeline its best
trial measured and that trial's examples/s (no new search). A move must promise more
than ``MOVE_MARGIN`` goodput.

``model.fit`` takes one batch size, so each run of epochs at one batch is its own
``model.fit(initial_epoch=...)`` call on that batch's tuned pipeline: Keras numbers the
epochs on, every epoch is still one whole pass (counted in the step, as always), and the
user's callbacks see one training run (``on_train_begin``/``on_train_end`` once; a callback
that stops training stops it). The learning rate moves with the batch by the plan's rule
(linear for SGD, square root for Adam-family), relative to the rate training started with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from autobatch._errors import UsageError
from autobatch._fit._noise_tracking import NoiseTracker, tracking_noise
from autobatch._noise import efficiency, two_batch_terms
from autobatch._plan._learning_rate import rule_factor

logger = logging.getLogger(__name__)

MOVE_MARGIN = 0.05
"""A move must promise this much more goodput than staying (the trials' examples/s and the
noise estimate are both noisy: a flat goodput curve must not make the batch flutter)."""
POOL_DECAY = 0.5
"""Each epoch, the weight of the earlier epochs' draws halves (the noise scale drifts)."""


@dataclass(frozen=True)
class Rung:
    """One verified batch size the training may move to."""

    batch_size: int
    pipeline: Any
    """``PipelineSettings`` its best trial measured."""
    examples_per_s: float


def ladder(plan: Any) -> list[Rung]:
    """The plan's verified batch sizes, smallest first: per batch, the completed trial with
    the most examples/s (trials of the plan's own XLA setting where there are any), and the
    plan's own batch with its own pipeline."""
    from autobatch._settings import PipelineSettings

    trials = [t for t in plan.trials if t.get("state") == "COMPLETE" and t.get("batch_size")
              and t.get("examples_per_s") and (t.get("outcome") or "ok") == "ok"
              and int(t["batch_size"]) <= int(plan.ceiling_batch_size or t["batch_size"])]
    same_xla = [t for t in trials if bool(t.get("jit_compile")) == bool(plan.jit_compile)]
    best: dict[int, dict[str, Any]] = {}
    for trial in same_xla or trials:
        batch = int(trial["batch_size"])
        if batch not in best or trial["examples_per_s"] > best[batch]["examples_per_s"]:
            best[batch] = trial
    rungs = {}
    for batch, trial in best.items():
        try:
            # The plan's pixels win: fit may have turned them to float32 for this model.
            pipeline = PipelineSettings(**{**plan.pipeline.to_dict(), **trial["settings"],
                                           "pixels": plan.pipeline.pixels})
        except (TypeError, ValueError):
            continue  # a trial of another pipeline version: its settings do not apply
        rungs[batch] = Rung(batch, pipeline, float(trial["examples_per_s"]))
    own = best.get(plan.batch_size)
    own_rate = float(own["examples_per_s"]) if own else plan.examples_per_s
    if not own_rate:
        return []  # the batch training starts at has no rate to compare the others with
    rungs[plan.batch_size] = Rung(plan.batch_size, plan.pipeline, float(own_rate))
    return sorted(rungs.values(), key=lambda r: r.batch_size)


def rungs_for(plan: Any) -> list[Rung] | None:
    """The ladder an adaptive fit moves on (``ladder``), or None with a warning where the
    plan holds no other measured batch (training then stays at the plan's).

    Raises:
        UsageError: the plan accumulates gradients (the rest of ``check_adaptable`` was
            checked before the tune).
    """
    check_adaptable(plan)
    rungs = ladder(plan)
    if len(rungs) < 2:
        logger.warning("adapt=True: the plan holds no other measured batch size to move to "
                       "from %d; training at it", plan.batch_size)
        return None
    return rungs


def check_adaptable(plan: Any, *, replicas: int = 1, user_steps: Any = None,
                    effective_batch_size: Any = None, fixed_batch_size: Any = None) -> None:
    """Refuse, in one line each, what ``adapt=True`` cannot keep its promises under (before
    the tune with ``plan`` None, and again with the plan it gave)."""
    if replicas > 1:
        raise UsageError("adapt=True trains on one device: drop the tf.distribute strategy, "
                         "or train without adapt")
    if effective_batch_size is not None or int(
            getattr(plan, "gradient_accumulation_steps", 1) or 1) > 1:
        raise UsageError("adapt=True moves the batch, which would break the plan's effective "
                         "batch (--effective-batch-size): use one or the other")
    if fixed_batch_size is not None:
        raise UsageError(f"adapt=True moves the batch, but the generator yields batches of "
                         f"{fixed_batch_size} itself: yield single examples, or train "
                         "without adapt")
    if user_steps is not None:
        raise UsageError("adapt=True sets each epoch's steps itself (one whole pass at the "
                         "batch of the moment): leave out steps_per_epoch")


@dataclass
class Adapter:
    """The batch of the moment, the pooled noise scale, and the moves made."""

    rungs: list[Rung]
    current: Rung
    rule: str
    reference_batch_size: int = 32
    pooled: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Pooled ``(weight, |G|² x weight, tr(Σ) x weight)``."""
    moves: list[dict[str, Any]] = field(default_factory=list)
    pending: Rung | None = None

    @property
    def noise_scale(self) -> float | None:
        """The pooled ``B_simple`` (inf: ``|G|²`` not resolved from the noise; None: none
        measured yet)."""
        weight, g2, trace = self.pooled
        if weight <= 0:
            return None
        return trace / g2 if g2 > 0 else math.inf

    def add_epoch(self, small: list[float], large: list[float], batch: int) -> None:
        """Pool one epoch's draws (``batch``: its batch size) with the earlier epochs'."""
        pairs = [(s, g) for s, g in zip(small, large, strict=True)
                 if math.isfinite(s) and math.isfinite(g)]
        if len(pairs) < 2:
            return  # one draw says too little (a short epoch); the pool stands
        # The two-batch estimator on the epoch's means (``_noise.combine`` without its
        # bootstrap: thousands of draws an epoch, and only the means are used).
        n = float(len(pairs))
        g_small = sum(s for s, _ in pairs) / n
        g_large = sum(g for _, g in pairs) / n
        g2, trace = two_batch_terms(g_small, g_large, batch, 2 * batch)
        weight, pooled_g2, pooled_trace = self.pooled
        self.pooled = (POOL_DECAY * weight + n, POOL_DECAY * pooled_g2 + n * g2,
                       POOL_DECAY * pooled_trace + n * trace)

    def goodput(self, rung: Rung) -> float:
        noise = self.noise_scale
        if noise is None or not math.isfinite(noise):
            return rung.examples_per_s  # every batch far below the noise scale counts fully
        return rung.examples_per_s * efficiency(noise, rung.batch_size,
                                                self.reference_batch_size)

    def decide(self) -> Rung | None:
        """The rung to move to after this epoch, or None to stay."""
        if self.noise_scale is None:
            return None
        best = max(self.rungs, key=self.goodput)
        if best is self.current or self.goodput(best) <= self.goodput(self.current) * (
                1.0 + MOVE_MARGIN):
            return None
        return best

    def lr_ratio(self, new: Rung) -> float:
        return rule_factor(self.rule, new.batch_size / self.current.batch_size)


def objective_for(objective: str | None, adapt: bool) -> str | None:
    """The tune's objective for ``fit``: goodput when adapting, unless told otherwise.

    Raises:
        UsageError: ``adapt`` with the throughput objective.
    """
    if adapt and objective == "throughput":
        raise UsageError("adapt=True moves the batch by goodput; leave objective out or pass "
                         "objective='goodput'")
    return "goodput" if adapt and objective is None else objective


def fit_adaptively(model: Any, plan: Any, rungs: list[Rung],
                   inputs: Callable[[Any, int], tuple[Any, int | None]], *, epochs: int,
                   callbacks: list[Any], user_callbacks: list[Any] | None,
                   fit_kwargs: dict[str, Any]) -> Any:
    """``model.fit`` run by run of epochs at one batch (``inputs(plan_at_batch, run)``: the
    dataset and its steps); returns one merged ``History`` with
    ``history.history["batch_size"]`` and ``["noise_scale"]`` per epoch and
    ``history.adapt`` (the rungs, the noise scale the tune measured, the moves)."""
    import keras

    from autobatch._fit._lr import _current_lr, copy_plan

    current = next(r for r in rungs if r.batch_size == plan.batch_size)
    start_lr = _current_lr(model.optimizer)
    adapter = Adapter(rungs=rungs, current=current, rule=plan.learning_rate.rule,
                      reference_batch_size=plan.learning_rate.reference_batch_size)
    forward = _user_callbacks(list(user_callbacks or []))
    start = int(fit_kwargs.pop("initial_epoch", 0) or 0)
    merged: Any = None
    segment = 0
    logger.info("adapt: starting at batch %d; verified batches %s", current.batch_size,
                ", ".join(str(r.batch_size) for r in rungs))
    with tracking_noise(model) as tracker, _restored_lr(model, start_lr):
        watch = _adapt_callback(adapter, tracker)
        while True:
            at = adapter.current
            dataset, steps = inputs(plan if at is current else copy_plan(
                plan, batch_size=at.batch_size, per_replica_batch_size=at.batch_size,
                pipeline=at.pipeline), segment)
            kwargs = dict(fit_kwargs)
            if steps is not None:
                kwargs["steps_per_epoch"] = steps
            history = model.fit(dataset, epochs=epochs, initial_epoch=start, shuffle=False,
                                callbacks=[*callbacks, watch, forward], **kwargs)
            merged = _merge(merged, history)
            last = history.epoch[-1] if history.epoch else start - 1
            move, adapter.pending = adapter.pending, None
            if move is None or forward.stopped or last + 1 >= epochs:
                break
            _move(model, adapter, move, epoch=last + 1)
            start, segment = last + 1, segment + 1
    forward.finish(merged.history if isinstance(merged, keras.callbacks.History) else None)
    tuned = (plan.measured.get("objective") or {}).get("noise_scale") or {}
    merged.adapt = {"batch_sizes": [r.batch_size for r in rungs],
                    "examples_per_s": [r.examples_per_s for r in rungs],
                    "tuned_noise_scale": tuned.get("b_simple"), "moves": adapter.moves,
                    "learning_rate_start": start_lr}
    return merged


@contextmanager
def _restored_lr(model: Any, learning_rate: float | None) -> Iterator[None]:
    """The optimizer's learning rate back at ``learning_rate`` after the block (the moves
    changed it for their batches; a later fit starts at the plan's batch again)."""
    try:
        yield
    finally:
        if learning_rate is not None and model.optimizer is not None:
            model.optimizer.learning_rate = learning_rate


def _move(model: Any, adapter: Adapter, to: Rung, *, epoch: int) -> None:
    from autobatch._fit._lr import _current_lr

    optimizer = model.optimizer
    before = _current_lr(optimizer)
    ratio = adapter.lr_ratio(to)
    after = before
    if before is not None and ratio != 1.0:
        after = before * ratio
        optimizer.learning_rate = after
    elif before is None and ratio != 1.0:
        logger.warning("adapt: the learning rate is a schedule; not rescaled for batch %d",
                       to.batch_size)
    noise = adapter.noise_scale
    adapter.moves.append({"epoch": epoch + 1, "from": adapter.current.batch_size,
                          "to": to.batch_size,
                          "noise_scale": noise if noise is not None and math.isfinite(noise)
                          else None, "noise_resolved": noise is not None and math.isfinite(noise),
                          "learning_rate_before": before, "learning_rate_after": after})
    logger.info("adapt: epoch %d on, batch %d -> %d (B_simple %s)%s", epoch + 1,
                adapter.current.batch_size, to.batch_size,
                f"{noise:.0f}" if noise is not None and math.isfinite(noise) else "unresolved",
                f", learning rate {before:.3g} -> {after:.3g}" if before != after and
                before is not None and after is not None else "")
    adapter.current = to


def _adapt_callback(adapter: Adapter, tracker: NoiseTracker) -> Any:
    import keras

    class AdaptCallback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            tracker.epoch_draws()  # draws from before this epoch do not count for it

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            small, large = tracker.epoch_draws()
            adapter.add_epoch(small, large, adapter.current.batch_size)
            history = getattr(self.model, "history", None)
            if isinstance(history, keras.callbacks.History):  # (not in logs: the progress
                noise = adapter.noise_scale  # bar would show them as metrics)
                history.history.setdefault("batch_size", []).append(
                    adapter.current.batch_size)
                # inf: |G|² not resolved from the noise; None: nothing measured yet.
                history.history.setdefault("noise_scale", []).append(noise)
            move = adapter.decide()
            if move is not None:
                adapter.pending = move
                self.model.stop_training = True  # this run of epochs ends; the next starts

    return AdaptCallback()


def _user_callbacks(callbacks: list[Any]) -> Any:
    """The user's callbacks as one training run across the runs of epochs:
    ``on_train_begin`` once, ``on_train_end`` once (``finish``), and a stop that they ask
    for (``stopped``) kept apart from the adapter's own."""
    import keras

    class UserCallbacks(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.inner = keras.callbacks.CallbackList(list(callbacks))
            self.begun = False
            self.stopped = False

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            self.inner.set_model(model)

        def set_params(self, params: Any) -> None:
            super().set_params(params)
            self.inner.set_params(params)

        def on_train_begin(self, logs: Any = None) -> None:
            if not self.begun:
                self.begun = True
                self.inner.on_train_begin(logs)

        def on_train_end(self, logs: Any = None) -> None:
            pass  # once, at the very end: finish()

        def finish(self, history: dict[str, list[Any]] | None) -> None:
            self.inner.on_train_end({k: v[-1] for k, v in (history or {}).items() if v})

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.inner.on_train_batch_end(batch, logs)
            # Mid-epoch, only a user's callback (TerminateOnNaN, ...) stops training.
            self.stopped = self.stopped or bool(self.model.stop_training)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            ours = bool(self.model.stop_training)  # the adapter's (it runs before this)
            self.model.stop_training = False
            self.inner.on_epoch_end(epoch, logs)
            self.stopped = self.stopped or bool(self.model.stop_training)
            self.model.stop_training = ours or self.stopped

    for hook in ("on_epoch_begin", "on_train_batch_begin", "on_test_begin", "on_test_end",
                 "on_test_batch_begin", "on_test_batch_end", "on_predict_begin",
                 "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end"):
        setattr(UserCallbacks, hook, _forwarder(hook))
    return UserCallbacks()


def _forwarder(hook: str) -> Callable[..., None]:
    def forward(self: Any, *args: Any, **kwargs: Any) -> None:
        getattr(self.inner, hook)(*args, **kwargs)

    return forward


def _merge(merged: Any, history: Any) -> Any:
    """One ``History`` of every run of epochs (keys appended in epoch order)."""
    if merged is None:
        return history
    merged.epoch.extend(history.epoch)
    for key, values in history.history.items():
        merged.history.setdefault(key, []).extend(values)
    return merged
