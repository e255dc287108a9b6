"""The search engine: memory ceiling, Optuna throughput study, verified Plan.

``tune`` (``_tune``) is the entry point and reads as cache -> search -> Plan:

    _config         TuneConfig: tune's options, checked once
    _job            the model, data, geometry, budgets and fingerprints of one tune
    _run            what the phases share (runner, study, clock, emitter)
    _events         TuneEvent and the emitter
    _tracked        the runner with the search's memory rules
    _timing         time accounting: deadlines, probe costs, the verify reserve
    _memory_line    the memory line (Theil-Sen) and where it puts the next probe
    _ceiling        the ceiling search
    _ceiling_phase  the untuned default, then the ceiling
    _effort         the tune's budget sized to the job (epochs)
    _model_checks   XLA and the pixels' dtype
    _levers         mixed precision and remat: where they apply, measured, kept on a gain
    _space          the search space and how a point is scored
    _study          the Optuna study: storage, trials
    _study_phase    the study as a phase: trials until the target or the verify reserve
    _finalists      judging the finalists against each other and the untuned default
    _rounds         the finalists' model.fit rounds, a quick tune's pick, the input wait
    _verify         the verify phase: interleaved model.fit rounds, the long run
    _assemble       the Plan and its records
    _annotate       the plan's summary written into the study (optuna-dashboard)
"""

from __future__ import annotations

from autobatch._search._config import TuneConfig
from autobatch._search._events import TuneEvent
from autobatch._search._tune import tune

__all__ = ["TuneConfig", "TuneEvent", "tune"]
