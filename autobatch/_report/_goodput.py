"""The goodput objective on the page: the noise scale, efficiency and goodput against batch.

Only a plan tuned with ``--objective goodput`` (``measured.objective``, written by
``_search/_goodput``) gets this figure and section; a throughput plan's page is as before.
The efficiency curve is ``NoiseScale.efficiency``, the weight the search ranked by; a noise
scale the draws could not resolve (or a failed noise probe) weighs every batch 1, and the
figure and the section say so. Figures follow ``_plots``: ``Figure`` and Agg, never pyplot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autobatch._noise import NoiseScale
from autobatch._report._format import fmt_count, fmt_scale, is_number, lookup
from autobatch._report._markup import esc, num
from autobatch._report._plots import (
    _CHOSEN,
    _MODEL,
    _OK,
    _TRIAL,
    DPI,
    FIGURE_SIZE_IN,
    Y_MARGIN,
    _batch_axis,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KEY = "measured.objective"
NOISE_KEY = f"{KEY}.noise_scale"
NOISE_IN_FRAME = 8.0
"""``B_simple`` up to this factor beyond the largest measured batch widens the batch axis
to it (the efficiency's knee is the point of the figure); further out it is annotated."""
_NOISE = "#e377c2"


def goodput_record(plan: dict[str, Any]) -> dict[str, Any] | None:
    """The plan's goodput objective record, or None (a throughput plan)."""
    record = lookup(plan, KEY)
    if isinstance(record, dict) and record.get("name") == "goodput":
        return record
    return None


def reference_batch(record: dict[str, Any]) -> float:
    reference = record.get("reference_batch_size")
    return float(reference) if is_number(reference) and reference > 0 else 32.0


def resolved_scale(record: dict[str, Any]) -> NoiseScale | None:
    """The record's noise scale when it was resolved (the search weighed batches by it)."""
    noise = record.get("noise_scale")
    if not isinstance(noise, dict) or noise.get("resolved") is False:
        return None
    try:
        scale = NoiseScale.from_dict(noise)
    except (TypeError, ValueError):
        return None
    return scale if scale.resolved and scale.b_simple > 0 else None


def efficiency_of(record: dict[str, Any]) -> Callable[[float], float]:
    """Efficiency against batch size as the search weighed it (1 when unresolved)."""
    scale = resolved_scale(record)
    reference = reference_batch(record)
    if scale is None:
        return lambda batch: 1.0
    return lambda batch: scale.efficiency(batch, reference)


def _trial_points(plan: dict[str, Any]) -> list[tuple[float, float, float]]:
    """``(batch, examples/s, goodput)`` of every measured trial."""
    points = []
    for trial in plan.get("trials") or []:
        if not isinstance(trial, dict):
            continue
        batch, rate = trial.get("batch_size"), trial.get("examples_per_s")
        if not (is_number(batch) and batch > 0 and is_number(rate)):
            continue
        goodput = trial.get("goodput")
        if not is_number(goodput):  # stored only where the efficiency is not 1
            efficiency = trial.get("efficiency")
            goodput = rate * (efficiency if is_number(efficiency) else 1.0)
        points.append((float(batch), float(rate), float(goodput)))
    return points


def _finalists(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in record.get("finalists") or [] if isinstance(f, dict)]


def _state(record: dict[str, Any]) -> str:
    """The title's word on the noise scale."""
    scale = resolved_scale(record)
    if scale is not None:
        spread = (f" ({fmt_scale(scale.low)}–{fmt_scale(scale.high)})"
                  if is_number(scale.low) and is_number(scale.high) else "")
        return f"B_simple {fmt_scale(scale.b_simple)}{spread}"
    if isinstance(record.get("noise_scale"), dict):
        return "noise scale unresolved: efficiency 1 for every batch"
    return "noise scale not measured: efficiency 1 for every batch"


def goodput_figure(plan: dict[str, Any]) -> Figure:
    """Examples/s and goodput of the trials, and the efficiency curve, against batch size.

    Left axis: every measured trial's examples/s and its goodput (examples/s x efficiency);
    right axis: the efficiency ``(B_noise + B0) / (B_noise + B)`` over the batch range, with
    ``B_simple`` as a vertical line and its spread shaded; the chosen batch is a star at
    its goodput (or a line). An unresolved noise scale draws efficiency 1 and says so.

    Args:
        plan: a plan dict with a goodput ``measured.objective`` (else an empty frame).

    Returns:
        A matplotlib Figure, not yet rendered.
    """
    import numpy as np
    from matplotlib.figure import Figure

    record = goodput_record(plan) or {}
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    points = _trial_points(plan)
    finalists = _finalists(record)
    chosen = plan.get("batch_size")
    scale = resolved_scale(record)
    efficiency = efficiency_of(record)
    reference = reference_batch(record)

    batches = [b for b, _, _ in points] + [float(f["batch_size"]) for f in finalists
                                           if is_number(f.get("batch_size"))]
    batches += [float(chosen)] if is_number(chosen) and chosen > 0 else []
    off_scale = ""
    if scale is not None:
        reach = NOISE_IN_FRAME * max(batches, default=scale.b_simple)
        if scale.b_simple <= reach:  # in the frame with its spread (a far end is cut)
            batches += [v for v in (scale.b_simple, scale.low, scale.high)
                        if is_number(v) and 0 < v <= reach]
        else:
            off_scale = f"B_simple {fmt_scale(scale.b_simple)} →"
    left, right = _batch_axis(ax, batches)

    if points:
        ax.scatter([b for b, _, _ in points], [r for _, r, _ in points], color=_TRIAL,
                   alpha=0.75, zorder=3, clip_on=False, label="trial: examples/s")
        ax.scatter([b for b, _, _ in points], [g for _, _, g in points], color=_OK,
                   marker="D", s=26, alpha=0.8, zorder=3, clip_on=False,
                   label="trial: goodput (examples/s × efficiency)")
    chosen_goodput = next((f.get("goodput") for f in finalists
                           if f.get("batch_size") == chosen and is_number(f.get("goodput"))),
                          None)
    if is_number(chosen) and is_number(chosen_goodput):
        ax.scatter([chosen], [chosen_goodput], color=_CHOSEN, marker="*", s=220, zorder=5,
                   clip_on=False, label=f"chosen: batch {fmt_count(chosen)}, goodput "
                   f"{chosen_goodput:,.1f}/s")
    elif is_number(chosen):
        ax.axvline(chosen, color=_CHOSEN, linestyle="--", linewidth=1.2,
                   label=f"chosen batch {fmt_count(chosen)}")
    rates = [r for _, r, g in points] + [g for _, _, g in points]
    rates += [float(chosen_goodput)] if is_number(chosen_goodput) else []
    top = max(rates, default=0.0)
    if top > 0:
        ax.set_ylim(0, top * Y_MARGIN)
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("examples/s")

    twin = ax.twinx()
    xs = np.geomspace(left, right, 128)
    curve = [efficiency(float(x)) for x in xs]
    twin.plot(xs, curve, color=_MODEL, linewidth=1.5, linestyle="-.",
              label=f"efficiency (B_noise + {fmt_count(reference)}) / (B_noise + B)"
              if scale is not None else "efficiency 1 (noise scale unresolved)")
    if scale is not None and not off_scale:
        if is_number(scale.low) and is_number(scale.high) and scale.high > scale.low:
            twin.axvspan(max(scale.low, left), min(scale.high, right), color=_NOISE,
                         alpha=0.15, label="B_simple spread (16th–84th percentile)")
        twin.axvline(scale.b_simple, color=_NOISE, linewidth=1.5,
                     label=f"B_simple {fmt_scale(scale.b_simple)}")
    twin.set_ylim(0, max(1.0, max(curve, default=1.0)) * 1.1)
    twin.set_ylabel("statistical efficiency")
    twin.set_xlim(left, right)
    if off_scale:
        ax.annotate(f"beyond the frame:\n{off_scale}", xy=(1.12, 0.0), xycoords="axes fraction",
                    ha="left", va="bottom", fontsize="small", color="#444",
                    bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#ccc"})
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    # Outside, right of the efficiency axis' labels: inside it would hide the points.
    ax.legend(handles + more, labels + more_labels, loc="upper left",
              bbox_to_anchor=(1.12, 1.0), fontsize="small", frameon=False, borderaxespad=0.0)
    ax.set_title(f"Goodput against batch size: {_state(record)}")
    fig.tight_layout()
    return fig


def noise_sentence(plan: dict[str, Any]) -> str:
    """One sentence on the noise scale the ranking used, tagged numbers included."""
    record = goodput_record(plan)
    if record is None:
        return ""
    noise = record.get("noise_scale")
    if not isinstance(noise, dict):
        return ("The noise probe failed: no gradient noise scale was measured, so every batch "
                "counts fully (efficiency 1) and the ranking is by examples/s.")
    drawn = ""
    if is_number(noise.get("small_batch_size")) and is_number(noise.get("large_batch_size")):
        drawn = (f" from {num(plan, f'{NOISE_KEY}.repeats', 'count')} draws of batches of "
                 f"{num(plan, f'{NOISE_KEY}.small_batch_size', 'count')} and "
                 f"{num(plan, f'{NOISE_KEY}.large_batch_size', 'count')}")
    if resolved_scale(record) is None:
        return (f"The gradient noise scale was unresolved{drawn}: |G|² did not stand out of "
                "the noise, so B_simple is far above these batches, every batch counts fully "
                "(efficiency 1) and the ranking is by examples/s.")
    bounds = _noise_range(plan, noise)
    spread = (f" (spread {bounds}, the bootstrap's 16th to 84th percentile)" if bounds
              else "")
    return (f"Gradient noise scale B_simple <b>{num(plan, f'{NOISE_KEY}.b_simple', 'scale')}"
            f"</b> examples{spread}{drawn}.")


def _noise_range(plan: dict[str, Any], noise: dict[str, Any]) -> str:
    """The noise scale's spread, ``low–high`` as tagged numbers ("" where not finite)."""
    if not (is_number(noise.get("low")) and is_number(noise.get("high"))):
        return ""
    return (f"{num(plan, f'{NOISE_KEY}.low', 'scale')}–"
            f"{num(plan, f'{NOISE_KEY}.high', 'scale')}")


def objective_section(plan: dict[str, Any]) -> str:
    """The objective, the noise scale and each finalist's examples/s, efficiency, goodput."""
    record = goodput_record(plan)
    if record is None:
        return ""
    reference = num(plan, f"{KEY}.reference_batch_size", "count")
    parts = [f'<p id="objective">Ranked by <b>goodput</b>: examples/s × statistical '
             f"efficiency (B_noise + {reference}) / (B_noise + B), the share of a batch's "
             f"examples that buy progress as those of the reference batch {reference} do "
             "(Pollux). " + noise_sentence(plan) + "</p>"]
    finalists = _finalists(record)
    if finalists:
        rows = []
        for index, entry in enumerate(finalists):
            key = f"{KEY}.finalists.{index}"
            rank = str(index + 1) + (" (untuned default)" if entry.get("is_default") else "")
            cells = [esc(rank), num(plan, f"{key}.batch_size", "count"),
                     num(plan, f"{key}.examples_per_s", "rate"),
                     num(plan, f"{key}.efficiency", "fraction"),
                     num(plan, f"{key}.goodput", "rate")]
            rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        parts.append('<table id="objective-finalists"><tr><th>finalist</th><th>batch</th>'
                     "<th>examples/s (model.fit median)</th><th>efficiency</th>"
                     f"<th>goodput</th></tr>{''.join(rows)}</table>")
    return "".join(parts)


def goodput_caption(plan: dict[str, Any]) -> str:
    record = goodput_record(plan) or {}
    count = len(_trial_points(plan))
    return (f"{count} trial(s), each at its examples/s and its goodput; the efficiency curve "
            f"is the weight the search ranked by ({esc(_state(record))}).")


def summary_line(plan: dict[str, Any]) -> str:
    """The summary's one line on the objective (empty for a throughput plan)."""
    record = goodput_record(plan)
    if record is None:
        return ""
    if resolved_scale(record) is None:
        text = ("Ranked by goodput, but with no resolved gradient noise scale: every batch "
                "counted fully (efficiency 1), so by examples/s.")
    else:
        noise = record["noise_scale"]
        bounds = _noise_range(plan, noise)
        spread = f" ({bounds})" if bounds else ""
        text = (f"Ranked by goodput under a gradient noise scale B_simple of "
                f"{num(plan, f'{NOISE_KEY}.b_simple', 'scale')}{spread}")
        chosen = next((i for i, f in enumerate(_finalists(record))
                       if f.get("batch_size") == plan.get("batch_size")
                       and is_number(f.get("efficiency"))), None)
        if chosen is not None:
            text += (f": batch {num(plan, 'batch_size', 'count')} keeps "
                     f"{num(plan, f'{KEY}.finalists.{chosen}.efficiency', 'fraction')} "
                     "statistical efficiency")
        text += "."
    return f'<p id="objective-summary">{text}</p>'
