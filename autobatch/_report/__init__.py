"""The tuning report: one self-contained HTML page and the same plots as PNG files.

Reads a plan (the dict of ``Plan.to_dict()``, a ``Plan``, or a plan JSON file), checked
by the plan schema; never imports TensorFlow, and imports matplotlib only while drawing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autobatch._atomic import atomic_write_bytes
from autobatch._report._load import (
    SUPPORTED_SCHEMA_VERSIONS,
    check_plan_dict,
    load_plan_dict,
    plan_dict,
)
from autobatch._report._study import annotate_study, study_user_attrs

__all__ = ["SUPPORTED_SCHEMA_VERSIONS", "ReportFiles", "annotate_study", "check_plan_dict",
           "load_plan_dict", "plan_dict", "study_user_attrs", "write_report"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written.

    Attributes:
        html: the self-contained page (plots embedded).
        memory_png: peak memory against batch size.
        throughput_png: examples/s against batch size.
        goodput_png: examples/s, goodput and efficiency against batch size; only for a plan
            tuned with ``--objective goodput`` (else None).
    """

    html: Path
    memory_png: Path
    throughput_png: Path
    goodput_png: Path | None = None

    @property
    def pngs(self) -> tuple[Path, ...]:
        """The plots written, in the page's order."""
        extra = (self.goodput_png,) if self.goodput_png is not None else ()
        return (self.memory_png, self.throughput_png, *extra)


def _write_shared(path: Path, data: bytes) -> None:
    """Write atomically, as an ordinary file to share (``0o666`` less the umask)."""
    atomic_write_bytes(path, data)


def write_report(plan: Any, out_html: str | os.PathLike[str], *,
                 png_dir: str | os.PathLike[str] | None = None) -> ReportFiles:
    """Write the HTML report and its plots as PNG files (two; three under goodput).

    Args:
        plan: a plan dict (``Plan.to_dict()``), a ``Plan``, or the path of a plan JSON file.
            Optional parts (baseline, audit, GPU figures, probes, trials) may be missing.
        out_html: the HTML file to write; it embeds the plots and needs nothing else.
        png_dir: folder for ``<stem>-memory.png`` and ``<stem>-throughput.png`` (and
            ``<stem>-goodput.png`` for a goodput plan); defaults to the HTML file's folder.

    Returns:
        The paths written.

    Raises:
        UsageError: the plan path does not exist.
        PlanError: the plan is not a plan of a known schema version.
    """
    from autobatch._report._goodput import goodput_figure, goodput_record
    from autobatch._report._html import render_html
    from autobatch._report._plots import figure_png, memory_figure, throughput_figure

    data = plan_dict(plan)
    out = Path(out_html)
    pngs = Path(png_dir) if png_dir is not None else out.parent
    memory_png = figure_png(memory_figure(data))
    throughput_png = figure_png(throughput_figure(data))
    goodput_png = figure_png(goodput_figure(data)) if goodput_record(data) else None
    files = ReportFiles(html=out, memory_png=pngs / f"{out.stem}-memory.png",
                        throughput_png=pngs / f"{out.stem}-throughput.png",
                        goodput_png=pngs / f"{out.stem}-goodput.png" if goodput_png else None)
    _write_shared(files.memory_png, memory_png)
    _write_shared(files.throughput_png, throughput_png)
    if files.goodput_png is not None and goodput_png is not None:
        _write_shared(files.goodput_png, goodput_png)
    _write_shared(out, render_html(data, memory_png, throughput_png, goodput_png)
                  .encode("utf-8"))
    log.info("wrote report %s and plots %s", out, ", ".join(str(p) for p in files.pngs))
    return files
