"""Third-party noise during a conversion, filtered at its source unless the user asks for it (`verbose`).

A conversion drives four toolchains that each talk on the terminal: Python warnings (a FutureWarning from `copyreg`
for every pytree spec torch.export copies, coremltools' "untested torch version", torch.onnx's tracer warnings),
loggers (torchao's ".so" load failures, torch's pytree notice, coremltools' INFO lines and missing native libraries,
onnxruntime's quantizer advice on the root logger; onnxruntime's C++ session warnings are switched off with its own
log severity), coremltools' own progress bars (switched off in `resflex.convert.backends.coreml.common.quiet`) and
C++ code writing straight to file descriptor 2 (ExecuTorch's cpuinfo probe when XNNPACK's thread pool starts:
"[cpuinfo_utils.cpp:…] …"; LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."). `converting(verbose=
False)` scopes a filter for each to one conversion: warnings raised outside resflex are ignored, the noisy loggers
are raised to ERROR, and `native_stderr_filtered()` drops known noise lines written to fd 2 (everything else is
passed on). resflex's own warnings and messages are untouched. With `verbose=True` nothing is filtered.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

# Loggers raised to ERROR while converting ("" is the root logger: onnxruntime's quantizer logs there).
NOISY_LOGGERS = ("", "torch", "torchao", "coremltools", "executorch", "onnxruntime", "onnxscript", "onnx2tf",
                 "absl", "jax", "tensorflow")
# Lines C/C++ code writes to fd 2 that say nothing about the conversion.
NATIVE_NOISE = re.compile(r"^\[cpuinfo[^\]]*\]|^INFO: (Created|Initialized) TensorFlow Lite|^\s*$")

_VERBOSE = contextvars.ContextVar("resflex_convert_verbose", default=False)


def is_verbose() -> bool:
    """Whether the conversion in progress shows third-party output (`converting(verbose=True)`)."""
    return _VERBOSE.get()


@contextlib.contextmanager
def converting(verbose: bool = False) -> Iterator[None]:
    """The scope of one conversion: third-party warnings and logs filtered (module docstring) unless `verbose`."""
    token = _VERBOSE.set(verbose)
    try:
        if verbose:
            yield
            return
        with warnings.catch_warnings(), _loggers_at(logging.ERROR, NOISY_LOGGERS):
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"resflex(\.|$)")
            yield
    finally:
        _VERBOSE.reset(token)


@contextlib.contextmanager
def _loggers_at(level: int, names) -> Iterator[None]:
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        # each logger's own level, not its effective one: a library imported inside the block may reset the root
        # (xnnpack_partitioner runs `logging.basicConfig(level=WARNING)`), and only its own level shields a logger
        if logger.level < level:
            logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in saved:
            logger.setLevel(old)


@contextlib.contextmanager
def native_stderr_filtered(noise: re.Pattern = NATIVE_NOISE) -> Iterator[None]:
    """Capture what is written to file descriptor 2 (by C/C++ code as well as Python) for the duration, then pass
    every line that is not `noise` on to the real stderr. Nothing is captured when verbose or when fd 2 cannot be
    redirected. Use it around steps that print nothing of resflex's own (export, runtime loads)."""
    if is_verbose():
        yield
        return
    try:
        fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
    except (OSError, ValueError):  # a replaced sys.stderr (pytest's capsys) has no descriptor: fd 2 still is one
        fd = 2
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        _flush()
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            _flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not noise.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                _flush()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
