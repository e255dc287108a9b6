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
from autobatch._errors import PlanError, UsageError
from autobatch._plan import Plan, PlanFieldError, read_plan_json
from autobatch._report._study import annotate_study, study_user_attrs

__all__ = ["ReportFiles", "annotate_study", "load_plan_dict", "plan_dict",
           "study_user_attrs", "write_report"]

log = logging.getLogger(__name__)

SUPPORTED_SCHEMA_VERSIONS = (1,)


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


def check_plan_dict(data: Any, source: str = "plan") -> dict[str, Any]:
    """Check ``data`` against the plan schema (the rules ``Plan.from_dict`` applies
    everywhere a plan is read); return it unchanged.

    Raises:
        PlanError: not a JSON object, no ``schema_version`` or ``batch_size``, a version
            this autobatch does not read, or a field that breaks its rule (named).
    """
    if not isinstance(data, dict):
        raise PlanError(f"{source} is not an autobatch plan: expected a JSON object, got "
                        f"{type(data).__name__}; pass the file written by `autobatch tune`")
    if "schema_version" not in data or "batch_size" not in data:
        raise PlanError(f"{source} is not an autobatch plan: it has no schema_version or "
                        "batch_size; pass the file written by `autobatch tune`")
    version = data["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        readable = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise PlanError(f"{source} has plan schema version {version!r}, but this autobatch "
                        f"reads version {readable}; re-run `autobatch tune` or upgrade autobatch")
    try:
        Plan.from_dict(data)
    except PlanFieldError as exc:
        raise PlanFieldError(exc.field, exc.problem,
                             message=f"{source} is not a valid autobatch plan: {exc}") from None
    return data


def load_plan_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a plan JSON file into a dict, checked against the plan schema.

    Raises:
        UsageError: the file does not exist or is a folder.
        PlanError: unreadable, not UTF-8 JSON, or not a valid plan of a known schema version.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"plan file {str(path)!r} does not exist; pass the JSON file "
                         "written by `autobatch tune`")
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a folder; pass the plan JSON file inside it")
    return check_plan_dict(read_plan_json(path), repr(str(path)))


def plan_dict(plan: Any) -> dict[str, Any]:
    """A plan as a dict, from a dict, an object with ``to_dict()``, or a file path."""
    if isinstance(plan, (str, os.PathLike)):
        return load_plan_dict(plan)
    if hasattr(plan, "to_dict"):
        return check_plan_dict(plan.to_dict())
    return check_plan_dict(plan)


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
