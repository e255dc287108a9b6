"""The report's two plots, drawn with matplotlib from a plan dict.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly,
never through ``pyplot``: a library must not switch the backend of a user's notebook or
keep figures alive in pyplot's global registry. matplotlib is imported inside the functions
so that importing autobatch stays cheap.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from autobatch._report._format import fmt_bytes, fmt_count, fmt_rate, is_number, lookup

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_SIZE_IN = (10.0, 4.4)
DPI = 110
_OK = "#1f77b4"
_TRIAL = "#2ca02c"
_OOM = "#d62728"
_FAILED = "#7f7f7f"
_BUDGET = "#ff7f0e"
_MODEL = "#9467bd"
_CHOSEN = "#000000"
_BASELINE = "#8c564b"


def _memory_scale(values_bytes: list[float]) -> tuple[float, str]:
    """MiB for small runs, GiB once anything reaches 2 GiB (keeps tick labels short)."""
    top = max(values_bytes, default=0.0)
    return (1024.0**3, "GiB") if top >= 2 * 1024**3 else (1024.0**2, "MiB")


def _batch_axis(ax: Axes, batch_sizes: list[float]) -> None:
    """Log-2 batch axis with plain integer labels at the powers of two."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    positive = [b for b in batch_sizes if b and b > 0]
    low = min(positive, default=1.0)
    high = max(positive, default=64.0)
    ticks = []
    power = 1
    while power <= high * 2:
        if power >= low / 2:
            ticks.append(power)
        power *= 2
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:,}" for t in ticks])
    ax.set_xlim(max(low / 1.5, 0.5), high * 1.5)
    ax.set_xlabel("batch size")
    ax.grid(True, which="major", alpha=0.3)


def _probe_memory(probe: dict[str, Any]) -> Any:
    value = probe.get("peak_memory_bytes")
    if value is None:
        value = probe.get("peak_device_memory_bytes")
    if value is None:
        value = probe.get("peak_host_memory_bytes")
    return value


def memory_figure(plan: dict[str, Any]) -> Figure:
    """Peak memory against batch size.

    Draws the ceiling probes (ok, oom, failed), the throughput trials, the memory budget,
    the fitted memory model, the verified ceiling and the chosen batch size.

    Args:
        plan: a plan dict (schema in docs/ARCHITECTURE.md); missing parts are left out.

    Returns:
        A matplotlib Figure, not yet rendered.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    probes = [p for p in lookup(plan, "ceiling.probes", []) or [] if isinstance(p, dict)]
    trials = [t for t in plan.get("trials") or [] if isinstance(t, dict)]
    budget = lookup(plan, "ceiling.budget_bytes")
    if not is_number(budget):
        budget = lookup(plan, "measured.memory_budget_bytes")
    slope = lookup(plan, "ceiling.memory_model.slope_bytes_per_example")
    intercept = lookup(plan, "ceiling.memory_model.intercept_bytes")
    ceiling = plan.get("ceiling_batch_size")
    predicted = lookup(plan, "ceiling.predicted_batch_size")
    chosen = plan.get("batch_size")
    chosen_memory = lookup(plan, "measured.peak_memory_bytes")

    all_batches = [p.get("batch_size") for p in probes] + [t.get("batch_size") for t in trials]
    all_batches += [ceiling, predicted, chosen]
    batches = [float(b) for b in all_batches if is_number(b) and b > 0]
    memories = [_probe_memory(p) for p in probes] + [t.get("peak_memory_bytes") for t in trials]
    memories += [budget, chosen_memory]
    scale, unit = _memory_scale([float(m) for m in memories if is_number(m)])
    _batch_axis(ax, batches)

    if is_number(slope) and is_number(intercept) and batches:
        import numpy as np

        xs = np.geomspace(max(min(batches) / 1.5, 0.5), max(batches) * 1.5, 64)
        ax.plot(xs, (intercept + slope * xs) / scale, color=_MODEL, linewidth=1.5,
                linestyle="-.", label=f"memory model: {fmt_bytes(intercept)} + "
                f"{fmt_bytes(slope)} per example")
    if is_number(budget):
        ax.axhline(budget / scale, color=_BUDGET, linewidth=2,
                   label=f"memory budget {fmt_bytes(budget)}")

    ok = [(p["batch_size"], _probe_memory(p)) for p in probes
          if p.get("outcome") == "ok" and is_number(_probe_memory(p))]
    if ok:
        ax.scatter([b for b, _ in ok], [m / scale for _, m in ok], color=_OK, zorder=3,
                   label="ceiling probe: fits")
    trial_points = [(t["batch_size"], t["peak_memory_bytes"]) for t in trials
                    if is_number(t.get("batch_size")) and is_number(t.get("peak_memory_bytes"))]
    if trial_points:
        ax.scatter([b for b, _ in trial_points], [m / scale for _, m in trial_points],
                   color=_TRIAL, marker="^", s=22, alpha=0.7, zorder=3,
                   label="throughput trial")
    # An oom probe was stopped before its peak: draw it at the last reading, or on the
    # budget line when the watchdog recorded none.
    oom = [p for p in probes if p.get("outcome") == "oom" and is_number(p.get("batch_size"))]
    if oom:
        ys = [(_probe_memory(p) if is_number(_probe_memory(p)) else budget or 0) / scale
              for p in oom]
        ax.scatter([p["batch_size"] for p in oom], ys, color=_OOM, marker="x", s=70,
                   linewidths=2.5, zorder=4, label="ceiling probe: out of memory")
    failed = [p for p in probes if p.get("outcome") in ("timeout", "crash")
              and is_number(p.get("batch_size"))]
    if failed:
        ys = [(_probe_memory(p) if is_number(_probe_memory(p)) else budget or 0) / scale
              for p in failed]
        ax.scatter([p["batch_size"] for p in failed], ys, color=_FAILED, marker="X", s=50,
                   zorder=4, label="ceiling probe: timeout or crash")
    if is_number(predicted) and predicted != ceiling:
        ax.axvline(predicted, color=_MODEL, linestyle=":", linewidth=1.2,
                   label=f"predicted ceiling {fmt_count(predicted)}")
    if is_number(ceiling):
        ax.axvline(ceiling, color=_OOM, linestyle="--", linewidth=1.5,
                   label=f"verified ceiling {fmt_count(ceiling)}")
    if is_number(chosen) and is_number(chosen_memory):
        ax.scatter([chosen], [chosen_memory / scale], color=_CHOSEN, marker="*", s=180,
                   zorder=5, label=f"chosen batch {fmt_count(chosen)}")
    ax.set_ylabel(f"peak memory ({unit})")
    ax.set_ylim(bottom=0)
    ax.set_title("Peak memory against batch size")
    _legend(ax)
    fig.tight_layout()
    return fig


def throughput_figure(plan: dict[str, Any]) -> Figure:
    """Training throughput (examples/s) against batch size.

    Draws every trial (pruned ones hollow), the best trial per batch size as a line, the
    chosen point, and the untuned default (batch 32, AUTOTUNE) as a reference.

    Args:
        plan: a plan dict; missing parts are left out.

    Returns:
        A matplotlib Figure, not yet rendered.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    trials = [t for t in plan.get("trials") or [] if isinstance(t, dict)
              and is_number(t.get("batch_size")) and is_number(t.get("examples_per_s"))]
    chosen = plan.get("batch_size")
    chosen_rate = lookup(plan, "measured.examples_per_s")
    base_batch = lookup(plan, "baseline.batch_size")
    base_rate = lookup(plan, "baseline.examples_per_s")
    batches = [float(t["batch_size"]) for t in trials]
    batches += [float(b) for b in (chosen, base_batch) if is_number(b) and b > 0]
    _batch_axis(ax, batches)

    complete = [t for t in trials if str(t.get("state", "COMPLETE")).upper() == "COMPLETE"]
    pruned = [t for t in trials if t not in complete]
    if complete:
        ax.scatter([t["batch_size"] for t in complete], [t["examples_per_s"] for t in complete],
                   color=_TRIAL, alpha=0.75, zorder=3, label="trial")
        best: dict[float, float] = {}
        for t in complete:
            best[t["batch_size"]] = max(best.get(t["batch_size"], 0.0), t["examples_per_s"])
        xs = sorted(best)
        ax.plot(xs, [best[x] for x in xs], color=_TRIAL, linewidth=1, alpha=0.6,
                label="best trial per batch size")
    if pruned:
        ax.scatter([t["batch_size"] for t in pruned], [t["examples_per_s"] for t in pruned],
                   facecolors="none", edgecolors=_TRIAL, alpha=0.75, zorder=3,
                   label="trial (pruned or failed)")
    if is_number(base_rate):
        ax.axhline(base_rate, color=_BASELINE, linestyle="--", linewidth=1.2,
                   label=f"untuned default: {fmt_rate(base_rate)}")
        if is_number(base_batch):
            ax.scatter([base_batch], [base_rate], color=_BASELINE, marker="s", s=60, zorder=4,
                       label=f"untuned default (batch {fmt_count(base_batch)}, AUTOTUNE)")
    if is_number(chosen) and is_number(chosen_rate):
        ax.scatter([chosen], [chosen_rate], color=_CHOSEN, marker="*", s=220, zorder=5,
                   label=f"chosen: batch {fmt_count(chosen)}, {fmt_rate(chosen_rate)}")
    ax.set_ylabel("examples/s")
    ax.set_ylim(bottom=0)
    ax.set_title("Training throughput against batch size")
    _legend(ax)
    fig.tight_layout()
    return fig


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        # Outside the axes, on the right: inside it would hide the points it explains.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                  frameon=False, borderaxespad=0.0)
    else:
        ax.text(0.5, 0.5, "nothing measured in this plan", transform=ax.transAxes,
                ha="center", va="center", color=_FAILED)


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # No "Software" stamp: the same plan gives the same bytes on every matplotlib version.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
