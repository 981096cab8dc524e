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
                                          ("resflex.profiling", "profiling"), ("resflex.cli", "cli")])
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
    out = subprocess.run([sys.executable, "-m", "resflex.cli", "models"], capture_output=True, text=True,
                         check=True).stdout
    assert "mobilenet_v2" in out.split()


# Imports flow one way: bundle schema + I/O ← mobile ← convert ← profiling ← the command line.
LAYERS = ("resflex.mobile.bundle", "resflex.mobile", "resflex.convert", "resflex.profiling", "resflex.cli")
FOLDERS = {"mobile": "resflex.mobile", "convert": "resflex.convert", "profiling": "resflex.profiling",
           "cli": "resflex.cli"}


def _layer(module: str) -> int | None:
    matches = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    return max(matches) if matches else None


def _modules():
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            yield path, name, path.name == "__init__.py"


def _imports(path: Path, name: str, is_package: bool):
    """Every module `path` imports (also inside functions), as absolute names."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*prefix, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{a.name}" for a in node.names)  # `from pkg import submodule`


def test_imports_flow_one_way():
    wrong = []
    for path, name, is_package in _modules():
        own = _layer(name)
        for imported in _imports(path, name, is_package):
            layer = _layer(imported)
            if layer is not None and layer > own:
                wrong.append(f"{path.relative_to(REPO)} ({LAYERS[own]}) imports {imported} ({LAYERS[layer]})")
    assert not wrong, "imports against the layering " + " ← ".join(LAYERS) + ":\n" + "\n".join(sorted(set(wrong)))


def test_bundle_layer_is_torch_free():
    for path, name, is_package in _modules():
        if _layer(name) == 0:
            heavy = {i.split(".")[0] for i in _imports(path, name, is_package)} & {"torch", "numpy", "tqdm"}
            assert not heavy, f"{path.relative_to(REPO)} imports {heavy}: the bundle layer must stay torch-free"
