"""Plans for tests, shared by several test folders: a ``Plan`` object (``sample_plan``) and
schema-1 plan dicts for the report (``full_plan`` with every part, ``minimal_plan``)."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from autobatch._plan import Plan, learning_rate_scaling
from autobatch._settings import PipelineSettings


def sample_plan(**changes: object) -> Plan:
    fields: dict[str, object] = dict(
        batch_size=48,
        num_examples=1003,
        ceiling_batch_size=120,
        pipeline=PipelineSettings(num_parallel_calls=2, prefetch=4, cache="memory",
                                  private_threadpool_size=2, deterministic=False,
                                  max_intra_op_parallelism=1),
        image_size=(64, 48),
        channels=3,
        jit_compile=True,
        measured={"examples_per_s": 812.5, "peak_memory_bytes": 900 << 20,
                  "memory_budget_bytes": 1 << 30, "device": "cpu"},
        baseline={"batch_size": 32, "examples_per_s": 500.0, "peak_memory_bytes": 800 << 20},
        learning_rate=learning_rate_scaling("SGD", 48),
        ceiling={"batch_size": 120, "probes": [], "memory_model": None,
                 "predicted_batch_size": 130, "budget_bytes": 1 << 30},
        trials=[{"number": 0, "state": "COMPLETE", "batch_size": 48, "examples_per_s": 812.5}],
        fingerprints={"model": "m", "data": "d", "hardware": "h", "tensorflow": "t",
                      "options": "o"},
        study={"storage": "sqlite:///x.db", "study_name": "autobatch-1"},
        data={"kind": "directory", "path": "/data", "class_names": ["a", "b"]},
        model={"spec": "small_cnn", "name": "small_cnn", "input_shape": [64, 48, 3],
               "output_units": 2},
    )
    fields.update(changes)
    return Plan(**fields)  # type: ignore[arg-type]


MiB = 1024**2
ARTIFACTS = Path(os.environ.get("AUTOBATCH_TEST_ARTIFACTS")
                 or Path(__file__).parent / "artifacts")  # tests/artifacts


def _settings(**changes: Any) -> dict[str, Any]:
    settings = {"num_parallel_calls": 2, "prefetch": 2, "cache": "none",
                "private_threadpool_size": 0, "deterministic": False,
                "max_intra_op_parallelism": 1, "shuffle_buffer": 0, "arrays_in_memory": True}
    settings.update(changes)
    return settings


def _probe(outcome: str, batch_size: int, memory_bytes: int | None) -> dict[str, Any]:
    return {"outcome": outcome, "batch_size": batch_size, "settings": _settings(),
            "jit_compile": False,
            "examples_per_s": 100.0 + batch_size if outcome == "ok" else None,
            "peak_host_memory_bytes": memory_bytes, "peak_device_memory_bytes": None,
            "peak_memory_bytes": memory_bytes, "device": "cpu"}


def full_plan() -> dict[str, Any]:
    """A schema-1 plan with every part present: probes with an oom, trials, baseline, audit."""
    trials = [("COMPLETE", 16, 1, 300.0, 455 * MiB), ("COMPLETE", 32, 2, 520.5, 530 * MiB),
              ("COMPLETE", 64, 3, 812.3456, 700 * MiB), ("PRUNED", 64, 1, 610.0, 690 * MiB),
              ("COMPLETE", 128, 2, 790.0, 985 * MiB)]
    return {
        "schema_version": 1, "autobatch_version": "0.1.0", "created_at": "2025-01-02T03:04:05Z",
        "batch_size": 64, "per_replica_batch_size": 64, "num_replicas": 1, "steps_per_epoch": 4,
        "num_examples": 230, "ceiling_batch_size": 128, "image_size": [32, 32], "channels": 3,
        "jit_compile": False,
        "pipeline": _settings(num_parallel_calls=2, prefetch=3, cache="memory"),
        "measured": {"examples_per_s": 812.3456, "step_time_s": 0.0788, "input_wait_fraction": 0.62,
                     "peak_memory_bytes": 700 * MiB + 12345,
                     "peak_host_memory_bytes": 700 * MiB + 12345,
                     "peak_device_memory_bytes": None, "memory_budget_bytes": 1024 * MiB,
                     "device": "cpu",
                     "finalists": [
                         {"batch_size": 64, **_settings(num_parallel_calls=2, prefetch=3,
                                                        cache="memory"),
                          "jit_compile": False, "trial_examples_per_s": 812.3456,
                          "fit_examples_per_s": [760.5, 741.25], "failed_under_fit": False},
                         {"batch_size": 128, **_settings(num_parallel_calls=2, prefetch=1,
                                                         cache="memory"),
                          "jit_compile": False, "trial_examples_per_s": 790.0,
                          "fit_examples_per_s": [], "failed_under_fit": True}]},
        "baseline": {"batch_size": 32, "examples_per_s": 401.25, "peak_memory_bytes": 520 * MiB},
        "learning_rate": {"reference_batch_size": 32, "factor": 2.0, "rule": "linear",
                          "optimizer": "SGD"},
        "ceiling": {"probes": [_probe("ok", 16, 450 * MiB), _probe("ok", 32, 520 * MiB),
                               _probe("ok", 64, 700 * MiB), _probe("ok", 128, 980 * MiB),
                               _probe("oom", 256, None)],
                    "memory_model": {"slope_bytes_per_example": 4.4 * MiB,
                                     "intercept_bytes": 400 * MiB},
                    "predicted_batch_size": 141, "budget_bytes": 1024 * MiB},
        "trials": [{"number": i, "state": state, "batch_size": batch,
                    "settings": _settings(prefetch=prefetch), "jit_compile": False,
                    "examples_per_s": rate, "peak_memory_bytes": memory, "outcome": "ok"}
                   for i, (state, batch, prefetch, rate, memory) in enumerate(trials)],
        "fingerprints": {"model": "m-abc123", "data": "d-def456", "hardware": "h-0011",
                         "tensorflow": "tensorflow=2.21.0;keras=3.15.0", "options": "o-9"},
        "study": {"storage": "sqlite:////tmp/autobatch/optuna.db", "study_name": "autobatch-abc"},
        "hardware": {"cpus": 2, "memory_limit_bytes": 8 * 1024 * MiB, "gpus": []},
        "data": {"kind": "directory", "path": "/data/pets", "class_names": ["cats", "dogs"]},
        "model": {"spec": "small_cnn", "name": "small_cnn", "input_shape": [32, 32, 3],
                  "output_units": 2},
        "audit": {"num_files": 240, "num_usable": 230,
                  "skipped_by_reason": {"truncated": 4, "not_an_image": 6}},
    }


def minimal_plan() -> dict[str, Any]:
    """Arrays on a CPU: no baseline, no audit, no probes or trials, no study, no GPU (the
    pipeline is required by the plan schema; every plan autobatch wrote has one)."""
    return {"schema_version": 1, "batch_size": 16, "num_examples": 40, "ceiling_batch_size": 16,
            "steps_per_epoch": 3, "pipeline": _settings(), "measured": {"examples_per_s": 55.0},
            "baseline": None, "audit": None, "ceiling": {}, "trials": []}


class _PageNumbers(HTMLParser):
    """Collects the tagged numbers (data-key / data-derived), images and script tags."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: list[dict[str, Any]] = []
        self.images: list[dict[str, str]] = []
        self.scripts = 0
        self.ids: dict[str, str] = {}
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.images.append(attributes)
        if "data-key" in attributes or "data-derived" in attributes or "id" in attributes:
            self._open.append({"tag": tag, **attributes, "text": ""})

    def handle_data(self, data: str) -> None:
        for item in self._open:
            item["text"] += data

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index]["tag"] == tag:
                item = self._open.pop(index)
                if "data-key" in item or "data-derived" in item:
                    self.numbers.append(item)
                if "id" in item:
                    self.ids[item["id"]] = item["text"]
                break


def _parse(html_path: Path) -> _PageNumbers:
    parser = _PageNumbers()
    parser.feed(html_path.read_text(encoding="utf-8"))
    return parser
