"""The report page: one self-contained HTML file (inline CSS, plots as data URIs, no script).

The sections come from ``_summary``, ``_sections`` and ``_dashboard``, built of the tagged
numbers of ``_markup``.
"""

from __future__ import annotations

from typing import Any

from autobatch._report._dashboard import (
    DEFAULT_STORAGE_LABEL,
    dashboard_command,
    storage_url,
    study_section,
)
from autobatch._report._format import lookup
from autobatch._report._goodput import goodput_caption, objective_section
from autobatch._report._markup import esc, figure
from autobatch._report._sections import (
    audit_section,
    finalists_section,
    hardware_section,
    learning_rate_section,
    levers_section,
    settings_section,
    skipped_by_reason,
)
from autobatch._report._summary import memory_caption, summary_section, throughput_caption

__all__ = ["DEFAULT_STORAGE_LABEL", "dashboard_command", "render_html", "skipped_by_reason",
           "storage_url"]

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


def render_html(plan: dict[str, Any], memory_png: bytes, throughput_png: bytes,
                goodput_png: bytes | None = None) -> str:
    """The whole report page as a string (the goodput section only with its plot)."""
    model = lookup(plan, "model.name") or lookup(plan, "model.spec") or "model"
    data = lookup(plan, "data.path") or lookup(plan, "data.kind") or "data"
    sections = [
        f"<h1>autobatch tuning report</h1><p class=\"sub\">{esc(model)} on {esc(data)}</p>",
        summary_section(plan),
        "<h2>Memory</h2>",
        figure(memory_png, "peak memory against batch size", memory_caption(plan),
               "plot-memory"),
        "<h2>Throughput</h2>",
        figure(throughput_png, "examples per second against batch size",
               throughput_caption(plan), "plot-throughput"),
        *(["<h2>Objective: goodput</h2>",
           figure(goodput_png, "examples per second, goodput and efficiency against batch size",
                  goodput_caption(plan), "plot-goodput"),
           objective_section(plan)] if goodput_png is not None else []),
        "<h2>Chosen settings</h2>", settings_section(plan),
        "<h2>Finalists</h2>", finalists_section(plan),
        "<h2>Learning rate</h2>", learning_rate_section(plan),
        *(["<h2>Memory levers</h2>", levers_section(plan)]
          if lookup(plan, "measured.levers") is not None else []),
        "<h2>Audit: what is skipped</h2>", audit_section(plan),
        "<h2>Measured on</h2>", hardware_section(plan),
        "<h2>Optuna study</h2>", study_section(plan),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<link rel=\"icon\" href=\"data:,\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>autobatch report: {esc(model)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(sections)}</body></html>\n")
