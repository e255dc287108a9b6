"""The effective batch as the user's contract (``effective_batch_size``): the examples per
weight update stay what was asked for, and where memory caps the physical batch below it
the plan accumulates gradients over micro-batches (Keras' optimizer
``gradient_accumulation_steps``), with the learning rate scaled to the effective batch.

The physical batch is the ceiling's (or the effective batch itself, when it fits), split
evenly: ``steps = ceil(E / min(ceiling, E))`` micro-batches of ``ceil(E / steps)``, so that
``batch x steps >= E`` with the least excess (64 under a ceiling of 16: 16 x 4; 100 under
30: 25 x 4). The study then tunes the pipeline at that one batch; the untuned default
(batch 32) cannot keep the contract, so it is not a candidate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from autobatch._search._run import SearchRun


def physical_split(effective: int, ceiling: int) -> tuple[int, int]:
    """``(batch, steps)``: micro-batches under ``ceiling`` that make up ``effective``."""
    cap = max(1, min(int(ceiling), int(effective)))
    steps = -(-int(effective) // cap)
    return -(-int(effective) // steps), steps


def with_physical_batch(run: SearchRun, ceiling_batch: int) -> SearchRun:
    """The run with the study held to the physical batch (no change without a contract)."""
    effective = run.config.effective_batch_size
    if effective is None:
        return run
    batch, steps = physical_split(effective, ceiling_batch)
    run.emit("search", f"effective batch {effective}: {batch} x {steps}" + (
        f" (memory caps the batch at {ceiling_batch})" if steps > 1 else ""))
    return dataclasses.replace(run, physical_batch=batch)


def effective_record(run: SearchRun, ceiling_batch: int, model: Any) -> dict[str, Any] | None:
    """The plan's ``measured.effective_batch``; None without a contract."""
    effective = run.config.effective_batch_size
    if effective is None:
        return None
    batch, steps = physical_split(effective, ceiling_batch)
    record: dict[str, Any] = {
        "effective_batch_size": effective, "physical_batch_size": batch,
        "gradient_accumulation_steps": steps, "examples_per_update": batch * steps,
        "ceiling_batch_size": ceiling_batch,
        "reason": (f"memory caps the batch at {ceiling_batch}: {steps} micro-batches of "
                   f"{batch} per weight update" if steps > 1
                   else f"batch {batch} fits: no accumulation")}
    norm = has_batch_norm(model)
    if steps > 1 and norm:
        record["warning"] = ("the model has BatchNormalization: its statistics still see "
                             f"micro-batches of {batch}, not {batch * steps}")
    record["batch_norm"] = norm
    return record


def has_batch_norm(model: Any) -> bool | None:
    """Whether a built Keras model has a BatchNormalization layer (None: a SPEC or a file,
    not loaded here; ``fit`` checks the loaded model)."""
    if getattr(model, "layers", None) is None:
        return None
    from autobatch._models._saving import all_layers

    return any(type(layer).__name__.startswith("BatchNormalization")
               for layer in all_layers(model))
