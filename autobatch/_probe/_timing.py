"""Timing helpers of the probe worker: the summary of timed steps, the Keras callback that
times ``fit`` epochs, and the thread body that fetches a probe's first batch."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any


def summarize_steps(steps_s: list[float], waits_s: list[float] | None,
                    batch_size: int) -> dict[str, Any]:
    """Median step time, its interquartile spread, examples/s and the input-wait share
    (None when the waits were not seen)."""
    if not steps_s:
        return {"step_times_s": []}
    median = statistics.median(steps_s)
    if len(steps_s) >= 4:
        quartiles = statistics.quantiles(steps_s, n=4)
        spread = quartiles[2] - quartiles[0]
    else:
        spread = max(steps_s) - min(steps_s)
    total = sum(steps_s)
    return {
        "step_time_s": median,
        "step_time_spread_s": spread,
        "step_times_s": [round(s, 6) for s in steps_s],
        "examples_per_s": batch_size / median if median > 0 else None,
        "input_wait_fraction": (sum(waits_s) / total) if waits_s is not None and total > 0
        else None,
    }


def epoch_timer(min_time_s: float) -> Any:
    """A Keras callback that times each epoch after the first and stops training once the
    timed epochs add up to ``min_time_s`` (one timed epoch at least). Imports Keras."""
    import keras

    class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]  # Keras is untyped
        def __init__(self) -> None:
            super().__init__()
            self.epochs_s: list[float] = []
            self._started = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 0:
                return  # tracing, cache fill
            self.epochs_s.append(time.perf_counter() - self._started)
            if sum(self.epochs_s) >= min_time_s:
                self.model.stop_training = True

    return EpochTimer()


def fetch_into(iterator: Iterator[Any], out: list[Any], count: int = 1) -> None:
    """Pull ``count`` batches and keep the last (the ones before only fill a cache)."""
    try:
        batch = None
        for _ in range(max(1, count)):
            batch = next(iterator)
        out.append(batch)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the probing thread
        out.append(exc)
