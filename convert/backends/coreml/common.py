"""What the Core ML modules share: entry names, the platform check, coremltools imported quietly with the
`resflex::` graph passes registered, and two things that make its conversions cheaper (`validated_once_per_pipeline`,
`gc_skips_existing`)."""

from __future__ import annotations

import contextlib
import functools
import gc
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


@contextlib.contextmanager
def validated_once_per_pipeline() -> Iterator[None]:
    """Validate a MIL program once per pass pipeline instead of after every pass (a third of an export's CPU time).

    coremltools' `PassPipelineManager.apply_pipeline` calls `Program.validate` before the pipeline and after each of
    its ~100 passes (even in `save_multifunction`, whose program skips every pass); each call walks every op's inputs
    and consumers. Within the pipeline this defers that walk to one `Program.validate` after the last pass. Sound:
    `validate` only reads the program and raises on an inconsistent one, so the program a pipeline produces is the
    same op for op, and an inconsistent result still raises (after the pipeline rather than after the pass that made
    it). The essential-scope check requested after each `common::dead_code_elimination` (cheap: it looks up each op's
    scopes) still runs there. Restores both on exit; nested uses are no-ops."""
    from coremltools.converters.mil.mil.passes.pass_pipeline import PassPipelineManager
    from coremltools.converters.mil.mil.program import Program

    raw, apply, validate = PassPipelineManager.__dict__["apply_pipeline"], PassPipelineManager.apply_pipeline, \
        Program.validate
    if getattr(apply, "_resflex_deferred", False):
        yield
        return

    def scopes_only(prog, check_essential_scope: bool = False) -> None:
        if check_essential_scope:
            for func in prog.functions.values():
                check = getattr(func, "_check_has_scope_info", None)
                if check is None:  # another coremltools: the full validation it asked for
                    return validate(prog, check_essential_scope=True)
                check()

    def apply_pipeline(prog, pass_pipeline):
        outer, Program.validate = Program.validate, scopes_only
        try:
            apply(prog, pass_pipeline)
        finally:
            Program.validate = outer  # a pipeline run by a pass (symbol_transform) leaves its caller's deferred
        validate(prog)

    apply_pipeline._resflex_deferred = True
    PassPipelineManager.apply_pipeline = staticmethod(apply_pipeline)
    try:
        yield
    finally:
        PassPipelineManager.apply_pipeline = raw
        Program.validate = validate


@contextlib.contextmanager
def gc_skips_existing() -> Iterator[None]:
    """Collections skip the objects alive on entry (`gc.freeze`; `gc.unfreeze` on exit): `ct.convert` ends with a
    full `gc.collect()`, which otherwise walks every object of torch, coremltools and the baked modules each time
    (10% of an export's CPU time). Only when a collection happens changes: cyclic garbage among those objects is
    freed after the exit. Does nothing when something else has frozen objects (their freeze is theirs to undo)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
