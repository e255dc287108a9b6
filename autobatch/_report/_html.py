"""The report page: one self-contained HTML file (inline CSS, plots as data URIs, no script).

Every plan number on the page is written by ``_num``: the formatted text for people, and
``data-key`` (its dotted path in the plan) plus ``data-value`` (the raw JSON value) for the
test that checks the page against the plan. Derived numbers (the speed-up) carry
``data-derived`` instead.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
from collections import Counter
from typing import Any

from autobatch._report._format import (
    FORMATTERS,
    fmt_factor,
    input_bound_sentence,
    is_number,
    lookup,
)
from autobatch._report._plots import search_budget

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
.summary { background: #f4f8fb; border-left: 4px solid #1f77b4; padding: 0.8rem 1rem; }
.verdict { font-weight: 600; }
.headline { font-size: 1.15rem; margin-top: 0; }
.input-bound { color: #b35900; } .compute-bound { color: #2c7a2c; }
table { border-collapse: collapse; margin: 0.5rem 0; }
td, th { padding: 0.25rem 0.8rem; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }
th { color: #555; font-weight: 600; }
.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
code, pre { background: #f5f5f5; padding: 0.1rem 0.3rem; border-radius: 3px; }
pre { padding: 0.6rem; overflow-x: auto; }
.none { color: #888; font-style: italic; }
"""

_PIPELINE_ROWS = (
    ("num_parallel_calls", "parallel map calls"),
    ("prefetch", "prefetched batches"),
    ("cache", "cache"),
    ("private_threadpool_size", "private thread pool (0 = shared)"),
    ("max_intra_op_parallelism", "intra-op parallelism"),
    ("deterministic", "deterministic order"),
    ("shuffle_buffer", "shuffle buffer (0 = full shuffle of the file list)"),
    ("arrays_in_memory", "arrays as one in-memory tensor"),
    ("pixels", "pixel dtype (uint8: the model casts)"),
)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(plan: dict[str, Any], key: str, kind: str = "value") -> str:
    """A plan number as shown, tagged with where it came from."""
    value = lookup(plan, key)
    text = FORMATTERS[kind](value)
    return (f'<span class="num" data-key="{_esc(key)}" data-kind="{kind}" '
            f"data-value='{_esc(json.dumps(value))}'>{_esc(text)}</span>")


def _rows(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_esc(label)}</th><td>{cell}</td></tr>" for label, cell in rows)
    return f"<table>{body}</table>"


def _none(text: str) -> str:
    return f'<p class="none">{_esc(text)}</p>'


def _figure(png: bytes, alt: str, caption: str, plot_id: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img id="{plot_id}" alt="{_esc(alt)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _derived(name: str, value: float, text: str) -> str:
    return (f'<span class="num" data-derived="{_esc(name)}" '
            f"data-value='{_esc(json.dumps(value))}'>{_esc(text)}</span>")


def _budget_key(plan: dict[str, Any]) -> str:
    """The plan key of the one memory budget the page names (see ``memory_budget``)."""
    if is_number(lookup(plan, "measured.memory_budget_bytes")):
        return "measured.memory_budget_bytes"
    return "ceiling.budget_bytes"


def _default_reference(plan: dict[str, Any]) -> str:
    if not is_number(lookup(plan, "baseline.batch_size")):
        return "the untuned default (AUTOTUNE)"
    return (f"the untuned default (batch {_num(plan, 'baseline.batch_size', 'count')}, "
            "AUTOTUNE)")


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
                spread = (f", spread {_num(plan, f'{key}.low', 'factor')}–"
                          f"{_num(plan, f'{key}.high', 'factor')}")
            rounds = ""
            if is_number(versus.get("rounds")):
                rounds = (f" over {_num(plan, f'{key}.rounds', 'count')} interleaved "
                          "model.fit rounds")
            text = (f"<b>{_num(plan, f'{key}.median_ratio', 'factor')}</b> the training "
                    f"speed of {_default_reference(plan)}: the median of the tuned pick's "
                    f"paired ratios to the default{rounds}{spread}.")
            return f'<p id="headline" class="headline">{text}</p>'
        reason = versus.get("reason")
        why = f" ({_esc(reason)})" if reason else ""
        if versus.get("decision") == "tuned":  # a pick that did not read faster
            return ('<p id="headline" class="headline">No speed-up over '
                    f"{_default_reference(plan)} beyond the noise{why}.</p>")
        return ('<p id="headline" class="headline">Kept the untuned default: no candidate '
                f"beat it beyond the noise{why}.</p>")
    tuned = lookup(plan, "measured.examples_per_s")
    base = lookup(plan, "baseline.examples_per_s")
    if not (is_number(tuned) and is_number(base) and base > 0):
        return ""
    ratio = tuned / base
    if ratio > 1:
        text = (f"{_derived('speedup', ratio, fmt_factor(ratio))} the throughput of "
                f"{_default_reference(plan)} (separate runs: this plan predates the "
                "side-by-side comparison).")
    else:
        text = (f"No speed-up over {_default_reference(plan)} was measured (this plan "
                "predates the side-by-side comparison).")
    return f'<p id="headline" class="headline">{text}</p>'


def _baseline_sentence(plan: dict[str, Any]) -> str:
    # With the side-by-side comparison the headline says it; two readings from different
    # runs next to each other would read as a result they are not.
    if isinstance(lookup(plan, "measured.versus_default"), dict):
        return ""
    if not is_number(lookup(plan, "baseline.examples_per_s")):
        return ""
    text = _default_reference(plan)
    return (f" {text[0].upper()}{text[1:]} ran at "
            f"{_num(plan, 'baseline.examples_per_s', 'rate')} in its own probe.")


def _summary(plan: dict[str, Any]) -> str:
    wait = lookup(plan, "measured.input_wait_fraction")
    sentence = input_bound_sentence(wait)
    css = sentence.split(":", 1)[0].replace(" ", "-")
    parts = [
        _headline(plan),
        f"<p>Train with batch size <b>{_num(plan, 'batch_size', 'count')}</b>: "
        f"{_num(plan, 'steps_per_epoch', 'count')} steps per epoch cover all "
        f"{_num(plan, 'num_examples', 'count')} examples once per epoch. "
        f"It ran at {_num(plan, 'measured.examples_per_s', 'rate')} with a peak of "
        f"{_num(plan, 'measured.peak_memory_bytes', 'bytes')} against the memory budget of "
        f"{_num(plan, _budget_key(plan), 'bytes')}; the largest batch verified to "
        f"fit is {_num(plan, 'ceiling_batch_size', 'count')}.{_baseline_sentence(plan)}</p>",
        f'<p id="input-wait" class="verdict {_esc(css)}">{_esc(sentence)}</p>',
    ]
    return '<section class="summary">' + "".join(parts) + "</section>"


def _memory_caption(plan: dict[str, Any]) -> str:
    probes = lookup(plan, "ceiling.probes") or []
    ooms = sum(1 for p in probes if isinstance(p, dict) and p.get("outcome") == "oom")
    text = f"{len(probes)} ceiling probe(s), {ooms} out of memory."
    if is_number(lookup(plan, _budget_key(plan))):
        text += f" Memory budget {_num(plan, _budget_key(plan), 'bytes')}"
        if search_budget(plan) is not None:
            text += (f"; the probes were held to a search budget of "
                     f"{_num(plan, 'ceiling.budget_bytes', 'bytes')}")
            if is_number(lookup(plan, "ceiling.fit_allowance_bytes")):
                text += (f", which keeps {_num(plan, 'ceiling.fit_allowance_bytes', 'bytes')}"
                         " for model.fit's own memory")
        text += "."
    if is_number(lookup(plan, "ceiling.memory_model.slope_bytes_per_example")):
        text += (f" Memory model: {_num(plan, 'ceiling.memory_model.intercept_bytes', 'bytes')}"
                 f" + {_num(plan, 'ceiling.memory_model.slope_bytes_per_example', 'bytes')} "
                 "per example")
        if is_number(lookup(plan, "ceiling.predicted_batch_size")):
            text += (", which predicts a ceiling of "
                     f"{_num(plan, 'ceiling.predicted_batch_size', 'count')}")
        text += "."
    text += f" Verified ceiling: {_num(plan, 'ceiling_batch_size', 'count')}."
    if is_number(lookup(plan, "ceiling.first_failing_batch_size")):
        text += (" Smallest batch that did not fit: "
                 f"{_num(plan, 'ceiling.first_failing_batch_size', 'count')}.")
    if lookup(plan, "ceiling.capped_by"):
        text += f" The ceiling is capped by {_num(plan, 'ceiling.capped_by')}."
    return text


def _throughput_caption(plan: dict[str, Any]) -> str:
    trials = plan.get("trials") or []
    return (f"{len(trials)} trial(s). Chosen: batch {_num(plan, 'batch_size', 'count')} at "
            f"{_num(plan, 'measured.examples_per_s', 'rate')}, median step "
            f"{_num(plan, 'measured.step_time_s', 'seconds')}.")


def _settings(plan: dict[str, Any]) -> str:
    rows = [
        ("batch size (global)", _num(plan, "batch_size", "count")),
        ("per-replica batch size", _num(plan, "per_replica_batch_size", "count")),
        ("replicas", _num(plan, "num_replicas", "count")),
        ("steps per epoch", _num(plan, "steps_per_epoch", "count")),
        ("examples", _num(plan, "num_examples", "count")),
        ("image size (height × width)", _num(plan, "image_size")),
        ("channels", _num(plan, "channels", "count")),
        ("XLA jit_compile", _num(plan, "jit_compile")),
    ]
    pipeline = plan.get("pipeline") or {}
    for name, label in _PIPELINE_ROWS:
        if name in pipeline:
            kind = "setting" if name in ("num_parallel_calls", "prefetch") else "value"
            rows.append((label, _num(plan, f"pipeline.{name}", kind)))
    rows += [
        ("throughput", _num(plan, "measured.examples_per_s", "rate")),
        ("median step time", _num(plan, "measured.step_time_s", "seconds")),
        ("share of step waiting for input", _num(plan, "measured.input_wait_fraction",
                                                 "fraction")),
        ("peak memory (budgeted)", _num(plan, "measured.peak_memory_bytes", "bytes")),
        ("peak host memory", _num(plan, "measured.peak_host_memory_bytes", "bytes")),
        ("peak device memory", _num(plan, "measured.peak_device_memory_bytes", "bytes")),
    ]
    if is_number(lookup(plan, "baseline.examples_per_s")):
        rows.append(("untuned default, in its own probe",
                     _num(plan, "baseline.examples_per_s", "rate")))
    return _rows(rows)


def _finalists(plan: dict[str, Any]) -> str:
    """The trials' best points, re-measured side by side with ``model.fit``: why this plan."""
    finalists = [f for f in lookup(plan, "measured.finalists") or [] if isinstance(f, dict)]
    if len(finalists) < 2:
        return _none("No finalists were compared: one point was measured, or the plan "
                     "predates the comparison.")
    with_versus = any(isinstance(f.get("versus_default"), dict) for f in finalists)
    head = ("<tr><th>rank</th><th>batch</th><th>parallel map calls</th><th>prefetch</th>"
            "<th>cache</th><th>trials (step loop)</th><th>model.fit, each round</th>"
            "<th>relative score</th>"
            + ("<th>against the default (median)</th>" if with_versus else "") + "</tr>")
    rows = []
    unmeasured = 0
    for index, entry in enumerate(finalists):
        key = f"measured.finalists.{index}"
        readings = entry.get("fit_examples_per_s") or []
        if readings:
            fit = ", ".join(_num(plan, f"{key}.fit_examples_per_s.{j}", "rate")
                            for j in range(len(readings)))
        elif entry.get("failed_under_fit"):
            fit = _esc("failed under model.fit")
        else:
            unmeasured += 1
            fit = '<span class="none">no round</span>'
        score = (_num(plan, f"{key}.relative_score", "factor")
                 if is_number(entry.get("relative_score")) else "-")
        rank = str(index + 1) + (" (untuned default)" if entry.get("is_default") else "")
        cells = [_esc(rank), _num(plan, f"{key}.batch_size", "count"),
                 _num(plan, f"{key}.num_parallel_calls", "setting"),
                 _num(plan, f"{key}.prefetch", "setting"),
                 _num(plan, f"{key}.cache"), _num(plan, f"{key}.trial_examples_per_s", "rate"),
                 fit, score]
        if with_versus:
            median = lookup(entry, "versus_default.median_ratio")
            cells.append(_num(plan, f"{key}.versus_default.median_ratio", "factor")
                         if is_number(median) else "-")
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    note = ("Ranked by the model.fit readings (the way the plan trains; the trials' bare "
            "step loop reads differently), each relative to the geometric mean of its round, so "
            "that the machine's drift between rounds cancels. The first to pass the long "
            "verify run in a fresh worker is the plan.")
    parts = [f'<table id="finalists">{head}{"".join(rows)}</table>',
             f'<p class="sub">{_esc(note)}</p>']
    if unmeasured:
        everyone = unmeasured == len(finalists)
        parts.insert(0, '<p id="finalists-unmeasured">'
                     + _esc(("No finalist" if everyone else f"{unmeasured} finalist(s)")
                            + " got a model.fit round: the time budget ran out after the study, "
                            "so the ranking is the trials' (step loop). A larger --time-budget "
                            "leaves room for the side-by-side rounds.") + "</p>")
    return "".join(parts)


def _learning_rate(plan: dict[str, Any]) -> str:
    lr = plan.get("learning_rate")
    if not isinstance(lr, dict):
        return _none("No learning-rate suggestion in this plan.")
    rule = lr.get("rule") or "none"
    optimizer = lr.get("optimizer")
    opt_text = f" ({_esc(optimizer)})" if optimizer else ""
    if rule == "none" or not is_number(lr.get("factor")):
        sentence = (f"Keep the optimizer's learning rate{opt_text} as tuned for your batch size "
                    f"(rule: {_esc(rule)}).")
    else:
        sentence = (f"Multiply the optimizer's learning rate{opt_text} by "
                    f"<b>{_num(plan, 'learning_rate.factor', 'factor')}</b> ({_esc(rule)} rule: "
                    f"batch {_num(plan, 'batch_size', 'count')} against the reference batch "
                    f"{_num(plan, 'learning_rate.reference_batch_size', 'count')}).")
    return f'<p id="learning-rate">{sentence}</p>'


def skipped_by_reason(audit: dict[str, Any]) -> tuple[str, dict[str, int]] | None:
    """Find the per-reason skip counts in an audit summary, whatever shape it took.

    Returns:
        ``(plan key of the counts, {reason: count})``, or None when the summary has none.
        A list of skipped files (``[{"path", "reason"}]``) is counted here; its key is then
        empty because the counts are not stored in the plan as such.
    """
    for name in ("skipped_by_reason", "skipped", "skip_reasons", "reasons"):
        value = audit.get(name)
        if isinstance(value, dict) and all(is_number(v) for v in value.values()):
            return f"audit.{name}", {str(k): int(v) for k, v in value.items()}
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            counts = Counter(str(v.get("reason", "unknown")) for v in value)
            return "", dict(counts)
    return None


def _audit(plan: dict[str, Any]) -> str:
    audit = plan.get("audit")
    if not isinstance(audit, dict):
        return _none("No audit in this plan (arrays or a generator, not an image folder).")
    rows = []
    for key, value in audit.items():
        if isinstance(value, (dict, list)) or "." in str(key):
            continue
        kind = "count" if is_number(value) and isinstance(value, int) else "value"
        rows.append((str(key).replace("_", " "), _num(plan, f"audit.{key}", kind)))
    parts = [_rows(rows)] if rows else []
    found = skipped_by_reason(audit)
    if found is None or not found[1]:
        parts.append('<p id="audit-skipped">No file was skipped.</p>')
    else:
        key, counts = found
        body = []
        for reason, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if key and "." not in reason:
                cell = _num(plan, f"{key}.{reason}", "count")
            else:
                cell = f'<span class="num">{count:,}</span>'
            body.append(f"<tr><td>{_esc(reason.replace('_', ' '))}</td><td>{cell}</td></tr>")
        parts.append('<table id="audit-skipped"><tr><th>skipped because</th><th>files</th></tr>'
                     + "".join(body) + "</table>")
    return "".join(parts)


def _hardware(plan: dict[str, Any]) -> str:
    rows = [
        ("device", _num(plan, "measured.device")),
        ("memory budget", _num(plan, _budget_key(plan), "bytes")),
    ]
    hardware = plan.get("hardware")
    if isinstance(hardware, dict):
        for key, value in hardware.items():
            if isinstance(value, dict) or "." in str(key):
                continue
            kind = ("list" if isinstance(value, list)
                    else "bytes" if str(key).endswith("_bytes") else "value")
            label = str(key).removesuffix("_bytes").replace("_", " ")
            rows.append((label, _num(plan, f"hardware.{key}", kind)))
    fingerprints = plan.get("fingerprints")
    if isinstance(fingerprints, dict):
        for key in fingerprints:
            if not isinstance(fingerprints[key], (dict, list)) and "." not in str(key):
                rows.append((f"{key} fingerprint", _num(plan, f"fingerprints.{key}")))
    rows += [("autobatch", _num(plan, "autobatch_version")), ("created", _num(plan, "created_at"))]
    return _rows(rows)


DEFAULT_STORAGE_LABEL = "default (user cache SQLite)"
"""What plans written before the tune recorded its real URL hold for the default storage."""


def storage_url(storage: Any) -> str | None:
    """The Optuna storage URL a plan's ``study.storage`` stands for (None: no storage).

    The label of the default storage is this machine's default URL (the user cache's
    SQLite file); a file path becomes an ``sqlite:///`` URL.
    """
    if not storage:
        return None
    text = str(storage).strip()
    if text.startswith("default"):
        from autobatch._search._study import default_storage_url

        return default_storage_url()
    if "://" not in text:
        from pathlib import Path

        return f"sqlite:///{Path(text).expanduser().absolute()}"
    return text


def dashboard_command(storage: Any) -> str | None:
    """The shell command that opens the plan's study in optuna-dashboard, as it runs."""
    url = storage_url(storage)
    if url is None:
        return None
    # A password the tune redacted ("user:***@host") is for the reader to put back.
    url = url.replace(":***@", ":PASSWORD@")
    return f"optuna-dashboard {shlex.quote(url)}"


def _study(plan: dict[str, Any]) -> str:
    storage = lookup(plan, "study.storage")
    command = dashboard_command(storage)
    if command is None:
        return _none("The search kept no Optuna storage for this plan.")
    where = _num(plan, "study.storage")
    if str(storage).startswith("default"):
        where = f"the default storage, {_esc(storage_url(storage))} on this machine"
    note = ""
    if ":PASSWORD@" in command:
        note = " (put the database password in place of PASSWORD)"
    return (f"<p>Study {_num(plan, 'study.study_name')} in {where}. "
            f"Browse every trial with{note}:</p>"
            f"<pre id=\"dashboard-command\">{_esc(command)}</pre>"
            '<p class="sub">optuna-dashboard is a separate package: '
            "<code>pip install optuna-dashboard</code>.</p>")


def render_html(plan: dict[str, Any], memory_png: bytes, throughput_png: bytes) -> str:
    """The whole report page as a string."""
    model = lookup(plan, "model.name") or lookup(plan, "model.spec") or "model"
    data = lookup(plan, "data.path") or lookup(plan, "data.kind") or "data"
    sections = [
        f"<h1>autobatch tuning report</h1><p class=\"sub\">{_esc(model)} on {_esc(data)}</p>",
        _summary(plan),
        "<h2>Memory</h2>",
        _figure(memory_png, "peak memory against batch size", _memory_caption(plan),
                "plot-memory"),
        "<h2>Throughput</h2>",
        _figure(throughput_png, "examples per second against batch size",
                _throughput_caption(plan), "plot-throughput"),
        "<h2>Chosen settings</h2>", _settings(plan),
        "<h2>Finalists</h2>", _finalists(plan),
        "<h2>Learning rate</h2>", _learning_rate(plan),
        "<h2>Audit: what is skipped</h2>", _audit(plan),
        "<h2>Measured on</h2>", _hardware(plan),
        "<h2>Optuna study</h2>", _study(plan),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<link rel=\"icon\" href=\"data:,\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>autobatch report: {_esc(model)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(sections)}</body></html>\n")
