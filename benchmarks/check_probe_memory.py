"""Must-show check: the probe's peak host memory vs the kernel's VmHWM of a plain ``model.fit``.

Runs ``autobatch probe DIR --model mobilenet_v2 --image-size 96 --batch-size 8 --json`` and, in
another child process, an equivalent plain Keras run (the same built-in model, Keras' own
``image_dataset_from_directory`` at batch 8, a few ``fit`` steps), then compares the two
``VmHWM`` figures. Usage: ``python benchmarks/check_probe_memory.py [DATA_DIR]`` (a folder of
generated JPEGs is made when none is given). Exit 0 when within 20%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PLAIN_FIT = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
from autobatch._for_benchmarks import resolve_model
data_dir, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ds = keras.utils.image_dataset_from_directory(data_dir, image_size=(size, size), batch_size=batch)
model = resolve_model("mobilenet_v2", num_classes=len(ds.class_names), image_size=size)
model.fit(ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VMHWM_BYTES", int(line.split()[1]) * 1024)
"""


def make_folder(root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_image_folder

    return make_image_folder(root, {"a": 40, "b": 30, "c": 30}, size=(128, 112))


def main() -> int:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else make_folder(
        Path(tempfile.mkdtemp(prefix="autobatch-mem-")) / "data")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    probe = subprocess.run(
        [sys.executable, "-m", "autobatch", "probe", str(data_dir), "--model", "mobilenet_v2",
         "--image-size", "96", "--batch-size", "8", "--steps", "5", "--json"],
        capture_output=True, text=True, env=env, check=False)
    result = json.loads(probe.stdout)
    # warm-up + 5 timed steps in the probe: the same number of fit steps here.
    plain = subprocess.run([sys.executable, "-c", PLAIN_FIT, str(data_dir), "96", "8", "6"],
                           capture_output=True, text=True, env=env, check=False)
    fit_peak = next(int(line.split()[1]) for line in plain.stdout.splitlines()
                    if line.startswith("VMHWM_BYTES"))
    probe_peak = int(result["peak_host_memory_bytes"])
    ratio = probe_peak / fit_peak
    print(json.dumps({"probe_outcome": result["outcome"], "probe_exit_code": probe.returncode,
                      "probe_peak_host_memory_bytes": probe_peak,
                      "plain_fit_vmhwm_bytes": fit_peak, "ratio": round(ratio, 3),
                      "probe_wall_time_s": result["wall_time_s"]}, indent=2))
    return 0 if result["outcome"] == "ok" and abs(ratio - 1) <= 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
