"""What the model allows here, decided once per study (a resumed tune keeps the answers):
does it compile with XLA, and which dtype do the pixels travel in."""

from __future__ import annotations

from typing import Any

from autobatch._plan import DEFAULT_REFERENCE_BATCH_SIZE
from autobatch._probe._types import ProbeRequest
from autobatch._search._run import SearchRun
from autobatch._search._timing import probe_timeout, xla_affordable
from autobatch._settings import choose_pixels


def xla_phase(run: SearchRun, ceiling_batch: int, first_probe_s: float) -> bool:
    """Whether the model compiles with XLA: tried once, dropped if it fails; skipped (and
    not recorded, so a later run tries) when the time left is short."""
    xla_ok = bool(run.stored.get("xla_ok", False))
    if run.config.try_xla and "xla_ok" not in run.stored and xla_affordable(run.deadline,
                                                                            first_probe_s):
        batch = min(ceiling_batch, DEFAULT_REFERENCE_BATCH_SIZE)
        run.emit("xla", f"trying jit_compile at batch {batch}")
        result = run.runner.run(ProbeRequest(batch_size=batch, steps=2, warmup_steps=1,
                                             jit_compile=True,
                                             timeout_s=probe_timeout(run.deadline)))
        xla_ok = result.ok
        run.study.set_user_attr("xla_ok", xla_ok)
        run.emit("xla", "XLA works" if xla_ok else f"XLA dropped ({result.outcome})",
                 result=result)
    return xla_ok


def pixels_phase(run: SearchRun) -> dict[str, Any]:
    """The pixels' dtype and why (``{"dtype", "reason"}``), decided once per study."""
    if "pixels" not in run.stored:
        runner = run.runner
        dtype, why = choose_pixels(run.config.pixels, eight_bit=run.source.eight_bit,
                                   model_accepts_uint8=lambda: runner.accepts_uint8)
        run.study.set_user_attr("pixels", {"dtype": dtype, "reason": why})
        run.emit("pixels", f"pixels {dtype}: {why}")
    return dict(run.study.user_attrs["pixels"])
