"""The page's summary: the headline against the untuned default, and the plots' captions."""

from __future__ import annotations

from typing import Any

from autobatch._report._format import fmt_factor, input_bound_sentence, is_number, lookup
from autobatch._report._goodput import summary_line
from autobatch._report._markup import budget_key, default_reference, derived, esc, num
from autobatch._report._plots import search_budget


def _headline(plan: dict[str, Any]) -> str:
    """The result against the untuned default, first on the page.

    From ``measured.versus_default`` (the tuned pick and the default measured side by side
    in interleaved ``model.fit`` rounds): the median paired ratio with its spread, or, when
    the tune kept the default, that no candidate beat it beyond the noise. A plan from
    before that comparison falls back to the two separate readings. A slowdown is never
    reported as the result.
    """
    versus = lookup(plan, "measured.versus_default")
    if isinstance(versus, dict):
        median = versus.get("median_ratio")
        key = "measured.versus_default"
        if versus.get("decision") == "tuned" and is_number(median) and median > 1:
            spread = ""
            if is_number(versus.get("low")) and is_number(versus.get("high")):
                spread = (f", spread {num(plan, f'{key}.low', 'factor')}–"
                          f"{num(plan, f'{key}.high', 'factor')}")
            rounds = ""
            if is_number(versus.get("rounds")):
                rounds = (f" over {num(plan, f'{key}.rounds', 'count')} interleaved "
                          "model.fit rounds")
            text = (f"<b>{num(plan, f'{key}.median_ratio', 'factor')}</b> the training "
                    f"speed of {default_reference(plan)}: the median of the tuned pick's "
                    f"paired ratios to the default{rounds}{spread}.")
            return f'<p id="headline" class="headline">{text}</p>'
        reason = versus.get("reason")
        why = f" ({esc(reason)})" if reason else ""
        if versus.get("decision") == "tuned":  # a pick that did not read faster
            return ('<p id="headline" class="headline">No speed-up over '
                    f"{default_reference(plan)} beyond the noise{why}.</p>")
        return ('<p id="headline" class="headline">Kept the untuned default: no candidate '
                f"beat it beyond the noise{why}.</p>")
    tuned = lookup(plan, "measured.examples_per_s")
    base = lookup(plan, "baseline.examples_per_s")
    if not (is_number(tuned) and is_number(base) and base > 0):
        return ""
    ratio = tuned / base
    if ratio > 1:
        text = (f"{derived('speedup', ratio, fmt_factor(ratio))} the throughput of "
                f"{default_reference(plan)} (separate runs: this plan predates the "
                "side-by-side comparison).")
    else:
        text = (f"No speed-up over {default_reference(plan)} was measured (this plan "
                "predates the side-by-side comparison).")
    return f'<p id="headline" class="headline">{text}</p>'


def _baseline_sentence(plan: dict[str, Any]) -> str:
    # With the side-by-side comparison the headline says it; two readings from different
    # runs next to each other would read as a result they are not.
    if isinstance(lookup(plan, "measured.versus_default"), dict):
        return ""
    if not is_number(lookup(plan, "baseline.examples_per_s")):
        return ""
    text = default_reference(plan)
    return (f" {text[0].upper()}{text[1:]} ran at "
            f"{num(plan, 'baseline.examples_per_s', 'rate')} in its own probe.")


def _tune_cost(plan: dict[str, Any]) -> str:
    """What the tune cost and what it expects to win back (``measured.effort``,
    ``measured.tune_time``), when the plan records them."""
    effort = lookup(plan, "measured.effort")
    spent = lookup(plan, "measured.tune_time.total_s")
    if not isinstance(effort, dict) and not is_number(spent):
        return ""
    text = ""
    if is_number(spent):
        text = f"The tune took {num(plan, 'measured.tune_time.total_s', 'seconds')}. "
    if isinstance(effort, dict):
        text += f"{esc(str(effort.get('reason', '')))}."
        if is_number(effort.get("expected_saving_s")):
            text += (f" Expected saving over the untuned job, the tune's cost taken off: "
                     f"{num(plan, 'measured.effort.expected_saving_s', 'seconds')}.")
    text += " A later fit with this cached plan tunes nothing."
    return f'<p id="tune-cost">{text}</p>'


def summary_section(plan: dict[str, Any]) -> str:
    wait = lookup(plan, "measured.input_wait_fraction")
    sentence = input_bound_sentence(wait)
    css = sentence.split(":", 1)[0].replace(" ", "-")
    replicas = lookup(plan, "num_replicas")
    split = (f" ({num(plan, 'per_replica_batch_size', 'count')} per replica on "
             f"{num(plan, 'num_replicas', 'count')} replicas)"
             if is_number(replicas) and replicas > 1 else "")
    parts = [
        _headline(plan),
        f"<p>Train with batch size <b>{num(plan, 'batch_size', 'count')}</b>{split}: "
        f"{num(plan, 'steps_per_epoch', 'count')} steps per epoch cover all "
        f"{num(plan, 'num_examples', 'count')} examples once per epoch. "
        f"It ran at {num(plan, 'measured.examples_per_s', 'rate')} with a peak of "
        f"{num(plan, 'measured.peak_memory_bytes', 'bytes')} against the memory budget of "
        f"{num(plan, budget_key(plan), 'bytes')}; the largest batch verified to "
        f"fit is {num(plan, 'ceiling_batch_size', 'count')}.{_baseline_sentence(plan)}</p>",
        f'<p id="input-wait" class="verdict {esc(css)}">{esc(sentence)}</p>',
        _tune_cost(plan),
        summary_line(plan),
    ]
    if sentence.startswith("input-bound") and not lookup(plan, "measured.data_service"):
        parts.append('<p id="data-service-hint">Where this host\'s cores are all busy '
                     "decoding, a tf.data service (--data-service grpc://HOST:PORT) can make "
                     "the examples on other machines.</p>")
    return '<section class="summary">' + "".join(parts) + "</section>"


def memory_caption(plan: dict[str, Any]) -> str:
    probes = lookup(plan, "ceiling.probes") or []
    ooms = sum(1 for p in probes if isinstance(p, dict) and p.get("outcome") == "oom")
    text = f"{len(probes)} ceiling probe(s), {ooms} out of memory."
    if is_number(lookup(plan, budget_key(plan))):
        text += f" Memory budget {num(plan, budget_key(plan), 'bytes')}"
        if search_budget(plan) is not None:
            text += (f"; the probes were held to a search budget of "
                     f"{num(plan, 'ceiling.budget_bytes', 'bytes')}")
            if is_number(lookup(plan, "ceiling.fit_allowance_bytes")):
                text += (f", which keeps {num(plan, 'ceiling.fit_allowance_bytes', 'bytes')}"
                         " for model.fit's own memory")
        text += "."
    if lookup(plan, "ceiling.probe_mode") == "fit, fresh worker":
        text += (" Each probe trained with model.fit in a fresh worker, so its peak is a "
                 "training process's own, fit's heavier first step included.")
    if is_number(lookup(plan, "ceiling.memory_model.slope_bytes_per_example")):
        text += (f" Memory model: {num(plan, 'ceiling.memory_model.intercept_bytes', 'bytes')}"
                 f" + {num(plan, 'ceiling.memory_model.slope_bytes_per_example', 'bytes')} "
                 "per example")
        if is_number(lookup(plan, "ceiling.predicted_batch_size")):
            text += (", which predicts a ceiling of "
                     f"{num(plan, 'ceiling.predicted_batch_size', 'count')}")
        text += "."
    text += f" Verified ceiling: {num(plan, 'ceiling_batch_size', 'count')}"
    if is_number(lookup(plan, "ceiling.per_replica_batch_size")):
        # The probes' batches (and this memory model) are per replica; the tightest device
        # of every replica's decided.
        text += (f" ({num(plan, 'ceiling.per_replica_batch_size', 'count')} per replica on "
                 f"{num(plan, 'ceiling.num_replicas', 'count')} replicas; batches in this "
                 "plot are per replica)")
    text += "."
    if is_number(lookup(plan, "ceiling.first_failing_batch_size")):
        text += (" Smallest batch that did not fit: "
                 f"{num(plan, 'ceiling.first_failing_batch_size', 'count')}.")
    if lookup(plan, "ceiling.capped_by"):
        text += f" The ceiling is capped by {num(plan, 'ceiling.capped_by')}."
    return text


def throughput_caption(plan: dict[str, Any]) -> str:
    trials = plan.get("trials") or []
    return (f"{len(trials)} trial(s). Chosen: batch {num(plan, 'batch_size', 'count')} at "
            f"{num(plan, 'measured.examples_per_s', 'rate')}, median step "
            f"{num(plan, 'measured.step_time_s', 'seconds')}.")
