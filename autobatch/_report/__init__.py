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
    """

    html: Path
    memory_png: Path
    throughput_png: Path

    @property
    def pngs(self) -> tuple[Path, Path]:
        return (self.memory_png, self.throughput_png)


def _write_shared(path: Path, data: bytes) -> None:
    """Write atomically, as an ordinary file to share (``0o666`` less the umask)."""
    atomic_write_bytes(path, data)


def write_report(plan: Any, out_html: str | os.PathLike[str], *,
                 png_dir: str | os.PathLike[str] | None = None) -> ReportFiles:
    """Write the HTML report and its two plots as PNG files.

    Args:
        plan: a plan dict (``Plan.to_dict()``), a ``Plan``, or the path of a plan JSON file.
            Optional parts (baseline, audit, GPU figures, probes, trials) may be missing.
        out_html: the HTML file to write; it embeds the plots and needs nothing else.
        png_dir: folder for ``<stem>-memory.png`` and ``<stem>-throughput.png``; defaults to
            the HTML file's folder.

    Returns:
        The paths written.

    Raises:
        UsageError: the plan path does not exist.
        PlanError: the plan is not a plan of a known schema version.
    """
    from autobatch._report._html import render_html
    from autobatch._report._plots import figure_png, memory_figure, throughput_figure

    data = plan_dict(plan)
    out = Path(out_html)
    pngs = Path(png_dir) if png_dir is not None else out.parent
    memory_png = figure_png(memory_figure(data))
    throughput_png = figure_png(throughput_figure(data))
    files = ReportFiles(html=out, memory_png=pngs / f"{out.stem}-memory.png",
                        throughput_png=pngs / f"{out.stem}-throughput.png")
    _write_shared(files.memory_png, memory_png)
    _write_shared(files.throughput_png, throughput_png)
    _write_shared(out, render_html(data, memory_png, throughput_png).encode("utf-8"))
    log.info("wrote report %s and plots %s, %s", out, files.memory_png, files.throughput_png)
    return files
