"""What every backend exporter produces and how its artifact runs on the host."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import Tensor, nn

from ..qat_ranges import RangeUse
from ..runtimes import Entry

__all__ = ["Entry", "Exported", "HostRunner", "Exporter", "check_calib_method"]


@dataclasses.dataclass(frozen=True)
class Exported:
    """An artifact written by an exporter (paths relative to the export directory)."""

    backend: str
    precision: str
    files: tuple[str, ...]  # the first is the main file
    layout: str  # "NCHW" or "NHWC"
    entries: tuple[Entry, ...]
    runs_on_host: bool = True
    notes: str = ""
    folded_layers: tuple[str, ...] | None = None  # fp32 sharing plan: convs with BN folded per resolution
    compute_units: tuple[str, ...] | None = None  # the units the LUT offers its entries on (None: all the backend's)
    companions: tuple[Exported, ...] = ()  # further artifacts of the same conversion (TFLite int8's CPU-only one)
    range_use: RangeUse | None = None  # int8 with QAT ranges: activation points from QAT and from the images


def check_calib_method(backend: str, method: str | None, allowed: tuple[str, ...]) -> str:
    """The int8 calibration method a backend uses: `method`, or the backend's default (`allowed[0]`) for None; an
    unknown one raises ValueError listing the backend's methods."""
    if method is None:
        return allowed[0]
    if method not in allowed:
        raise ValueError(f"calibration method {method!r} is not available for backend {backend!r}; expected one of: "
                         f"{', '.join(allowed)}")
    return method


class HostRunner(Protocol):
    """Runs an artifact in its own runtime on the host (`resflex.convert.runtimes.Runtime` does)."""

    def run(self, entry: Entry, x: np.ndarray) -> np.ndarray:
        """x: float32 NCHW batch (normalised) → float32 logits (batch, classes)."""


class Exporter(Protocol):
    """What each backend module provides (`ExecuTorchBackend`, `CoreMLBackend`, ...): export one artifact, run it."""

    name: str
    precisions: tuple[str, ...]
    bn_style: str  # how `resflex.convert.bake` prepares the modules `export` takes: "fold" or "affine"
    calib_methods: tuple[str, ...]  # int8 activation calibration methods; the first is the default
    sharing: str  # `ConvertConfig.sharing`, given to the constructor
    # True: the exporter runs in a process of its own, and `start(baked, precisions, calib, out_dir)` returns a
    # `resflex.convert.background.ChildJob` whose `exported(precision)` waits for it (TFLite); False: `convert` may
    # run `export` in a `BackgroundExport` child
    own_process: bool

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        """Write one artifact serving every resolution in `baked` (resolution → plain eval module, see
        `resflex.convert.bake`); `calib` holds normalised NCHW calibration batches per resolution."""

    def runner(self, exported: Exported, out_dir: Path) -> HostRunner | None:
        """A host runner, or None where the runtime does not exist on this platform."""
