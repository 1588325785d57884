"""Style breaks CI: flake8 over the package, tests, benchmarks, launch files and scripts."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_clean():
    pytest.importorskip("flake8")
    result = subprocess.run([sys.executable, "-m", "flake8", "inerf_ros", "test", "bench", "launch", "scripts"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
