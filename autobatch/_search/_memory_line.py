"""The memory line: peak memory against batch size from a few probes (a Theil-Sen fit), and
where it puts the next probe. Pure functions; ``_ceiling.find_ceiling`` runs the probes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAX_BATCH_SIZE = 4096
"""No search goes beyond this: past it a ceiling is not the limiting factor."""


@dataclass(frozen=True)
class MemoryModel:
    """Peak memory ~ intercept + slope * batch size."""

    slope_bytes_per_example: float
    intercept_bytes: float

    def predict_bytes(self, batch_size: int) -> float:
        return self.intercept_bytes + self.slope_bytes_per_example * batch_size

    def largest_batch_under(self, budget_bytes: int) -> int:
        """The largest batch the line puts under ``budget_bytes`` (0 when none)."""
        if self.slope_bytes_per_example <= 0:
            return MAX_BATCH_SIZE
        room = budget_bytes - self.intercept_bytes
        if room <= 0:
            return 0
        return int(math.floor(room / self.slope_bytes_per_example))

    def to_dict(self) -> dict[str, float]:
        return {
            "slope_bytes_per_example": float(self.slope_bytes_per_example),
            "intercept_bytes": float(self.intercept_bytes),
        }


def fit_memory_model(points: Sequence[tuple[int, int]], *, last: int = 3) -> MemoryModel | None:
    """Fit peak memory against batch size from successful probes.

    A Theil-Sen line (median of pairwise slopes) over the ``last`` largest batches: robust to
    one noisy reading, and weighted towards the far end where activations dominate and the
    line matters for the prediction. A non-positive slope (noise between two close batches)
    is replaced by the steepest slope seen, so the prediction errs low, then verified.

    Args:
        points: ``(batch_size, peak_bytes)`` of successful probes, any order.
        last: how many of the largest distinct batches to fit.

    Returns:
        The model, or None with fewer than two distinct batch sizes.
    """
    by_batch: dict[int, int] = {}
    for batch, peak in points:
        # In one reused worker a repeated batch reads the higher figure; keep the highest.
        by_batch[int(batch)] = max(int(peak), by_batch.get(int(batch), 0))
    chosen = sorted(by_batch.items())[-last:]
    if len(chosen) < 2:
        return None
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(chosen)
        for (x2, y2) in chosen[i + 1 :]
    ]
    slope = statistics.median(slopes)
    if slope <= 0:
        slope = max(slopes)
    if slope <= 0:
        # Memory did not grow at all across the probes: use a tiny positive slope so the
        # prediction jumps far up and the verify probe (and bisection) decide.
        slope = max(1.0, chosen[-1][1] * 1e-4)
    intercept = statistics.median(y - slope * x for x, y in chosen)
    return MemoryModel(slope_bytes_per_example=float(slope), intercept_bytes=float(intercept))


def predict_ceiling(
    model: MemoryModel, budget_bytes: int, *, low: int, high: int, max_growth: float = 8.0
) -> int:
    """Next batch to verify: the model's largest batch under budget, kept in ``(low, high)``.

    Args:
        model: fitted memory line.
        budget_bytes: the limit a probe's peak must stay under.
        low: the largest batch known to fit.
        high: the smallest batch known not to fit (or the cap + 1).
        max_growth: never jump more than this factor above ``low`` in one step, so a flat
            early line cannot send the first verify probe far beyond the real limit.
    """
    predicted = model.largest_batch_under(budget_bytes)
    predicted = min(predicted, int(low * max_growth), high - 1)
    return max(predicted, low + 1) if high - low > 1 else low


def next_bisect(low: int, high: int) -> int:
    """Midpoint between a fitting ``low`` and a failing ``high`` batch."""
    return (low + high) // 2


def after_miss(
    model: MemoryModel | None, budget_bytes: int, *, low: int, high: int, margin: float = 0.025
) -> int:
    """Next batch after a miss at ``high``: the line's estimate under a slightly lower budget
    (it just over-predicted), kept between the midpoint and a quarter of the bracket below
    ``high``, so the bracket shrinks by at least a quarter per probe; the midpoint when
    there is no line. Above the midpoint because the line is usually nearly right."""
    mid = next_bisect(low, high)
    if model is None:
        return mid
    upper = max(mid, high - max(1, math.ceil((high - low) / 4)))
    guess = model.largest_batch_under(int(budget_bytes * (1.0 - margin)))
    return max(mid, min(guess, upper))
