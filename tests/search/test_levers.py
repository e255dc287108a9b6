"""Memory levers (``autobatch._search._levers``): where mixed precision and remat apply (a
fake ``/proc/cpuinfo`` text and fake NVML GPUs stand in for hardware this machine lacks),
the rule that lets one into the plan, and the plan fields round-tripping through JSON."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from test_env import _fake_pynvml

from autobatch import _env
from autobatch._plan import Plan
from autobatch._plan._schema import PlanFieldError
from autobatch._search._finalists import compare_with_default
from autobatch._search._levers import (
    PEAK_MARGIN,
    applicable_levers,
    lever_decision,
    plan_levers,
)

CPU_WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
CPU_WITHOUT_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM_WITH_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def _env_with(gpus: list[Any]) -> Any:
    return types.SimpleNamespace(gpus=gpus)


def _gpu(capability: tuple[int, int] | None) -> Any:
    return types.SimpleNamespace(compute_capability=capability)


def _levers(found: list[dict[str, str]]) -> dict[str, str]:
    return {entry["lever"]: entry["value"] for entry in found}


def test_the_cpu_flags_decide_bfloat16() -> None:
    assert _env.cpu_bf16_flags(CPU_WITH_BF16) == ["avx512_bf16"]
    assert _env.cpu_bf16_flags(ARM_WITH_BF16) == ["bf16"]
    assert _env.cpu_bf16_flags(CPU_WITHOUT_BF16) == []
    assert _env.cpu_bf16_flags("") == []  # no /proc/cpuinfo (macOS, Windows)
    found, skipped = applicable_levers(_env_with([]), "cpu", cpuinfo=CPU_WITH_BF16,
                                       keras_version="3.15.1", has_remat=True)
    assert _levers(found) == {"mixed_precision": "mixed_bfloat16", "remat": "larger_than"}
    assert "avx512_bf16" in found[0]["why"] and skipped == []


def test_a_cpu_without_bfloat16_never_tries_mixed_precision() -> None:
    found, skipped = applicable_levers(_env_with([]), "cpu", cpuinfo=CPU_WITHOUT_BF16,
                                       keras_version="3.15.1", has_remat=True)
    assert "mixed_precision" not in _levers(found)
    assert _levers(found) == {"remat": "larger_than"}
    assert [s["lever"] for s in skipped] == ["mixed_precision"]
    assert "no bfloat16 flag" in skipped[0]["reason"]


def test_old_keras_has_no_remat() -> None:
    found, skipped = applicable_levers(_env_with([]), "cpu", cpuinfo=CPU_WITHOUT_BF16,
                                       keras_version="3.8.0")
    assert found == [] and [s["lever"] for s in skipped] == ["mixed_precision", "remat"]
    assert "3.9 or later" in skipped[1]["reason"]


@pytest.mark.parametrize(("capabilities", "float16"), [
    ([(8, 0)], True), ([(7, 0), (9, 0)], True), ([(6, 1)], False), ([(8, 6), (6, 0)], False),
    ([None], False)])
def test_float16_needs_compute_capability_seven_on_every_gpu(
        capabilities: list[tuple[int, int] | None], float16: bool) -> None:
    found, skipped = applicable_levers(_env_with([_gpu(c) for c in capabilities]), "GPU:0",
                                       cpuinfo=CPU_WITH_BF16, has_remat=False)
    # On a GPU the CPU's bfloat16 flags do not count: the model computes on the GPU.
    assert _levers(found) == ({"mixed_precision": "mixed_float16"} if float16 else {})
    assert ("mixed_precision" in [s["lever"] for s in skipped]) is not float16


def test_nvml_reports_the_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = _fake_pynvml()
    nvml.nvmlDeviceGetCudaComputeCapability = lambda handle: (7, 5)  # a T4
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    (gpu,) = _env.gpu_info()[0]
    assert gpu.compute_capability == (7, 5)
    found, _ = applicable_levers(_env_with([gpu]), "GPU:0", has_remat=False)
    assert _levers(found) == {"mixed_precision": "mixed_float16"}
    # A binding without the call: unknown, so float16 is not tried.
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml())
    (gpu,) = _env.gpu_info()[0]
    assert gpu.compute_capability is None


# ---------------------------------------------------------------- the decision rule


def _speed(without: list[float], with_lever: list[float]) -> dict[str, Any]:
    rounds = {i: {"without": a, "with": b}
              for i, (a, b) in enumerate(zip(without, with_lever, strict=True))}
    return compare_with_default(rounds, "with", "without")


def test_a_lever_enters_the_plan_only_when_faster_beyond_the_noise() -> None:
    faster = _speed([100, 90, 110], [120, 110, 130])
    adopted, reason = lever_decision(faster, peak_without=None, peak_with=None,
                                     raised_ceiling=None, ceiling_batch=256)
    assert adopted and reason.startswith("faster: 3 paired rounds")
    # Faster in the median, but one round lost: within the noise, not adopted.
    mixed = _speed([100, 100, 100], [130, 99, 125])
    adopted, reason = lever_decision(mixed, peak_without=None, peak_with=None,
                                     raised_ceiling=None, ceiling_batch=256)
    assert not adopted and "not beyond the noise" in reason
    # Two rounds are too few, however good (below DECISIVE_RATIO).
    adopted, _ = lever_decision(_speed([100, 100], [150, 150]), peak_without=None,
                                peak_with=None, raised_ceiling=None, ceiling_batch=256)
    assert not adopted


def test_a_lower_peak_counts_only_with_a_larger_batch_verified() -> None:
    even = _speed([100, 100, 100], [101, 99, 100])
    low = int(1000 * (1 - PEAK_MARGIN)) - 1
    adopted, reason = lever_decision(even, peak_without=1000, peak_with=low,
                                     raised_ceiling=400, ceiling_batch=256)
    assert adopted and reason.startswith("higher ceiling: batch 400 fits where 256")
    # The same peaks, but no larger batch verified: not adopted, and the reason says why.
    adopted, reason = lever_decision(even, peak_without=1000, peak_with=low,
                                     raised_ceiling=None, ceiling_batch=256)
    assert not adopted and "no larger batch verified" in reason
    # A peak within the margin is no gain, even with a batch that happened to fit.
    adopted, _ = lever_decision(even, peak_without=1000, peak_with=int(1000 * 0.97),
                                raised_ceiling=400, ceiling_batch=256)
    assert not adopted
    # A larger batch at a measurably lower speed (remat's recomputation) is no gain.
    slower = _speed([100, 100, 100], [80, 82, 79])
    adopted, reason = lever_decision(slower, peak_without=1000, peak_with=500,
                                     raised_ceiling=400, ceiling_batch=256)
    assert not adopted and reason.startswith("0.80x the speed")


# ---------------------------------------------------------------- the plan


def _plan(**fields: Any) -> Plan:
    return Plan(batch_size=64, num_examples=600, ceiling_batch_size=128, **fields)


def test_a_plan_with_levers_round_trips_and_one_without_keeps_its_keys(tmp_path: Path) -> None:
    record = {"tried": [{"lever": "mixed_precision", "value": "mixed_bfloat16",
                         "examples_per_s_without": [100.0], "examples_per_s_with": [140.0],
                         "decision": "adopted", "reason": "faster"}],
              "not_applicable": [], "mixed_precision": "mixed_bfloat16", "remat": None}
    plan = _plan(mixed_precision="mixed_bfloat16", remat="larger_than",
                 measured={"levers": record})
    again = Plan.load(plan.save(tmp_path / "plan.json"))
    assert again.mixed_precision == "mixed_bfloat16" and again.remat == "larger_than"
    assert again.measured["levers"] == record
    assert "keras.mixed_precision.set_global_policy('mixed_bfloat16')" in (
        again.lever_hint() or "")
    plain = _plan().to_dict()
    assert "mixed_precision" not in plain and "remat" not in plain
    assert _plan().lever_hint() is None


def test_an_old_plan_loads_with_no_levers_and_a_bad_one_is_refused() -> None:
    old = json.loads((Path(__file__).parents[1] / "artifacts" / "report-plan.json").read_text())
    assert "mixed_precision" not in old
    plan = Plan.from_dict(old)
    assert plan.mixed_precision is None and plan.remat is None
    assert Plan.from_dict(plan.to_dict()).to_dict() == plan.to_dict()
    with pytest.raises(PlanFieldError, match="mixed_precision"):
        Plan.from_dict({**old, "mixed_precision": "float8"})
    with pytest.raises(PlanFieldError, match="remat"):
        Plan.from_dict({**old, "remat": True})


def test_a_plan_that_keeps_the_untuned_default_turns_no_lever_on() -> None:
    record = {"tried": [], "not_applicable": [], "mixed_precision": "mixed_bfloat16",
              "remat": None}
    tuned = _plan(measured={"versus_default": {"decision": "tuned"}})
    plan_levers(tuned, record)
    assert tuned.mixed_precision == "mixed_bfloat16" and tuned.measured["levers"] is record
    kept = _plan(measured={"versus_default": {"decision": "default"}})
    plan_levers(kept, record)
    assert kept.mixed_precision is None and kept.measured["levers"] is record


def test_levers_can_be_turned_off_and_only_that_changes_the_cache_key() -> None:
    from autobatch._search._config import TuneConfig
    from autobatch._search._job import search_options

    on = search_options(TuneConfig(), (32, 32), 3)
    off = search_options(TuneConfig(try_levers=False), (32, 32), 3)
    assert "try_levers" not in on  # plans tuned before the switch keep their keys
    assert off == {**on, "try_levers": False}


def test_a_round_whose_probe_without_the_lever_failed_is_not_a_pair() -> None:
    from autobatch._search._ceiling_phase import Ceiling
    from autobatch._search._levers import _record

    candidate = {"lever": "mixed_precision", "value": "mixed_bfloat16", "why": "test"}
    readings = {0: {"with": 130.0, "without": 100.0}, 1: {"with": 128.0}}
    record = _record(candidate, 64, readings, None, None, None, None,
                     Ceiling(record={}, batch_size=64, first_probe_s=1.0, retrace_s=1.0))
    assert record["examples_per_s_with"] == [130.0]
    assert record["examples_per_s_without"] == [100.0]
