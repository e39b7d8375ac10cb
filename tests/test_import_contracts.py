"""The import-linter contracts (.importlinter) hold, and they do catch an upward import."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def run_lint(src: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(ROOT / ".importlinter")], cwd=src,
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_package_keeps_every_contract():
    result = run_lint(ROOT / "src")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(ROOT / "src" / "precimed", tmp_path / "precimed",
                    ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "*.j2"))
    metrics = tmp_path / "precimed" / "evaluate" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nfrom precimed.workflows import predicting  # noqa\n")
    result = run_lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "precimed.evaluate.metrics -> precimed.workflows" in result.stdout
