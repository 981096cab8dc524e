"""What the bench smoke tests share: a bench script loaded as a module (bench/ is not a package)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def load_bench():
    """`load_bench("coreml_time_bench")`: bench/coreml_time_bench.py as a module."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
