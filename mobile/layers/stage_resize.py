"""Resizable Neural Networks: per-stage feature resizing and scale-aware BN.

A *spatial configuration* gives every stage of a network one scale factor (§3.1). The feature map of stage k is
resized (bilinear) to `round(s_k · n_k(r))` px per side, where n_k(r) = ceil(r / stride_k) is that stage's size in
the full configuration at input resolution r. Factors are relative to that full-configuration size, not to the
incoming map, so a stage's size depends only on (r, s_k), never on earlier stages' factors.

Scale-aware BN (§3.2) is therefore indexed by the pair (input resolution, factor of the most recent resize): every
BN after the first resize holds one private `BatchNorm2d` per (r, s) in resolutions × scales — stored as one
`SwitchableBatchNorm2d` per factor (state-dict keys `per_scale.{scale index}.bn.{resolution index}.*`, both in the
order of the model config's `scales` / `resolutions`). BNs before the first resize stay per resolution. Pairs were
chosen over the effective feature-map size because equal sizes reached two ways (r=32, s=0.5 vs r=16, s=1.0) hold
different content: a downsampled feature map of a large image is not the feature map of a small image. Unseen
resolutions reuse the per-resolution rules (`BNMode`) at the active factor; factors must be trained ones.

Layers here never import `resflex.mobile.models`; the model switches them with `set_stage_scales`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .resolution import ResolutionAware
from .switchable_bn import SwitchableBatchNorm2d

# One stage's side may shrink to half (¼ of its MACs) — about the span of RS-Nets' 224 → 96 px (0.43) — in three
# steps: 1.0 keeps the full network a sub-network (distillation teacher, RS-Net equivalent); three factors make a
# fair-sampling iteration three sub-networks per resolution and keep 3^stages configurations enumerable for search.
DEFAULT_STAGE_SCALES = (1.0, 0.75, 0.5)


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """Validate a list of trainable factors: non-empty, each a number in (0, 1], no duplicates; order kept."""
    values = tuple(scales)
    if not values:
        raise ValueError("scales: expected at least one stage scale factor")
    for s in values:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 < s <= 1:
            raise ValueError(f"scales: stage scale {s!r} in {list(values)}: expected a factor in (0, 1]")
    dupes = sorted({s for s in values if sum(math.isclose(s, t) for t in values) > 1})
    if dupes:
        raise ValueError(f"scales: duplicate factor(s) {dupes} in {list(values)}")
    return tuple(float(s) for s in values)


def check_stage_scales(stage_scales: Sequence[float], scales: Sequence[float], num_stages: int,
                       what: str = "model") -> tuple[float, ...]:
    """A configuration (one factor per stage) checked against the trained factors; returns the trained values."""
    if isinstance(stage_scales, (str, bytes)) or not isinstance(stage_scales, Sequence):
        raise ValueError(f"stage_scales: expected a sequence of {num_stages} factors, got {stage_scales!r}")
    values = list(stage_scales)
    if len(values) != num_stages:
        raise ValueError(f"stage_scales {values}: expected {num_stages} factors, one per stage of the {what}, "
                         f"got {len(values)}")
    out = []
    for s in values:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0 < s <= 1:
            raise ValueError(f"stage scale {s!r} in {values}: expected a factor in (0, 1]")
        match = [t for t in scales if math.isclose(s, t, abs_tol=1e-9)]
        if not match:
            raise ValueError(f"stage scale {s!r} in {values} was not trained; trained factors: "
                             f"{', '.join(f'{t:g}' for t in scales)}")
        out.append(match[0])
    return tuple(out)


class StageScaled(ResolutionAware):
    """A layer that follows one stage's scale factor (set by `set_stage_scales`)."""

    def __init__(self, resolutions: Sequence[int], scales: Sequence[float], stage: int):
        super().__init__(resolutions)
        self.scales = check_scales(scales)
        self.stage = int(stage)
        self.scale = max(self.scales)  # the full configuration

    def set_scale(self, scale: float) -> None:
        if scale not in self.scales:
            raise ValueError(f"stage {self.stage}: scale {scale!r} is not one of the trained factors {list(self.scales)}")
        self.scale = scale


class StageResize(StageScaled):
    """G(x, s) of stage `stage`: bilinear resize to round(s · ceil(r / stride)) px per side (§3.1).

    `stride` is the stage's total stride from the input. A no-op when the map already has the target size."""

    def __init__(self, resolutions: Sequence[int], scales: Sequence[float], stage: int, stride: int):
        super().__init__(resolutions, scales, stage)
        self.stride = int(stride)

    def target_size(self, resolution: int | None = None) -> int:
        nominal = math.ceil((resolution or self.resolution) / self.stride)
        return max(1, round(self.scale * nominal))

    def forward(self, x: Tensor) -> Tensor:
        size = self.target_size()
        if x.shape[-2] == size and x.shape[-1] == size:
            return x
        # §3.1: G is bilinear interpolation to the target size.
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"stage={self.stage}, stride={self.stride}, scales={list(self.scales)}"


class ScaleAwareBatchNorm2d(StageScaled):
    """§3.2 scale-aware BN: a private BN per (input resolution, factor of stage `stage`) pair (see module doc)."""

    def __init__(self, num_features: int, resolutions: Sequence[int], scales: Sequence[float], stage: int,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(resolutions, scales, stage)
        self.num_features = num_features
        self.per_scale = nn.ModuleList(SwitchableBatchNorm2d(num_features, resolutions, eps, momentum)
                                       for _ in self.scales)

    def at_scale(self, scale: float) -> SwitchableBatchNorm2d:
        """The per-resolution private BNs of one trained factor."""
        return self.per_scale[self.scales.index(scale)]

    def forward(self, x: Tensor) -> Tensor:
        return self.at_scale(self.scale)(x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, stage={self.stage}, scales={list(self.scales)}, resolutions={list(self.resolutions)}"


def set_stage_scales(module: nn.Module, stage_scales: Sequence[float]) -> None:
    """Give every stage-scaled layer inside `module` its stage's factor (validate with `check_stage_scales` first)."""
    for m in module.modules():
        if isinstance(m, StageScaled):
            if not 0 <= m.stage < len(stage_scales):
                raise ValueError(f"stage_scales {list(stage_scales)}: no factor for stage {m.stage}")
            m.set_scale(stage_scales[m.stage])
