"""The repository's folders install under one namespace and resolve to this checkout."""

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, folder", [("resflex.mobile", "mobile"), ("resflex.convert", "convert"),
                                          ("resflex.profiling", "profiling")])
def test_namespace_maps_to_repository_folders(name, folder):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == REPO / folder


def test_layers_never_import_models():
    for path in (REPO / "mobile" / "layers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "models" not in (node.module or "") and node.level <= 1, f"{path}: {ast.unparse(node)}"
            elif isinstance(node, ast.Import):
                assert not any("models" in a.name for a in node.names), f"{path}: {ast.unparse(node)}"


def test_console_script_lists_subcommands():
    exe = shutil.which("resflex")
    assert exe, "the resflex console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "eval"):
        assert command in out


def test_python_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "resflex.mobile.cli", "models"], capture_output=True, text=True,
                         check=True).stdout
    assert "mobilenet_v2" in out.split()
