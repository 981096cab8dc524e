"""Switchable batch normalisation: one private BatchNorm2d per training resolution (RS-Nets §3.1, SAN)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resolution import DEFAULT_BN_MODE, BNMode, ResolutionAware, nearest_resolution, neighbours, set_resolution, \
    upper_resolution


class SwitchableBatchNorm2d(ResolutionAware):
    """Private BN per training resolution, shared by nothing else.

    At a training resolution the layer is exactly that resolution's `BatchNorm2d` (train or eval). At any
    other resolution (eval only) it uses `parameters_at(r)`: an interpolation of the two neighbouring BNs (default),
    the nearest BN, the next larger one, or recalibrated statistics, depending on the active `BNMode`.
    """

    def __init__(self, num_features: int, resolutions: Sequence[int], eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(resolutions)
        self.num_features = num_features
        self.eps = eps
        self.bn = nn.ModuleList(nn.BatchNorm2d(num_features, eps=eps, momentum=momentum) for _ in self.resolutions)
        self.calibrated: dict[int, tuple[Tensor, Tensor]] = {}  # resolution -> (mean, var) from recalibrate_bn
        # resolution -> side of this layer's input map (filled by MultiResolutionNet.probe_map_sizes; not saved)
        self.map_sizes: dict[int, int] = {}
        self._moments: list | None = None  # [sum, sum of squares, count] while recalibrating

    def bn_at(self, resolution: int) -> nn.Module:
        """The private BN of a training resolution."""
        return self.bn[self.resolutions.index(resolution)]

    def parameters_at(self, resolution: int, mode: BNMode = DEFAULT_BN_MODE) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(γ, β, running mean, running var) this layer uses at `resolution` in `mode`."""
        pick = {BNMode.NEAREST: nearest_resolution, BNMode.UPPER: upper_resolution}.get(mode)
        if resolution in self.resolutions or pick is not None:
            bn = self.bn_at(resolution if resolution in self.resolutions else pick(self.resolutions, resolution))
            return bn.weight, bn.bias, bn.running_mean, bn.running_var
        lo, hi, t = neighbours(self.resolutions, resolution)
        a, b = self.bn_at(lo), self.bn_at(hi)
        # SAN supplementary Eq. 1: each BN quantity is linearly interpolated between the neighbouring scales — here
        # by where this layer's map size lies between theirs when known (see `interpolation_weight`).
        t = self.interpolation_weight(resolution, lo, hi, t)
        mix = lambda p, q: torch.lerp(p, q, t)  # noqa: E731
        weight, bias = mix(a.weight, b.weight), mix(a.bias, b.bias)
        if mode is BNMode.RECALIBRATE:
            if resolution not in self.calibrated:
                raise RuntimeError(
                    f"BN mode 'recalibrate' at resolution {resolution}: no statistics recalibrated for it; "
                    "call resflex.mobile.layers.recalibrate_bn(model, batches, resolution) first"
                )
            mean, var = self.calibrated[resolution]
            return weight, bias, mean, var
        return weight, bias, mix(a.running_mean, b.running_mean), mix(a.running_var, b.running_var)

    def interpolation_weight(self, resolution: int, lo: int, hi: int, t: float) -> float:
        """The weight of the `hi` neighbour: by this layer's map size, (h(r) − h(lo)) / (h(hi) − h(lo)), where the
        sizes are known and differ, else `t` (by input resolution). Strided layers round sizes, so deep layers at an
        unseen resolution often have exactly one neighbour's map size — and that neighbour's statistics; on real
        digits this rule matched or beat the nearest BN at every unseen size where the resolution weight lost up to
        3 pt to it (README, "Unseen resolutions")."""
        s = self.map_sizes
        if resolution in s and lo in s and hi in s and s[hi] != s[lo]:
            return min(1.0, max(0.0, (s[resolution] - s[lo]) / (s[hi] - s[lo])))
        return t

    def forward(self, x: Tensor) -> Tensor:
        if self._moments is not None:
            return self._collect(x)
        if self.is_trained_resolution:
            return self.bn_at(self.resolution)(x)
        if self.training:
            raise RuntimeError(
                f"cannot train at resolution {self.resolution}: training resolutions are {list(self.resolutions)}"
            )
        weight, bias, mean, var = self.parameters_at(self.resolution, self.bn_mode)
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)

    def _collect(self, x: Tensor) -> Tensor:
        """Accumulate exact per-channel moments; normalise with batch statistics as in training."""
        xd = x.detach().double()
        self._moments[0] += xd.sum(dim=(0, 2, 3))
        self._moments[1] += (xd * xd).sum(dim=(0, 2, 3))
        self._moments[2] += x.numel() // x.shape[1]
        weight, bias, _, _ = self.parameters_at(self.resolution, BNMode.INTERPOLATE)
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)

    def begin_recalibration(self) -> None:
        zeros = torch.zeros(self.num_features, dtype=torch.float64, device=self.bn[0].running_mean.device)
        self._moments = [zeros.clone(), zeros.clone(), 0]

    def end_recalibration(self) -> None:
        s1, s2, n = self._moments
        self._moments = None
        if n < 2:
            raise ValueError("recalibrate_bn: expected at least 2 values per channel; give more data")
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0) * (n / (n - 1))  # unbiased, as BatchNorm2d's running_var
        dtype = self.bn[0].running_mean.dtype
        self.calibrated[self.resolution] = (mean.to(dtype), var.to(dtype))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Tensor], resolution: int) -> int:
    """Recompute every switchable BN's statistics at `resolution` as exact averages over `batches`.

    `batches` yields input tensors already at `resolution` (normalised like the model expects). Afterwards
    the model runs at `resolution` with `bn_mode="recalibrate"`. Returns the number of images used.
    """
    layers = [m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)]
    if not layers:
        raise ValueError("recalibrate_bn: the model has no SwitchableBatchNorm2d layers")
    was_training = model.training
    model.eval()
    set_resolution(model, resolution, BNMode.RECALIBRATE)
    images = 0
    for layer in layers:
        layer.begin_recalibration()
    try:
        for x in batches:
            model(x)
            images += x.shape[0]
    except BaseException:
        for layer in layers:
            layer._moments = None
        raise
    # Private BNs of inactive stage factors (ScaleAwareBatchNorm2d) see nothing; they keep no recalibrated statistics.
    used = [layer for layer in layers if layer._moments[2] > 0] or layers
    for layer in layers:
        if layer in used:
            layer.end_recalibration()
        else:
            layer._moments = None
    model.train(was_training)
    return images


@torch.no_grad()
def randomize_private_bn(model: nn.Module, seed: int = 0, negative: float = 0.05, spread: float = 0.2) -> nn.Module:
    """Random, different BN parameters and statistics per resolution in every `SwitchableBatchNorm2d` of `model`, so
    an untrained model's resolutions really differ (benchmarks and tests of conversion, not training).

    Per channel γ = ±U(0.5, 1.5) with the sign drawn once per layer (a `negative` fraction negative, the same sign
    at every resolution, as in trained models), β and the running mean ~ N(0, `spread`), the running variance
    U(0.5, 2.0). Seeded by `seed`; returns `model` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for layer in model.modules():
        if isinstance(layer, SwitchableBatchNorm2d):
            sign = torch.where(torch.rand(layer.num_features, generator=g) < negative, -1.0, 1.0)
            for bn in layer.bn:
                bn.weight.copy_(sign * torch.empty(layer.num_features).uniform_(0.5, 1.5, generator=g))
                bn.bias.normal_(0, spread, generator=g)
                bn.running_mean.normal_(0, spread, generator=g)
                bn.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()
