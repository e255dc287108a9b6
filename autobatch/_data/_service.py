"""The tuned preprocessing on a tf.data service cluster (``data_service="grpc://HOST:PORT"``).

A source's per-example stages (read, decode, resize, convert; a dataset's own maps) run on
the service's workers in ``distributed_epoch`` mode: the dispatcher hands each example of
the epoch to exactly one worker, so every example arrives once per epoch (while no worker
restarts). They travel in chunks and are unbatched here; the cache, the shuffle, the
batches, the augmentation and the prefetch stay in the training process (a cache on the
workers would replay whichever examples a worker happened to get first). Each pass over the
dataset is a new job, so each epoch is a fresh ``distributed_epoch``.

What cannot run on another machine is refused before any work: a Python generator, arrays in
this process's memory (nothing to offload), and graphs that call back into Python
(``tf.py_function``, ``tf.numpy_function``, ``Dataset.from_generator``).
"""

from __future__ import annotations

import re
from typing import Any

from autobatch._errors import UsageError

SERVICE_CHUNK = 32
"""Examples per message from the service's workers (fewer round trips than one each)."""
_ADDRESS = re.compile(r"^(grpc://)?([A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")


def check_address(address: Any) -> str | None:
    """``grpc://HOST:PORT`` (``HOST:PORT`` is taken too), or a one-line ``UsageError``."""
    if address is None:
        return None
    text = str(address).strip()
    match = _ADDRESS.match(text)
    if not match or not 0 < int(match.group(3)) < 65536:
        raise UsageError(f"{{param}} {text!r} is no dispatcher address; give grpc://HOST:PORT "
                         "(tf.data.experimental.service.DispatchServer's target)",
                         parameter="data_service")
    return f"grpc://{match.group(2)}:{match.group(3)}"


def check_servable(source: Any) -> None:
    """Refuse, in one line, a source whose examples cannot be made on a service worker."""
    refusal = getattr(source, "service_refusal", None)
    reason = refusal() if callable(refusal) else None
    if reason:
        raise UsageError(f"{reason}, so no tf.data service can make its examples: drop "
                         "{param}, or give an image folder, TFRecord shards or a "
                         "tf.data.Dataset built from files or tensors",
                         parameter="data_service")


def distribute(ds: Any, address: str) -> Any:
    """``ds``'s examples made on the service at ``address`` (``distributed_epoch``), back
    here one by one in no fixed order."""
    import tensorflow as tf

    service = tf.data.experimental.service
    ds = ds.batch(SERVICE_CHUNK).apply(service.distribute(
        processing_mode=service.ShardingPolicy.DYNAMIC, service=address))
    return ds.unbatch()
