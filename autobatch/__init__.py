"""autobatch: the fastest batch size and tf.data settings that fit this machine, measured.

``import autobatch`` never imports TensorFlow; the public functions import it only when a
model or a pipeline is really needed.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from autobatch._errors import (
    AutobatchError,
    DataError,
    ModelError,
    PlanError,
    ProbeError,
    SizeParseError,
    UsageError,
)
from autobatch._sizes import parse_memory_size

if _TYPE_CHECKING:  # pragma: no cover - what the lazy names below are, for type checkers
    from autobatch._api import probe
    from autobatch._audit import AuditReport, audit
    from autobatch._data import image_folder
    from autobatch._env import Environment, environment
    from autobatch._fit import dataset, fit
    from autobatch._plan import Plan
    from autobatch._probe import ProbeResult
    from autobatch._search import tune
    from autobatch._settings import PipelineSettings

__version__ = "0.1.0"

# Public name -> module that defines it; resolved on first use so that importing the
# package stays cheap and TensorFlow-free. (No other public name lives here: a test checks
# that ``__all__`` is exactly the sorted public names.)
_LAZY = {
    "environment": "autobatch._env",
    "Environment": "autobatch._env",
    "audit": "autobatch._audit",
    "AuditReport": "autobatch._audit",
    "probe": "autobatch._api",
    "tune": "autobatch._search",
    "fit": "autobatch._fit",
    "dataset": "autobatch._fit",
    "image_folder": "autobatch._data",
    "ProbeResult": "autobatch._probe",
    "Plan": "autobatch._plan",
    "PipelineSettings": "autobatch._settings",
}

__all__ = [
    "AuditReport",
    "AutobatchError",
    "DataError",
    "Environment",
    "ModelError",
    "PipelineSettings",
    "Plan",
    "PlanError",
    "ProbeError",
    "ProbeResult",
    "SizeParseError",
    "UsageError",
    "__version__",
    "audit",
    "dataset",
    "environment",
    "fit",
    "image_folder",
    "parse_memory_size",
    "probe",
    "tune",
]


def __getattr__(name: str) -> _Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'autobatch' has no attribute {name!r}")
    value = getattr(_import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
