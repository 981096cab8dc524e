"""What the Core ML modules share: entry names, the platform check, and coremltools imported quietly with the
`resflex::` graph passes registered."""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
import warnings
from collections.abc import Iterator

from ...quiet import is_verbose
from ...runtimes import Spatial

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
ON_MACOS = sys.platform == "darwin"
NOT_ON_HOST = "Core ML cannot run on Linux: checked structurally, top-1 from the MIL reference evaluator"


def function_name(resolution: int | Spatial) -> str:
    return f"forward_{Spatial.of(resolution).tag}"


def coremltools():
    """coremltools, imported on first use (its import takes seconds and pulls in much of the toolchain), with the
    graph passes of `resflex.convert.backends.coreml.passes` registered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct

        from . import passes  # noqa: F401  (registers the resflex:: passes)
    return ct


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence coremltools while converting: its per-op warnings about untested torch versions, its INFO logs and
    its progress bars (one per conversion stage and pass pipeline) — unless the conversion is verbose
    (`resflex.convert.quiet.converting(verbose=True)`)."""
    if is_verbose():
        yield
        return
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _no_tqdm_bars():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# coremltools' progress bars (one per conversion stage and pass pipeline): module → its name for tqdm
_BARS = (("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
         ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
         ("coremltools.optimize.coreml._quantization_passes", "tqdm"),
         ("coremltools.optimize.coreml._post_training_quantization", "tqdm"))


@contextlib.contextmanager
def _no_tqdm_bars() -> Iterator[None]:
    """coremltools has no switch for its progress bars, so the `tqdm` its modules imported is disabled for the
    duration (modules not there are skipped)."""
    patched = []
    for name, attr in _BARS:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
        bar = getattr(module, attr, None)
        if bar is not None:
            patched.append((module, attr, bar))
            setattr(module, attr, functools.partial(bar, disable=True))
    try:
        yield
    finally:
        for module, attr, bar in patched:
            setattr(module, attr, bar)
