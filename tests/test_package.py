"""The package surface, the TensorFlow boundary and the CLI entry point."""

from __future__ import annotations

import subprocess
import sys

import autobatch
from autobatch._cli import main

EXPECTED_PUBLIC = {
    "AuditReport", "AutobatchError", "DataError", "Environment", "ModelError",
    "PipelineSettings", "Plan", "PlanError", "ProbeError", "ProbeResult", "SizeParseError",
    "UsageError", "__version__", "audit", "dataset", "environment", "fit",
    "parse_memory_size", "probe", "tune",
}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_public_surface_is_pinned() -> None:
    assert set(autobatch.__all__) == EXPECTED_PUBLIC


def test_every_public_name_resolves() -> None:
    for name in autobatch.__all__:
        assert getattr(autobatch, name) is not None


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
