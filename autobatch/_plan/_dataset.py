"""A plan's ``tf.data`` pipeline: the one place in ``_plan`` that touches the user's data.

``Plan.dataset`` and ``Plan.disk_cache_dir`` call these. They resolve the data to a source
and hand it to the one pipeline builder (``Source.build_dataset``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobatch._errors import PlanError
from autobatch._plan._fingerprints import short_hash
from autobatch._plan._json import canonical_json
from autobatch._plan._paths import cache_root

if TYPE_CHECKING:
    from autobatch._plan._record import Plan


def plan_dataset(plan: Plan, data: Any, *, repeat: bool, shuffle: bool, seed: int | None,
                 image_size: int | tuple[int, int] | None,
                 cache_dir: str | os.PathLike[str] | None,
                 label_mode: str | None = None, augment: Any = None,
                 input_context: Any = None, data_service: str | None = None) -> Any:
    """The tuned ``tf.data.Dataset`` for ``data`` (see ``Plan.dataset``)."""
    from autobatch._data import normalize_image_size, resolve_source

    source = resolve_source(data)
    batch_size = plan.batch_size
    if input_context is not None:
        # distribute_datasets_from_function: this worker's part, at the per-replica batch.
        source = source.shard(int(input_context.num_input_pipelines),
                              int(input_context.input_pipeline_id))
        batch_size = int(input_context.get_per_replica_batch_size(plan.batch_size))
    sized = plan
    if image_size is not None:
        sized = dataclasses.replace(plan, image_size=normalize_image_size(image_size))
    if sized.image_size is None and source.needs_image_size:
        raise PlanError(
            "this plan records no image size (it was tuned on arrays, or by an older "
            "autobatch); pass plan.dataset(data, image_size=N) or tune again"
        )
    if plan.pipeline.cache == "disk" and cache_dir is None:
        cache_dir = sized.disk_cache_dir(source)
    return source.build_dataset(
        batch_size=batch_size,
        settings=plan.pipeline,
        image_size=sized.image_size,
        channels=plan.channels,
        shuffle=shuffle,
        seed=seed,
        cache_dir=cache_dir,
        repeat_epochs=repeat,
        label_mode=label_mode,
        augment=augment,
        data_service=data_service,
    )


def disk_cache_dir(plan: Plan, data: Any) -> Path:
    """The default ``cache="disk"`` folder for ``data`` (see ``Plan.disk_cache_dir``)."""
    from autobatch._data import resolve_source

    key = canonical_json({
        "data": resolve_source(data).fingerprint(),
        "image_size": list(plan.image_size) if plan.image_size else None,
        "channels": plan.channels,
        "pixels": plan.pipeline.pixels,
    })
    return cache_root() / "tfdata" / short_hash(key, 16)
