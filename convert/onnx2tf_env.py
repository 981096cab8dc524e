"""Where the onnx2tf tool environment lives, and how to tell a user to create it.

onnx2tf 1.29.24 pins numpy 1.26.4, tensorflow 2.19.0, onnx 1.19.1, ... which clash with the main environment
(ExecuTorch needs numpy >= 2), so the TFLite backend runs it — and TensorFlow's TFLite converter — as a subprocess
from a virtual environment of its own, created by `bash scripts/setup-onnx2tf.sh`. The setting that locates it is
the environment variable `RESFLEX_ONNX2TF_VENV` (default `~/.cache/resflex/onnx2tf-venv`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "RESFLEX_ONNX2TF_VENV"
DEFAULT_VENV = Path("~/.cache/resflex/onnx2tf-venv")
ONNX2TF_VERSION = "1.29.24"
ONNX2TF_REQUIREMENTS = (f"onnx2tf=={ONNX2TF_VERSION}",)  # keep in sync with scripts/setup-onnx2tf.sh
SETUP_SCRIPT = "scripts/setup-onnx2tf.sh"


def onnx2tf_venv() -> Path:
    """The configured environment folder: `$RESFLEX_ONNX2TF_VENV`, else `~/.cache/resflex/onnx2tf-venv`."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_VENV).expanduser()


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _has_onnx2tf(venv: Path) -> bool:
    lib = venv / ("Lib" if sys.platform == "win32" else "lib")
    return any(lib.glob("python3*/site-packages/onnx2tf/__init__.py")) or (lib / "site-packages/onnx2tf").is_dir()


def install_hint(venv: Path | None = None) -> str:
    venv = venv or onnx2tf_venv()
    return (f"create it with `bash {SETUP_SCRIPT}` (or `bash {SETUP_SCRIPT} /some/dir` and then "
            f"`export {ENV_VAR}=/some/dir`); it installs {' '.join(ONNX2TF_REQUIREMENTS)} and its pinned "
            f"TensorFlow 2.19 into a virtual environment of its own (about 2.6 GB, a few minutes). "
            f"{ENV_VAR} points the converter at it (now: {venv})")


def find_onnx2tf() -> Path:
    """The Python interpreter of the onnx2tf environment (run helpers with it: `python -c ...` imports onnx2tf).

    Raises RuntimeError, saying how to install it, when the environment or onnx2tf inside it is missing.
    """
    venv = onnx2tf_venv()
    python = _venv_python(venv)
    if not venv.is_dir():
        raise RuntimeError(f"the onnx2tf environment for the TFLite backend is missing: no folder {venv}; "
                           + install_hint(venv))
    if not python.exists():
        raise RuntimeError(f"the onnx2tf environment {venv} is not a virtual environment (no {python}); "
                           + install_hint(venv))
    if not _has_onnx2tf(venv):
        raise RuntimeError(f"onnx2tf is not installed in the environment {venv}; " + install_hint(venv))
    return python
