"""Noise-robust measurement helpers: interleaved repeats and medians."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved(runs: dict[str, Callable[[], float]], repeats: int, *,
                together: tuple[str, ...] = ()) -> dict[str, list[float]]:
    """Call each run ``repeats`` times, rotating the order every round so that slow phases
    of a shared machine hit every contender alike. Each run returns one measurement.

    The runs named in ``together`` go back to back in every round (in alternating order),
    so that their per-round ratios compare samples taken minutes, not tens of minutes,
    apart: see ``paired_ratio``."""
    group = [name for name in runs if name in together]
    units: list[list[str]] = []
    for name in runs:
        if name in group:
            if name == group[0]:
                units.append(group)
        else:
            units.append([name])
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(repeats):
        shift = round_index % len(units)
        for unit in units[shift:] + units[:shift]:
            for name in (unit if round_index % 2 == 0 else unit[::-1]):
                samples[name].append(runs[name]())
    return samples


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of one round's ratio: robust to the machine's drift between
    rounds, which a ratio of the two medians is not (this machine's speed halves and
    recovers over tens of minutes)."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True) if b > 0])


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: list[float]) -> float:
    """Relative spread (max - min) / median of a series of measurements."""
    if len(values) < 2:
        return 0.0
    mid = median(values)
    return (max(values) - min(values)) / mid if mid else float("nan")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.elapsed_s = time.perf_counter() - self.start


def machine_description() -> dict[str, Any]:
    import autobatch

    env = autobatch.environment()
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cpus_usable": env.cpu.usable,
        "memory_total_bytes": env.host.memory_total_bytes,
        "gpus": [g.name for g in env.gpus],
        "tensorflow": env.tensorflow_version,
        "keras": env.keras_version,
        "python": env.python_version,
    }
