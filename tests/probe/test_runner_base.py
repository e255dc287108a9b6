"""The ``ProbeRunner`` seam without a process: a fake that implements only ``run`` gets
every default the search relies on; the budgets (defaults and what the user asked); probe
requests refuse what they cannot run. Fast: no TensorFlow, no worker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from autobatch._errors import AutobatchError, UsageError
from autobatch._probe import (
    ProbeRequest,
    ProbeResult,
    ProbeRunner,
    default_budgets,
    probe,
    resolve_budgets,
)

GiB = 1 << 30


class FakeRunner(ProbeRunner):
    """Peak = 1000 bytes per example; no process, nothing but ``run``."""

    def __init__(self, host_budget: int | None = None, device_budget: int | None = None,
                 device: str = "cpu") -> None:
        self.host_memory_budget_bytes = host_budget
        self.device_memory_budget_bytes = device_budget
        self.device = device
        self.requests: list[ProbeRequest] = []

    def run(self, request: ProbeRequest) -> ProbeResult:
        self.requests.append(request)
        self.probes_run += 1
        peak = 1000 * request.batch_size
        result = ProbeResult("ok", request.batch_size, request.settings, device=self.device,
                             peak_host_memory_bytes=peak,
                             peak_device_memory_bytes=None if self.device == "cpu" else peak)
        return self._judge_budget(result)


def test_a_runner_implementing_only_run_has_the_defaults_the_search_expects() -> None:
    runner = FakeRunner(host_budget=50_000)
    assert runner.memory_budget_bytes == 50_000
    assert runner.search_budget_bytes == runner.memory_budget_bytes
    assert runner.worker_largest_batch == 0
    assert runner.accepts_uint8 is False
    assert runner.image_size is None and runner.channels is None
    assert runner.worker_starts == 0 and runner.probes_run == 0
    assert runner.budget == {"host_memory_budget_bytes": 50_000,
                             "device_memory_budget_bytes": None,
                             "memory_budget_bytes": 50_000, "device": "cpu"}
    runner.restart()  # nothing to restart: a no-op, not an error
    with runner as entered:
        assert entered is runner
        result = entered.run(ProbeRequest(batch_size=8))
    assert result.ok and result.memory_budget_bytes == 50_000
    assert runner.probes_run == 1 and [r.batch_size for r in runner.requests] == [8]


def test_the_base_needs_run() -> None:
    class NoRun(ProbeRunner):
        pass

    with pytest.raises(TypeError):
        NoRun()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        ProbeRunner()  # type: ignore[abstract]


def test_the_budget_is_the_devices_on_an_accelerator_and_may_be_set() -> None:
    gpu = FakeRunner(host_budget=10 * GiB, device_budget=2 * GiB, device="GPU:0")
    assert gpu.memory_budget_bytes == gpu.search_budget_bytes == 2 * GiB
    cpu = FakeRunner(host_budget=10 * GiB, device_budget=2 * GiB, device="cpu")
    assert cpu.memory_budget_bytes == 10 * GiB
    # A fake without host/device figures sets the one budget directly.
    cpu.memory_budget_bytes = 123
    assert cpu.memory_budget_bytes == cpu.search_budget_bytes == 123


def test_a_peak_over_the_budget_is_judged_oom() -> None:
    runner = FakeRunner(host_budget=20_000)
    assert runner.run(ProbeRequest(batch_size=20)).ok
    over = runner.run(ProbeRequest(batch_size=21))
    assert over.outcome == "oom" and "over the budget" in (over.error or "")
    gpu = FakeRunner(host_budget=10 * GiB, device_budget=20_000, device="GPU:0")
    assert "peak device memory" in (gpu.run(ProbeRequest(batch_size=21)).error or "")


def test_unknown_probe_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="probe mode"):
        ProbeRequest(batch_size=4, mode="epochs")  # type: ignore[arg-type]
    with pytest.raises(UsageError) as caught:
        ProbeRequest(batch_size=4, mode="epochs")  # type: ignore[arg-type]
    assert caught.value.parameter == "mode"
    assert caught.value.message_for("--mode").startswith("probe --mode must be one of")


def test_default_budgets_take_the_safety_fraction() -> None:
    env = SimpleNamespace(host=SimpleNamespace(memory_headroom_bytes=10_000),
                          gpus=[SimpleNamespace(memory_free_bytes=2_000)])
    assert default_budgets(0.9, env) == (9_000, 1_800)
    env.gpus = []
    assert default_budgets(0.5, env) == (5_000, None)


def _env(host_limit: int, gpus: list[int]) -> SimpleNamespace:
    return SimpleNamespace(host=SimpleNamespace(memory_limit_bytes=host_limit),
                           gpus=[SimpleNamespace(memory_usable_bytes=g) for g in gpus])


def test_resolve_budgets_bounds_the_device_on_a_gpu_and_the_host_otherwise() -> None:
    assert resolve_budgets(None, _env(8 * GiB, [])) == (None, None, "default")
    assert resolve_budgets("0.5", _env(8 * GiB, [])) == (4 * GiB, None, "host")
    assert resolve_budgets("2GiB", _env(8 * GiB, [])) == (2 * GiB, None, "host")
    assert resolve_budgets(1234, _env(8 * GiB, [])) == (1234, None, "host")
    # Fractions refer to the smallest GPU's usable memory.
    assert resolve_budgets("0.5", _env(64 * GiB, [6 * GiB, 4 * GiB])) == (None, 2 * GiB,
                                                                           "device")


def test_a_budget_larger_than_the_machine_names_the_parameter() -> None:
    with pytest.raises(UsageError, match="larger than this machine's 8.00 GiB of host memory") \
            as caught:
        resolve_budgets("9GiB", _env(8 * GiB, []))
    assert caught.value.parameter == "memory_budget"
    assert str(caught.value).endswith("pass a smaller memory_budget")
    assert caught.value.message_for("--memory-budget").endswith("pass a smaller --memory-budget")
    with pytest.raises(UsageError, match="invalid memory size 'lots'"):
        resolve_budgets("lots", _env(8 * GiB, []))


def test_probe_refuses_unknown_options_and_bad_budgets_before_any_worker() -> None:
    with pytest.raises(UsageError, match="unknown probe option.*colour"):
        probe("small_cnn", "nowhere", batch_size=4, colour="red")
    with pytest.raises(UsageError, match="invalid memory size"):
        probe("small_cnn", "nowhere", batch_size=4, memory_budget="lots")


def test_every_probe_error_is_an_autobatch_error() -> None:
    with pytest.raises(AutobatchError):
        ProbeRequest(batch_size=1, mode="bogus")  # type: ignore[arg-type]
    from autobatch._probe import SubprocessProbeRunner

    with pytest.raises(UsageError, match="safety_fraction must lie in"):
        SubprocessProbeRunner("small_cnn", "nowhere", safety_fraction=1.5)
