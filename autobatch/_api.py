"""The public functions. Each delegates to the module that owns the work, imported lazily
so that ``import autobatch`` stays cheap and TensorFlow-free."""

from __future__ import annotations

from typing import Any


def probe(model: Any, data: Any, *, batch_size: int, **options: Any) -> Any:
    """Run one isolated dry-run probe; see ``autobatch._probe.probe``."""
    from autobatch._probe import probe as _probe

    return _probe(model, data, batch_size=batch_size, **options)


def tune(model: Any, data: Any, **options: Any) -> Any:
    """Find the fastest batch size and pipeline settings that fit; returns a ``Plan``."""
    from autobatch._search import tune as _tune

    return _tune(model, data, **options)


def fit(model: Any, data: Any, **kwargs: Any) -> Any:
    """Tune (or reuse the cached plan) and train with coverage accounting."""
    from autobatch._fit import fit as _fit

    return _fit(model, data, **kwargs)


def dataset(data: Any, plan: Any = None, **kwargs: Any) -> Any:
    """The tuned ``tf.data.Dataset`` for ``data`` (for custom training loops)."""
    from autobatch._fit import dataset as _dataset

    return _dataset(data, plan, **kwargs)
