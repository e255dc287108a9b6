"""The probe's parts that need no model: the JSON-lines protocol both sides speak, the
failure classification, the watchdog over a real (non-TensorFlow) child process, the kernel
memory figures, and describing array data for the worker and rebuilding it there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autobatch._data import ArraySource
from autobatch._errors import AutobatchError, DataError, ModelError
from autobatch._probe import ProbeRequest
from autobatch._probe import _protocol as protocol
from autobatch._probe._data_io import (
    load_source,
    num_classes,
    probe_subset,
    write_data_description,
)
from autobatch._probe._failures import describe_exit, is_oom, lost_worker_result, timeout_result
from autobatch._probe._memory import peak_rss_bytes, read_status_bytes
from autobatch._probe._watchdog import Watchdog


def test_protocol_lines_round_trip_and_stray_lines_are_no_message() -> None:
    request = ProbeRequest(batch_size=8, steps=2)
    line = protocol.encode(protocol.probe_command(request))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = protocol.decode(line.decode())
    assert decoded is not None and decoded["cmd"] == protocol.PROBE
    assert ProbeRequest.from_dict(decoded["request"]) == request
    assert protocol.decode("Epoch 1/3 loss: 0.2\n") is None
    assert protocol.decode("[1, 2]\n") is None  # JSON, but not a message
    ready = protocol.ready_message(pid=7, device="cpu")
    assert protocol.is_event(ready, protocol.READY) and not protocol.is_event(ready, "result")
    assert not protocol.is_event(None, protocol.READY)


def test_a_start_error_says_its_kind_and_first_line() -> None:
    assert protocol.error_message(ModelError("no such model\nmore")) == {
        "event": "error", "kind": "model", "message": "no such model"}
    assert protocol.error_message(DataError("empty folder"))["kind"] == "data"
    crash = protocol.error_message(RuntimeError(""))
    assert crash["kind"] == "crash" and crash["message"] == "RuntimeError"


def test_the_reader_skips_stray_lines_times_out_and_sees_eof() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; print('stray'); print('{\"event\": \"ready\"}'); "
         "sys.stdout.flush(); time.sleep(1.0)"],
        stdout=subprocess.PIPE)
    try:
        reader = protocol.MessageReader(child.stdout)
        message, why = reader.receive(30)
        assert why == "message" and message == {"event": "ready"}
        assert reader.receive(0.2) == (None, "timeout")
        assert reader.receive(30) == (None, "eof")
    finally:
        child.kill()
        child.wait()


def test_failures_are_classified_and_described() -> None:
    assert is_oom(MemoryError()) and is_oom(RuntimeError("OOM when allocating tensor"))
    assert not is_oom(ValueError("shapes differ"))
    assert describe_exit(-signal.SIGKILL) == "the worker was killed by SIGKILL"
    assert describe_exit(3) == "the worker exited with code 3"
    assert describe_exit(None) == "the worker stopped answering"
    request = ProbeRequest(batch_size=16)
    late = timeout_result(request, starting=False, limit_s=8.0, device="cpu", pid=1)
    assert late.outcome == "timeout" and "within 8 s" in (late.error or "")
    assert late.batch_size == 16
    killed = lost_worker_result(request, exit_code=-9, over_budget_bytes=3 << 30,
                                peak_bytes=3 << 30, host_budget_bytes=2 << 30, starting=True,
                                log_tail="", device="cpu", pid=1)
    assert killed.outcome == "oom" and "idle footprint" in (killed.error or "")
    assert killed.peak_host_memory_bytes == 3 << 30
    crashed = lost_worker_result(None, exit_code=1, over_budget_bytes=None, peak_bytes=None,
                                 host_budget_bytes=None, starting=False,
                                 log_tail="\nTraceback ...", device="cpu", pid=None)
    assert crashed.outcome == "crash" and crashed.batch_size == 0
    assert crashed.error == "the worker exited with code 1\nTraceback ..."


def test_the_watchdog_kills_a_child_over_the_budget() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        figures = iter([100, 200, 900])

        def read(field: str, pid: int) -> int | None:
            assert pid == child.pid and field in ("VmRSS", "VmHWM")
            return next(figures, 900) if field == "VmRSS" else None

        watchdog = Watchdog(child, budget_bytes=500, interval_s=0.001, read=read)
        watchdog.start()
        assert child.wait(timeout=30) == -signal.SIGKILL
        assert watchdog.over_budget_bytes == 900 and watchdog.peak_bytes == 900
    finally:
        child.kill()
        child.wait()


def test_kernel_memory_figures_of_this_process() -> None:
    rss = read_status_bytes("VmRSS", os.getpid())
    assert rss is not None and rss > 1 << 20
    assert read_status_bytes("NoSuchField") is None
    assert read_status_bytes("VmRSS", 2**31 - 1) is None  # no such process
    assert peak_rss_bytes() >= rss // 2


def test_arrays_are_described_for_the_worker_and_rebuilt_there(tmp_path: Path) -> None:
    x = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    y = np.array([0, 1, 2, 0, 1, 2])
    source = ArraySource(x, y)
    assert num_classes(source) == 3
    assert num_classes(ArraySource(x, np.eye(4)[[0, 1, 2, 3, 0, 1]])) == 4
    description = write_data_description(source, tmp_path)
    assert description["kind"] == "arrays"
    rebuilt = load_source(description)
    np.testing.assert_array_equal(np.asarray(rebuilt.x), x)
    np.testing.assert_array_equal(np.asarray(rebuilt.y), y)
    subset = probe_subset(rebuilt, 4)
    assert subset is not None and len(subset.x) == len(subset.y) == 4
    assert probe_subset(rebuilt, 0) is None
    with pytest.raises(AutobatchError, match="unknown data kind"):
        load_source({"kind": "tapes"})
