"""The goodput objective (``_search/_goodput.py``): the search ranks by examples/s times the
batch's statistical efficiency under the measured noise scale. The worker's timing and its
noise estimate are simulated here (``_simulated``: the hardware stands in); the estimator
itself is tested on real gradients in tests/test_noise.py, and through a real worker in
tests/probe/test_inprocess_runner.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _simulated import SimulatedTraining

from autobatch._errors import UsageError
from autobatch._noise import NoiseScale
from autobatch._probe._types import ProbeRequest, ProbeResult
from autobatch._search import tune

MIB = 1 << 20
NOISE = 8.0


class Saturating(SimulatedTraining):
    """Examples/s that saturate with the batch (1000 B / (B + 16)), as a real step's do,
    and a gradient noise scale of ``NOISE`` examples."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.noise_requests: list[tuple[int, int]] = []

    def run(self, request: ProbeRequest) -> ProbeResult:
        if request.noise_small_batch:
            self.noise_requests.append((request.batch_size, request.noise_small_batch))
        return super().run(request)

    def rate(self, request: ProbeRequest) -> float:
        batch = request.batch_size
        base = 1000.0 * batch / (batch + 16)
        return base * (1.05 if not request.settings.uses_autotune else 1.0)

    def measured(self, request: ProbeRequest, result: ProbeResult) -> ProbeResult:
        result = super().measured(request, result)
        if not request.noise_small_batch:
            return result
        scale = NoiseScale(b_simple=NOISE, low=NOISE * 0.8, high=NOISE * 1.25,
                           gradient_sq_norm=1.0, trace_covariance=NOISE,
                           small_batch_size=request.noise_small_batch,
                           large_batch_size=request.batch_size, repeats=16)
        return dataclasses.replace(result, noise_scale=scale.to_dict())


def _arrays(count: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(count, 16, 16, 3), dtype=np.uint8), np.arange(count) % 2


def _tune(tmp_path: Path, objective: str) -> Any:
    sim = Saturating(100 * MIB, 1 * MIB, 400 * MIB, wall_s=0.01)
    return tune("small_cnn", _arrays(), image_size=16, trials=10, seed=0, try_xla=False,
                storage=f"sqlite:///{tmp_path / f'{objective}.db'}", use_cache=False,
                runner=sim, verbose=0, objective=objective), sim


def test_goodput_picks_a_smaller_batch_than_throughput_and_says_why(tmp_path: Path) -> None:
    throughput, sim_t = _tune(tmp_path, "throughput")
    goodput, sim_g = _tune(tmp_path, "goodput")
    # Throughput keeps growing with the batch; past a noise scale of 8 examples the extra
    # examples buy little progress, so goodput stays small.
    assert goodput.batch_size < throughput.batch_size
    assert goodput.batch_size <= 32 < throughput.batch_size
    assert "objective" not in throughput.measured
    record = goodput.measured["objective"]
    assert record["name"] == "goodput" and record["reference_batch_size"] == 32
    assert record["noise_scale"]["b_simple"] == NOISE and record["noise_scale"]["resolved"]
    rows = record["finalists"]
    assert rows and all(r["efficiency"] == pytest.approx((NOISE + 32) / (NOISE + r["batch_size"]))
                        for r in rows)
    assert all(r["goodput"] == pytest.approx(r["examples_per_s"] * r["efficiency"])
               for r in rows)
    # The trials are scored on goodput, the plan's figures stay examples/s.
    scored = [t for t in goodput.trials if t.get("efficiency")]
    assert scored and all(t["goodput"] == pytest.approx(t["examples_per_s"] * t["efficiency"])
                          for t in scored if t["examples_per_s"])
    # One noise probe, at the largest batch the study tries up to 256, with an eighth of it.
    assert len(sim_g.noise_requests) == 1
    large, small = sim_g.noise_requests[0]
    assert small == large // 8 and large <= 256
    assert not sim_t.noise_requests


def test_an_unknown_objective_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="objective") as raised:
        tune("small_cnn", _arrays(), image_size=16, trials=2, objective="accuracy",
             runner=Saturating(100 * MIB, 1 * MIB, 400 * MIB), verbose=0)
    assert "\n" not in str(raised.value)


def test_cli_goodput_tune_records_the_noise_scale_a_real_worker_measured(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "data", {"a": 32, "b": 32}, size=(32, 32))
    env = {**os.environ, "AUTOBATCH_CACHE_DIR": str(tmp_path / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "autobatch", "tune", str(folder), "--model", "small_cnn",
         "--image-size", "32", "--trials", "3", "--no-xla", "--objective", "goodput",
         "--json", "--output", str(tmp_path / "plan.json")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads(done.stdout)
    record = plan["measured"]["objective"]
    assert record["name"] == "goodput"
    noise = record["noise_scale"]
    # Measured in the worker at the study's largest batch (64 images: 32, the study's
    # floor) and an eighth of it.
    assert (noise["large_batch_size"], noise["small_batch_size"]) == (32, 4)
    assert noise["repeats"] >= 8 and noise["trace_covariance"] > 0
    assert noise["resolved"] == (noise["b_simple"] is not None)
    assert record["finalists"] and plan["batch_size"] >= 1
    # The CLI trains on that plan with --adapt: each epoch a whole pass, at batches the
    # plan verified.
    done = subprocess.run(
        [sys.executable, "-m", "autobatch", "fit", str(folder), "--plan",
         str(tmp_path / "plan.json"), "--adapt", "--epochs", "3", "--seed", "0"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}: trained on 64 of 64 usable images" in done.stdout
    verified = {t["batch_size"] for t in plan["trials"] if t["state"] == "COMPLETE"} | {
        plan["batch_size"]}
    for line in done.stdout.splitlines():
        if line.startswith("adapt: "):
            assert int(line.split(" -> ")[1].split()[0]) in verified, line
