"""The package surface, the TensorFlow boundary and the CLI entry point."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import autobatch
from autobatch._cli import main

EXPECTED_PUBLIC = {
    "AuditReport", "AutobatchError", "DataError", "Environment", "ModelError",
    "PipelineSettings", "Plan", "PlanError", "ProbeError", "ProbeResult", "SizeParseError",
    "UsageError", "__version__", "audit", "dataset", "environment", "fit", "image_folder",
    "parse_memory_size", "probe", "tune",
}

# Each public function's parameters as "name", "name=default", "*keyword_only=default",
# "**var_keyword": callers' code depends on them.
PUBLIC_SIGNATURES: dict[str, list[str]] = {
    "audit": ["data_dir", "deep=False", "*workers=None", "*progress=None", "*max_pixels=None"],
    "dataset": [
        "data", "plan=None", "*model=None", "*repeat=False", "*shuffle=True", "*seed=None",
        "*image_size=None", "*tune_options=None", "*strategy=None", "*data_service=None",
    ],
    "environment": [],
    "fit": [
        "model", "data", "*epochs=1", "*plan=None", "*validation_split=None", "*seed=None",
        "*callbacks=None", "*verbose='auto'", "*image_size=None", "*num_examples=None",
        "*batched=None", "*max_pixels=None", "*parse=None", "*label_mode=None",
        "*augment=None", "*time_budget=None",
        "*memory_budget=None", "*pixels=None", "*scale_lr=False", "*reference_batch_size=None",
        "*tune_options=None", "*on_epoch=None", "*strategy=None", "*data_service=None",
        "*effective_batch_size=None", "*objective=None", "*adapt=False", "**fit_kwargs",
    ],
    "image_folder": [
        "directory", "*class_names=None", "*color_mode=None", "*interpolation='bilinear'",
        "*crop_to_aspect_ratio=False", "*pad_to_aspect_ratio=False", "*max_pixels=None",
    ],
    "parse_memory_size": ["text", "*limit_bytes=None"],
    "probe": [
        "model", "data", "*batch_size=None", "*plan=None", "*image_size=None", "*channels=None",
        "*memory_budget=None", "*steps=5", "*warmup_steps=1", "*min_time=0.0", "*mode='fit'",
        "*settings=None", "*jit_compile=False", "*timeout=300.0", "*custom_objects_module=None",
    ],
    "tune": [
        "model", "data", "*image_size=None", "*channels=None", "*memory_budget=None",
        "*time_budget=None", "*trials=None", "*pixels='auto'", "*try_xla=True", "*try_levers=True",
        "*seed=0",
        "*num_examples=None", "*max_pixels=None", "*parse=None", "*augment=None", "*output=None",
        "*storage=None",
        "*force=False",
        "*verbose='auto'", "*on_event=None", "*measure_baseline=True", "*trial_steps=5",
        "*verify_steps=15", "*max_batch_size=None", "*custom_objects_module=None",
        "*search_space=None", "*use_cache=True", "*runner=None", "*strategy=None",
        "*data_service=None", "*epochs=None", "*objective='throughput'",
        "*effective_batch_size=None", "*time_budget_s=None",
    ],
}


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_public_surface_is_pinned() -> None:
    assert set(autobatch.__all__) == EXPECTED_PUBLIC


def test_every_public_name_resolves() -> None:
    for name in autobatch.__all__:
        assert getattr(autobatch, name) is not None


def test_all_is_exactly_the_sorted_public_names() -> None:
    # As httpx pins its exports: every name a user can import without an underscore (each
    # lazy one resolved first) is in __all__, and __all__ is sorted.
    for name in autobatch.__all__:
        getattr(autobatch, name)
    public = [name for name in vars(autobatch) if not name.startswith("_")]
    assert autobatch.__all__ == sorted([*public, "__version__"])


def _parameters(function: object) -> list[str]:
    prefix = {inspect.Parameter.KEYWORD_ONLY: "*", inspect.Parameter.VAR_KEYWORD: "**",
              inspect.Parameter.VAR_POSITIONAL: "*args:"}
    return [prefix.get(p.kind, "") + p.name
            + ("" if p.default is inspect.Parameter.empty else f"={p.default!r}")
            for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]


def test_public_signatures_are_pinned() -> None:
    functions = {name for name in autobatch.__all__
                 if inspect.isfunction(getattr(autobatch, name))}
    assert functions == set(PUBLIC_SIGNATURES)
    for name, expected in PUBLIC_SIGNATURES.items():
        assert _parameters(getattr(autobatch, name)) == expected, name


def test_import_does_not_import_tensorflow() -> None:
    proc = _run("import autobatch, sys; assert 'tensorflow' not in sys.modules; "
                "assert 'keras' not in sys.modules; print('clean')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"


def test_help_does_not_import_tensorflow() -> None:
    proc = _run("import sys\nfrom autobatch._cli import main\n"
                "try:\n    main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
                "assert 'tensorflow' not in sys.modules\nprint('exit', code)")
    assert proc.returncode == 0, proc.stderr
    assert "exit 0" in proc.stdout
    for command in ("env", "audit", "probe", "tune", "fit", "report", "demo"):
        assert command in proc.stdout


def test_console_script_and_module_entry_points() -> None:
    module = subprocess.run([sys.executable, "-m", "autobatch", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and autobatch.__version__ in module.stdout
    script = subprocess.run(["autobatch", "--version"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and autobatch.__version__ in script.stdout


def test_no_command_prints_help_and_exits_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_unknown_attribute_raises() -> None:
    try:
        autobatch.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_startup_noise_filter_recognises_tensorflow_lines() -> None:
    from autobatch._quiet import is_startup_noise

    assert is_startup_noise("I0000 00:00:1796230865.448927    5603 cudart_stub.cc:31] Could not "
                            "find cuda drivers on your machine, GPU will not be used.")
    assert is_startup_noise("E0000 00:00:1796230873.975294    5603 cuda_platform.cc:52] failed "
                            "call to cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)")
    assert is_startup_noise("WARNING: All log messages before absl::InitializeLog() is called "
                            "are written to STDERR")
    assert not is_startup_noise("Traceback (most recent call last):")
    assert not is_startup_noise("ValueError: I0000 is not a line start")


def test_fd2_filter_keeps_what_is_not_noise() -> None:
    proc = _run("import os\nfrom autobatch._quiet import _fd2_filtered\nwith _fd2_filtered():\n"
                "    os.write(2, b'I0000 00:00:17.5  12 cudart_stub.cc:31] noise\\n')\n"
                "    os.write(2, b'a real message\\n')\n"
                "os.write(2, b'after\\n')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "a real message\nafter\n"


def test_cli_keeps_tensorflow_startup_lines_off_stderr() -> None:
    # The CLI's main() installs the hook (without importing TensorFlow for env); the
    # first TensorFlow import and device set-up then write nothing to the terminal.
    proc = _run("import os, sys\nfrom autobatch._cli import main\nmain(['env', '--json'])\n"
                "assert 'tensorflow' not in sys.modules\n"
                "assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '3'\n"
                # The check that TensorFlow is installed looks it up without using the hook up.
                "from autobatch._framework import require_tensorflow\nrequire_tensorflow()\n"
                "assert 'tensorflow' not in sys.modules\n"
                "import tensorflow as tf\ntf.config.list_physical_devices()\n"
                "print(int(tf.constant(2) + 1))",
                env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("3")
    assert proc.stderr == "", proc.stderr
