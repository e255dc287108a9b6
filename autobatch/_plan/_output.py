"""Writing a finished plan where the caller asked (``output=``/``--output``) without losing it.

A plan that cannot be written there (a full disk, a read-only folder, a file where a folder
should be) is a one-line ``PlanOutputError`` that carries the plan (``exc.plan``) and says
where else it is kept (the plan cache, when that could be written): the tune's result
survives and the command line prints it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from autobatch._errors import AutobatchError

if TYPE_CHECKING:
    from autobatch._plan._record import Plan


class PlanOutputError(AutobatchError):
    """The plan could not be written to ``output``; ``plan`` is the plan itself (exit 1)."""

    def __init__(self, message: str, *, plan: Plan, kept_at: Path | None = None) -> None:
        super().__init__(message, parameter="output")
        self.plan = plan
        self.kept_at = kept_at


def output_error(plan: Plan, output: str | os.PathLike[str], exc: OSError, *,
                 kept_at: Path | None) -> PlanOutputError:
    """The one-line error for a plan ``output`` that could not be written."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    kept = (f"the tuned plan is kept in the plan cache, {str(kept_at)!r} (a rerun with the "
            "same options returns it at once)" if kept_at is not None
            else "the tuned plan was not stored anywhere else (exc.plan holds it; the command line "
            "prints it)")
    return PlanOutputError(
        f"cannot write the plan to {os.fspath(output)!r}: {reason}; {kept}; free space or "
        "pass another {param}", plan=plan, kept_at=kept_at)
