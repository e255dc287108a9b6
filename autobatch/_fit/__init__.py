"""The hand-off to Keras.

    _train.py      ``fit`` and ``dataset``: data and model resolved, checked, planned, trained
    _preflight.py  the model can take the data (shapes, channels, classes, label encoding)
    _plans.py      the plan to train with: given or tuned, adapted to this model
    _lr.py         learning-rate scaling for the plan's batch size
    _coverage.py   every example trained on, counted inside the train step, per epoch
"""

from autobatch._data._labels import DEFAULT_SPLIT_SEED
from autobatch._fit._coverage import (
    CoverageReport,
    EpochCoverage,
    counting_train_step,
    make_coverage_callback,
)
from autobatch._fit._lr import apply_learning_rate
from autobatch._fit._preflight import InputSpec, loss_label_kind, preflight
from autobatch._fit._train import dataset, fit
from autobatch._plan import load_plan

__all__ = [
    "DEFAULT_SPLIT_SEED",
    "CoverageReport",
    "EpochCoverage",
    "InputSpec",
    "apply_learning_rate",
    "counting_train_step",
    "dataset",
    "fit",
    "load_plan",
    "loss_label_kind",
    "make_coverage_callback",
    "preflight",
]

