"""Not API: the internals that ``benchmarks/`` measures or compares against, in one table.

The benchmarks time pieces a user never calls (the ceiling search against other finders, the
probe runner's overhead, the grid of study points, the lean pipeline of the ceiling probes),
so these names stay private; a restructuring updates the table below, not every script.
Everything a user needs comes from ``autobatch`` itself (``tune``, ``probe``, ``audit``,
``environment``, ``Plan``, ...), and the benchmarks take it from there.

Names resolve on first use, so importing this module imports nothing heavy.
"""

from importlib import import_module as _import_module

# Name -> module that defines it today.
_HOMES = {
    "ProbeRequest": "autobatch._probe",
    "SubprocessProbeRunner": "autobatch._probe",
    "DEFAULT_SAFETY_FRACTION": "autobatch._probe",
    "default_budgets": "autobatch._probe",
    "resolve_budgets": "autobatch._probe",
    "nvml_process_memory_bytes": "autobatch._probe._memory",
    "find_ceiling": "autobatch._search._ceiling",
    "SearchSpace": "autobatch._search._space",
    "epoch_efficiency": "autobatch._search._space",
    "params_to_request": "autobatch._search._space",
    "FINALIST_MIN_TIME_S": "autobatch._search._timing",
    "training_batch_cap": "autobatch._search._run",
    "resolve_model": "autobatch._models",
    "resolve_source": "autobatch._data",
    "build_dataset": "autobatch._data",
    "make_demo_folder": "autobatch._demo",
    "make_photo_folder": "autobatch._demo",
    "PHOTO_CLASSES": "autobatch._demo",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
