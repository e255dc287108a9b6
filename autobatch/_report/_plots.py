"""The report's memory and throughput plots, drawn with matplotlib from a plan dict (the
goodput plot, on the same batch axis, is ``_goodput``'s).

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


X_MARGIN = 1.6
"""The batch axis runs from the smallest measured batch / 1.6 to the largest x 1.6 (log
scale: the same room on both sides), so markers at the ends are not cut."""
Y_MARGIN = 1.15
"""The value axis tops out 15% above the highest point it frames (room for the markers)."""
OFF_SCALE = 2.0
"""A reference (the budget, the predicted ceiling) more than this factor beyond the
measured points is annotated at the edge instead of stretching the axis to it."""


def batch_limits(batch_sizes: list[float]) -> tuple[float, float]:
    """The batch axis' range for these measured batch sizes."""
    positive = [b for b in batch_sizes if b and b > 0]
    low = min(positive, default=1.0)
    high = max(positive, default=64.0)
    return max(low / X_MARGIN, 0.5), high * X_MARGIN


def _batch_axis(ax: Axes, batch_sizes: list[float]) -> tuple[float, float]:
    """Log-2 batch axis with plain integer labels at the powers of two; returns its range."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    left, right = batch_limits(batch_sizes)
    ticks = []
    power = 1
    while power <= right:
        if power >= left:
            ticks.append(power)
        power *= 2
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:,}" for t in ticks])
    ax.set_xlim(left, right)
    ax.set_xlabel("batch size")
    ax.grid(True, which="major", alpha=0.3)
    return left, right


def memory_budget(plan: dict[str, Any]) -> Any:
    """The one memory budget the report names: what the user's ``--memory-budget`` became."""
    budget = lookup(plan, "measured.memory_budget_bytes")
    return budget if is_number(budget) else lookup(plan, "ceiling.budget_bytes")


def search_budget(plan: dict[str, Any]) -> Any:
    """The budget the ceiling probes were held to, when it differs from ``memory_budget``
    (the budget less the allowance kept for ``model.fit``'s own memory); else None."""
    held = lookup(plan, "ceiling.budget_bytes")
    budget = memory_budget(plan)
    if is_number(held) and is_number(budget) and held < budget:
        return held
    return None


def _probe_memory(probe: dict[str, Any]) -> Any:
    value = probe.get("peak_memory_bytes")
    if value is None:
        value = probe.get("peak_device_memory_bytes")
    if value is None:
        value = probe.get("peak_host_memory_bytes")
    return value


def memory_figure(plan: dict[str, Any]) -> Figure:
    """Peak memory against batch size.

    Draws the ceiling probes (ok, oom, failed), the throughput trials, the memory budget
    (and the search budget the probes were held to, when smaller), the fitted memory model,
    the verified ceiling and the chosen batch size. The axes frame the measured points; a
    budget or predicted ceiling far beyond them is an arrow at the edge, not the range.

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
    budget = memory_budget(plan)
    held = search_budget(plan)
    slope = lookup(plan, "ceiling.memory_model.slope_bytes_per_example")
    intercept = lookup(plan, "ceiling.memory_model.intercept_bytes")
    ceiling = plan.get("ceiling_batch_size")
    predicted = lookup(plan, "ceiling.predicted_batch_size")
    chosen = plan.get("batch_size")
    chosen_memory = lookup(plan, "measured.peak_memory_bytes")
    base_batch = lookup(plan, "baseline.batch_size")
    base_memory = lookup(plan, "baseline.peak_memory_bytes")

    # The axes frame what was measured (and the verified ceiling); the prediction is not
    # a measurement and can be far beyond (a model line extrapolated to the budget).
    measured_batches = [p.get("batch_size") for p in probes] + [t.get("batch_size")
                                                                 for t in trials]
    measured_batches += [ceiling, chosen, base_batch]
    batches = [float(b) for b in measured_batches if is_number(b) and b > 0]
    measured_memory = [_probe_memory(p) for p in probes] + [t.get("peak_memory_bytes")
                                                             for t in trials]
    measured_memory += [chosen_memory, base_memory]
    readings = [float(m) for m in measured_memory if is_number(m) and m > 0]
    top_reading = max(readings, default=0.0)
    references = [float(b) for b in (budget, held) if is_number(b) and b > 0]
    # A budget within reach of the readings is drawn in range; a far one is annotated.
    in_range = [b for b in references if not top_reading or b <= OFF_SCALE * top_reading]
    scale, unit = _memory_scale(readings + in_range or references)
    left, right = _batch_axis(ax, batches)
    y_top = max(readings + in_range, default=0.0) * Y_MARGIN / scale

    if is_number(slope) and is_number(intercept) and batches:
        import numpy as np

        xs = np.geomspace(left, right, 64)
        ax.plot(xs, (intercept + slope * xs) / scale, color=_MODEL, linewidth=1.5,
                linestyle="-.", label=f"memory model: {fmt_bytes(intercept)} + "
                f"{fmt_bytes(slope)} per example")
    off_scale: list[str] = []
    if is_number(budget):
        label = f"memory budget {fmt_bytes(budget)}"
        if budget in in_range:
            ax.axhline(budget / scale, color=_BUDGET, linewidth=2, label=label)
        else:
            off_scale.append(label)
    if is_number(held):
        label = (f"search budget {fmt_bytes(held)} (budget less "
                 f"{fmt_bytes(budget - held)} kept for model.fit)")
        if held in in_range:
            ax.axhline(held / scale, color=_BUDGET, linewidth=1.2, linestyle=":", label=label)
        else:
            off_scale.append(label)

    ok = [(p["batch_size"], _probe_memory(p)) for p in probes
          if p.get("outcome") == "ok" and is_number(_probe_memory(p))]
    if ok:
        ax.scatter([b for b, _ in ok], [m / scale for _, m in ok], color=_OK, zorder=3,
                   clip_on=False, label="ceiling probe: fits")
    trial_points = [(t["batch_size"], t["peak_memory_bytes"]) for t in trials
                    if is_number(t.get("batch_size")) and is_number(t.get("peak_memory_bytes"))]
    if trial_points:
        ax.scatter([b for b, _ in trial_points], [m / scale for _, m in trial_points],
                   color=_TRIAL, marker="^", s=22, alpha=0.7, zorder=3, clip_on=False,
                   label="throughput trial")
    # An oom probe was stopped before its peak: draw it at the last reading, or at the top
    # of the frame when the watchdog recorded none (the budget line when it is in range).
    def stopped_at(probe: dict[str, Any]) -> float:
        value = _probe_memory(probe)
        if is_number(value):
            return float(value) / scale
        line = held if is_number(held) else budget
        if is_number(line) and line in in_range:
            return float(line) / scale
        return y_top / Y_MARGIN

    oom = [p for p in probes if p.get("outcome") == "oom" and is_number(p.get("batch_size"))]
    if oom:
        ax.scatter([p["batch_size"] for p in oom], [stopped_at(p) for p in oom], color=_OOM,
                   marker="x", s=70, linewidths=2.5, zorder=4, clip_on=False,
                   label="ceiling probe: out of memory")
    failed = [p for p in probes if p.get("outcome") in ("timeout", "crash")
              and is_number(p.get("batch_size"))]
    if failed:
        ax.scatter([p["batch_size"] for p in failed], [stopped_at(p) for p in failed],
                   color=_FAILED, marker="X", s=50, zorder=4, clip_on=False,
                   label="ceiling probe: timeout or crash")
    if is_number(predicted) and predicted != ceiling and predicted > 0:
        label = f"predicted ceiling {fmt_count(predicted)}"
        if left <= predicted <= right:
            ax.axvline(predicted, color=_MODEL, linestyle=":", linewidth=1.2, label=label)
        else:
            off_scale.append(label + (" →" if predicted > right else " ←"))
    if is_number(ceiling):
        ax.axvline(ceiling, color=_OOM, linestyle="--", linewidth=1.5,
                   label=f"verified ceiling {fmt_count(ceiling)}")
    if is_number(chosen) and is_number(chosen_memory):
        ax.scatter([chosen], [chosen_memory / scale], color=_CHOSEN, marker="*", s=180,
                   zorder=5, clip_on=False, label=f"chosen batch {fmt_count(chosen)}")
    if is_number(base_batch) and is_number(base_memory):
        ax.scatter([base_batch], [base_memory / scale], color=_BASELINE, marker="s", s=45,
                   zorder=4, clip_on=False,
                   label=f"untuned default (batch {fmt_count(base_batch)})")
    if y_top > 0:
        ax.set_ylim(0, y_top)
    else:
        ax.set_ylim(bottom=0)
    if off_scale:
        # Beyond the frame: said under the legend, outside the axes (inside, the box
        # would hide the largest probes, in the top right), with the way each lies.
        ax.annotate("beyond the frame:\n" + "\n".join(
            text if text.endswith(("→", "←")) else text + " ↑" for text in off_scale),
            xy=(1.02, 0.0), xycoords="axes fraction", ha="left", va="bottom",
            fontsize="small", color="#444",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#ccc"})
    ax.set_ylabel(f"peak memory ({unit})")
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
                   color=_TRIAL, alpha=0.75, zorder=3, clip_on=False, label="trial")
        best: dict[float, float] = {}
        for t in complete:
            best[t["batch_size"]] = max(best.get(t["batch_size"], 0.0), t["examples_per_s"])
        xs = sorted(best)
        ax.plot(xs, [best[x] for x in xs], color=_TRIAL, linewidth=1, alpha=0.6,
                label="best trial per batch size")
    if pruned:
        ax.scatter([t["batch_size"] for t in pruned], [t["examples_per_s"] for t in pruned],
                   facecolors="none", edgecolors=_TRIAL, alpha=0.75, zorder=3,
                   clip_on=False, label="trial (pruned or failed)")
    if is_number(base_rate):
        ax.axhline(base_rate, color=_BASELINE, linestyle="--", linewidth=1.2,
                   label=f"untuned default: {fmt_rate(base_rate)}")
        if is_number(base_batch):
            ax.scatter([base_batch], [base_rate], color=_BASELINE, marker="s", s=60, zorder=4,
                       clip_on=False,
                       label=f"untuned default (batch {fmt_count(base_batch)}, AUTOTUNE)")
    if is_number(chosen) and is_number(chosen_rate):
        ax.scatter([chosen], [chosen_rate], color=_CHOSEN, marker="*", s=220, zorder=5,
                   clip_on=False,
                   label=f"chosen: batch {fmt_count(chosen)}, {fmt_rate(chosen_rate)}")
    ax.set_ylabel("examples/s")
    rates = [float(t["examples_per_s"]) for t in trials]
    rates += [float(r) for r in (chosen_rate, base_rate) if is_number(r)]
    top = max(rates, default=0.0)
    if top > 0:
        ax.set_ylim(0, top * Y_MARGIN)  # room above the highest marker (the star's points)
    else:
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
