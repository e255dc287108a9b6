"""How the report writes numbers: one formatter per kind of quantity, used everywhere.

The HTML carries each plan number twice: as shown to people (these formatters) and raw in a
``data-value`` attribute next to the dotted plan path it came from (``data-key``), so a test
can check that what the page says is what the plan holds.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from autobatch._sizes import format_bytes

INPUT_BOUND_FRACTION = 0.10
"""From this share of step time spent waiting for input on, a run is called input-bound:
the accelerator idles a tenth of every step, which a better pipeline can win back."""


def lookup(plan: dict[str, Any], key: str, default: Any = None) -> Any:
    """The value at a dotted path (``"measured.examples_per_s"``; list items by index)."""
    value: Any = plan
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return default
    return value


def is_number(value: Any) -> TypeGuard[int | float]:
    """A finite int or float (not a bool): something a plot or a formatter can use."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt_count(value: Any) -> str:
    """Batch sizes, steps, examples: ``1,234``."""
    return f"{int(value):,}" if is_number(value) else "-"


def fmt_rate(value: Any) -> str:
    """Throughput: ``1,234.5 examples/s``."""
    return f"{float(value):,.1f} examples/s" if is_number(value) else "-"


def fmt_bytes(value: Any) -> str:
    """Memory: ``1.50 GiB`` (the package's one byte formatter)."""
    return format_bytes(value) if is_number(value) else "-"


def fmt_fraction(value: Any) -> str:
    """Shares: ``62%``."""
    return f"{float(value) * 100:.0f}%" if is_number(value) else "-"


def fmt_seconds(value: Any) -> str:
    """Durations: ``12.3 ms`` below a second, ``1.23 s`` above."""
    if not is_number(value):
        return "-"
    value = float(value)
    return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"


def fmt_factor(value: Any) -> str:
    """Ratios: ``2.50×``."""
    return f"{float(value):.2f}×" if is_number(value) else "-"


def fmt_scale(value: Any) -> str:
    """A batch-sized estimate (the gradient noise scale): ``1,234``, ``7.5`` below 10."""
    if not is_number(value):
        return "-"
    return f"{float(value):,.0f}" if abs(value) >= 10 else f"{float(value):.1f}"


def fmt_value(value: Any) -> str:
    """Anything else from the plan: booleans, strings, short lists."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return " × ".join(fmt_value(v) for v in value) if value else "-"
    return str(value)


def fmt_setting(value: Any) -> str:
    """A tf.data count where -1 is ``tf.data.AUTOTUNE``: ``4`` or ``AUTOTUNE``."""
    if is_number(value) and int(value) == -1:
        return "AUTOTUNE"
    return fmt_value(value)


def fmt_list(value: Any) -> str:
    """Lists of names (GPUs, classes): ``a, b``; an empty list is ``none``."""
    if not isinstance(value, (list, tuple)):
        return fmt_value(value)
    return ", ".join(fmt_value(v) for v in value) if value else "none"


FORMATTERS = {
    "count": fmt_count,
    "rate": fmt_rate,
    "bytes": fmt_bytes,
    "fraction": fmt_fraction,
    "seconds": fmt_seconds,
    "factor": fmt_factor,
    "value": fmt_value,
    "list": fmt_list,
    "setting": fmt_setting,
    "scale": fmt_scale,
}


def input_bound_sentence(fraction: Any) -> str:
    """Say in words whether the model waits for its data.

    Args:
        fraction: the measured share of step time spent waiting for the next batch.

    Returns:
        ``"input-bound: the model waits for data 62% of each step"`` at or above
        ``INPUT_BOUND_FRACTION``, ``"compute-bound: ..."`` below it, or a note that it was
        not measured.
    """
    if not is_number(fraction):
        return "input wait not measured: the plan holds no input_wait_fraction"
    share = fmt_fraction(fraction)
    if fraction >= INPUT_BOUND_FRACTION:
        return f"input-bound: the model waits for data {share} of each step"
    return f"compute-bound: the model waits for data only {share} of each step"
