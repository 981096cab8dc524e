"""The resolution-switching protocol shared by every resolution-aware layer.

A layer that behaves differently per input resolution subclasses `ResolutionAware`; a model switches all
of them at once with `set_resolution(model, r)` (or the model's own `set_resolution` / `at_resolution`).
The resolution is never passed through `forward`, so exported graphs stay plain.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from torch import nn


class BNMode(str, enum.Enum):
    """How a switchable BN serves a resolution it was not trained at."""

    NEAREST = "nearest"  # proxy inference: the BN of the nearest training resolution
    INTERPOLATE = "interpolate"  # linear interpolation between the two neighbouring BNs (SAN supp. Eq. 1)
    RECALIBRATE = "recalibrate"  # statistics recomputed on data (`recalibrate_bn`), affine interpolated
    UPPER = "upper"  # the BN of the smallest training resolution ≥ T (the largest beyond the range)
    AUTO = "auto"  # the statistics `train` recalibrated on training images where the model holds them, else interpolate


# The default needs no images at serving time: `train` recalibrates the BN statistics of the untrained resolutions
# between its smallest and largest training one on training images and the checkpoint carries them
# (`calibration_table`); elsewhere it interpolates. Over 3 seeds it was ≥ `nearest` at every untrained resolution on
# the digits and synthetic sets (where `interpolate` lost up to 11 pt) and at most 0.4 pt below it on Fashion-MNIST
# (bench/RESULTS.md, bn_auto).
DEFAULT_BN_MODE = BNMode.AUTO


class ScaleCode(str, enum.Enum):
    """Which scale code a SAN meta-conv uses at an unseen test resolution T."""

    IDEAL = "ideal"  # ε(T): the meta-learner is queried at the test resolution itself
    PROXY = "proxy"  # ε(S(T)): the nearest training resolution


def parse_enum(enum_type: type[enum.Enum], value, what: str):
    """`enum_type(value)` with an error that lists the valid names."""
    try:
        return enum_type(value)
    except ValueError:
        valid = ", ".join(m.value for m in enum_type)
        raise ValueError(f"unknown {what} {value!r}; expected one of: {valid}") from None


def check_resolutions(resolutions: Sequence[int]) -> tuple[int, ...]:
    """Validate training resolutions: non-empty, positive integers, no duplicates; kept in the given order."""
    res = tuple(resolutions)
    if not res:
        raise ValueError("resolutions: expected at least one resolution")
    for r in res:
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ValueError(f"resolutions: expected positive integers, got {r!r} in {list(res)}")
    dupes = sorted({r for r in res if res.count(r) > 1})
    if dupes:
        raise ValueError(f"resolutions: duplicate resolution(s) {dupes} in {list(res)}")
    return res


def nearest_resolution(resolutions: Sequence[int], r: int) -> int:
    """The training resolution closest to r; ties go to the larger one (deterministic)."""
    return min(resolutions, key=lambda s: (abs(s - r), -s))


def upper_resolution(resolutions: Sequence[int], r: int) -> int:
    """The smallest training resolution ≥ r; the largest when r is above them all. Strided 3×3 convs round map sizes
    up (⌈h/2⌉), so between two training resolutions a multiple of 2^k apart the maps at stride 2^k are the upper
    one's — and its BNs are one set trained together, where an interpolated or per-layer mix never was."""
    return min((s for s in resolutions if s >= r), default=max(resolutions))


def neighbours(resolutions: Sequence[int], r: int) -> tuple[int, int, float]:
    """(lo, hi, t) with lo <= r <= hi neighbouring training resolutions and r = (1-t)·lo + t·hi.

    Outside the trained range the nearest end is returned with t = 0 (clamping).
    """
    ordered = sorted(resolutions)
    if r <= ordered[0]:
        return ordered[0], ordered[0], 0.0
    if r >= ordered[-1]:
        return ordered[-1], ordered[-1], 0.0
    for lo, hi in zip(ordered, ordered[1:]):
        if lo <= r <= hi:
            return lo, hi, (r - lo) / (hi - lo)
    raise AssertionError("unreachable")


class ResolutionAware(nn.Module):
    """Base for layers whose behaviour depends on the active input resolution."""

    def __init__(self, resolutions: Sequence[int]):
        super().__init__()
        self.resolutions = check_resolutions(resolutions)
        self.resolution = self.resolutions[0]
        self.bn_mode = DEFAULT_BN_MODE
        self.scale_code = ScaleCode.IDEAL

    def switch(self, resolution: int, bn_mode: BNMode, scale_code: ScaleCode) -> None:
        self.resolution = int(resolution)
        self.bn_mode = bn_mode
        self.scale_code = scale_code

    @property
    def is_trained_resolution(self) -> bool:
        return self.resolution in self.resolutions


def set_resolution(
    module: nn.Module,
    resolution: int,
    bn_mode: BNMode | str = DEFAULT_BN_MODE,
    scale_code: ScaleCode | str = ScaleCode.IDEAL,
) -> None:
    """Switch every resolution-aware layer inside `module` to `resolution`."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        raise ValueError(f"resolution: expected a positive integer, got {resolution!r}")
    bn_mode = parse_enum(BNMode, bn_mode, "BN mode")
    scale_code = parse_enum(ScaleCode, scale_code, "scale code")
    for m in module.modules():
        if isinstance(m, ResolutionAware):
            m.switch(resolution, bn_mode, scale_code)
