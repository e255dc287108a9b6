"""The search engine: memory ceiling, Optuna throughput study, verified Plan.

``tune`` is the entry point; ``_ceiling`` holds the memory-model math and the ceiling
search, ``_study`` the search space and the trials, ``_tune`` the orchestration.
"""

from __future__ import annotations

from autobatch._search._tune import TuneEvent, tune

__all__ = ["TuneEvent", "tune"]
