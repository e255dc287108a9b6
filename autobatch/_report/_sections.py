"""The page's tables: chosen settings, finalists, learning rate, the audit, the hardware."""

from __future__ import annotations

from collections import Counter
from typing import Any

from autobatch._report._format import is_number, lookup
from autobatch._report._markup import budget_key, esc, none_note, num, table_rows
from autobatch._settings import SETTING_NAMES

_SETTING_LABELS = {
    "num_parallel_calls": "parallel map calls",
    "prefetch": "prefetched batches",
    "cache": "cache",
    "private_threadpool_size": "private thread pool (0 = shared)",
    "max_intra_op_parallelism": "intra-op parallelism",
    "deterministic": "deterministic order",
    "shuffle_buffer": "shuffle buffer (0 = full shuffle of the file list)",
    "arrays_in_memory": "arrays as one in-memory tensor",
    "pixels": "pixel dtype (uint8: the model casts)",
}
# Every setting, in the report's order (a new setting shows under its own name).
_PIPELINE_ROWS = tuple((name, _SETTING_LABELS.get(name, name)) for name in (
    *(n for n in _SETTING_LABELS if n in SETTING_NAMES),
    *(n for n in SETTING_NAMES if n not in _SETTING_LABELS)))


def settings_section(plan: dict[str, Any]) -> str:
    rows = [
        ("batch size (global)", num(plan, "batch_size", "count")),
        ("per-replica batch size", num(plan, "per_replica_batch_size", "count")),
        ("replicas", num(plan, "num_replicas", "count")),
        ("steps per epoch", num(plan, "steps_per_epoch", "count")),
        ("examples", num(plan, "num_examples", "count")),
        ("image size (height × width)", num(plan, "image_size")),
        ("channels", num(plan, "channels", "count")),
        ("XLA jit_compile", num(plan, "jit_compile")),
    ]
    pipeline = plan.get("pipeline") or {}
    for name, label in _PIPELINE_ROWS:
        if name in pipeline:
            kind = "setting" if name in ("num_parallel_calls", "prefetch") else "value"
            rows.append((label, num(plan, f"pipeline.{name}", kind)))
    rows += [
        ("throughput", num(plan, "measured.examples_per_s", "rate")),
        ("median step time", num(plan, "measured.step_time_s", "seconds")),
        ("share of step waiting for input", num(plan, "measured.input_wait_fraction",
                                                "fraction")),
        ("peak memory (budgeted)", num(plan, "measured.peak_memory_bytes", "bytes")),
        ("peak host memory", num(plan, "measured.peak_host_memory_bytes", "bytes")),
        ("peak device memory", num(plan, "measured.peak_device_memory_bytes", "bytes")),
    ]
    if is_number(lookup(plan, "baseline.examples_per_s")):
        rows.append(("untuned default, in its own probe",
                     num(plan, "baseline.examples_per_s", "rate")))
    return table_rows(rows)


def finalists_section(plan: dict[str, Any]) -> str:
    """The trials' best points, re-measured side by side with ``model.fit``: why this plan."""
    finalists = [f for f in lookup(plan, "measured.finalists") or [] if isinstance(f, dict)]
    if len(finalists) < 2:
        return none_note("No finalists were compared: one point was measured, or the "
                         "plan predates the comparison.")
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
            fit = ", ".join(num(plan, f"{key}.fit_examples_per_s.{j}", "rate")
                           for j in range(len(readings)))
        elif entry.get("failed_under_fit"):
            fit = esc("failed under model.fit")
        else:
            unmeasured += 1
            fit = '<span class="none">no round</span>'
        score = (num(plan, f"{key}.relative_score", "factor")
                 if is_number(entry.get("relative_score")) else "-")
        rank = str(index + 1) + (" (untuned default)" if entry.get("is_default") else "")
        cells = [esc(rank), num(plan, f"{key}.batch_size", "count"),
                 num(plan, f"{key}.num_parallel_calls", "setting"),
                 num(plan, f"{key}.prefetch", "setting"),
                 num(plan, f"{key}.cache"), num(plan, f"{key}.trial_examples_per_s", "rate"),
                 fit, score]
        if with_versus:
            median = lookup(entry, "versus_default.median_ratio")
            cells.append(num(plan, f"{key}.versus_default.median_ratio", "factor")
                        if is_number(median) else "-")
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    note = ("Ranked by the model.fit readings (the way the plan trains; the trials' bare "
            "step loop reads differently), each relative to the geometric mean of its round, so "
            "that the machine's drift between rounds cancels. The first to pass the long "
            "verify run in a fresh worker is the plan.")
    parts = [f'<table id="finalists">{head}{"".join(rows)}</table>',
             f'<p class="sub">{esc(note)}</p>']
    if unmeasured:
        everyone = unmeasured == len(finalists)
        parts.insert(0, '<p id="finalists-unmeasured">'
                     + esc(("No finalist" if everyone else f"{unmeasured} finalist(s)")
                           + " got a model.fit round: the time budget ran out after the study, "
                           "so the ranking is the trials' (step loop). A larger --time-budget "
                           "leaves room for the side-by-side rounds.") + "</p>")
    return "".join(parts)


def learning_rate_section(plan: dict[str, Any]) -> str:
    lr = plan.get("learning_rate")
    if not isinstance(lr, dict):
        return none_note("No learning-rate suggestion in this plan.")
    rule = lr.get("rule") or "none"
    optimizer = lr.get("optimizer")
    opt_text = f" ({esc(optimizer)})" if optimizer else ""
    if rule == "none" or not is_number(lr.get("factor")):
        sentence = (f"Keep the optimizer's learning rate{opt_text} as tuned for your batch size "
                    f"(rule: {esc(rule)}).")
    else:
        sentence = (f"Multiply the optimizer's learning rate{opt_text} by "
                    f"<b>{num(plan, 'learning_rate.factor', 'factor')}</b> ({esc(rule)} rule: "
                    f"batch {num(plan, 'batch_size', 'count')} against the reference batch "
                    f"{num(plan, 'learning_rate.reference_batch_size', 'count')}).")
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


def audit_section(plan: dict[str, Any]) -> str:
    audit = plan.get("audit")
    if not isinstance(audit, dict):
        return none_note("No audit in this plan (arrays or a generator, not an image folder).")
    rows = []
    for key, value in audit.items():
        if isinstance(value, (dict, list)) or "." in str(key):
            continue
        kind = "count" if is_number(value) and isinstance(value, int) else "value"
        rows.append((str(key).replace("_", " "), num(plan, f"audit.{key}", kind)))
    parts = [table_rows(rows)] if rows else []
    found = skipped_by_reason(audit)
    if found is None or not found[1]:
        parts.append('<p id="audit-skipped">No file was skipped.</p>')
    else:
        key, counts = found
        body = []
        for reason, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if key and "." not in reason:
                cell = num(plan, f"{key}.{reason}", "count")
            else:
                cell = f'<span class="num">{count:,}</span>'
            body.append(f"<tr><td>{esc(reason.replace('_', ' '))}</td><td>{cell}</td></tr>")
        parts.append('<table id="audit-skipped"><tr><th>skipped because</th><th>files</th></tr>'
                     + "".join(body) + "</table>")
    return "".join(parts)


def hardware_section(plan: dict[str, Any]) -> str:
    rows = [
        ("device", num(plan, "measured.device")),
        ("memory budget", num(plan, budget_key(plan), "bytes")),
    ]
    hardware = plan.get("hardware")
    if isinstance(hardware, dict):
        for key, value in hardware.items():
            if isinstance(value, dict) or "." in str(key):
                continue
            kind = ("list" if isinstance(value, list)
                    else "bytes" if str(key).endswith("_bytes") else "value")
            label = str(key).removesuffix("_bytes").replace("_", " ")
            rows.append((label, num(plan, f"hardware.{key}", kind)))
    fingerprints = plan.get("fingerprints")
    if isinstance(fingerprints, dict):
        for key in fingerprints:
            if not isinstance(fingerprints[key], (dict, list)) and "." not in str(key):
                rows.append((f"{key} fingerprint", num(plan, f"fingerprints.{key}")))
    rows += [("autobatch", num(plan, "autobatch_version")), ("created", num(plan, "created_at"))]
    return table_rows(rows)


def levers_section(plan: dict[str, Any]) -> str:
    """Each memory lever tried (its readings with and without, the decision and why), and
    those that could not apply here."""
    record = lookup(plan, "measured.levers")
    if not isinstance(record, dict):
        return none_note("no memory levers were tried (a quick tune, a strategy, or a plan "
                         "made before they were)")
    head = ("<tr><th>lever</th><th>examples/s without</th><th>examples/s with</th>"
            "<th>peak without</th><th>peak with</th><th>decision</th></tr>")
    rows = []
    for i, tried in enumerate(record.get("tried") or []):
        key = f"measured.levers.tried.{i}"
        rows.append(
            f"<tr><td>{esc(tried.get('value'))}</td>"
            f"<td>{num(plan, f'{key}.median_examples_per_s_without', 'rate')}</td>"
            f"<td>{num(plan, f'{key}.median_examples_per_s_with', 'rate')}</td>"
            f"<td>{num(plan, f'{key}.peak_memory_bytes_without', 'bytes')}</td>"
            f"<td>{num(plan, f'{key}.peak_memory_bytes_with', 'bytes')}</td>"
            f"<td>{esc(tried.get('decision'))}: {esc(tried.get('reason'))}</td></tr>")
    parts = [f"<table>{head}{''.join(rows)}</table>"] if rows else []
    for skipped in record.get("not_applicable") or []:
        parts.append(none_note(f"{skipped.get('lever')}: not tried, {skipped.get('reason')}"))
    return "".join(parts) or none_note("no memory lever applies here")
