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
    other resolution (eval only) it uses `parameters_at(r)`: recalibrated statistics where it holds them for `r`
    (default, else as interpolate), an interpolation of the two neighbouring BNs, the nearest BN or the next larger
    one, depending on the active `BNMode`.
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
        if mode is BNMode.RECALIBRATE and resolution not in self.calibrated:
            raise RuntimeError(
                f"BN mode 'recalibrate' at resolution {resolution}: no statistics recalibrated for it; "
                "call resflex.mobile.layers.recalibrate_bn(model, batches, resolution) first"
            )
        if mode in (BNMode.RECALIBRATE, BNMode.AUTO) and resolution in self.calibrated:
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


# The bounds of a checkpoint's table: a resolution is at most 4096 px (check_numbers), one per pixel at most.
MAX_CALIBRATED_RESOLUTIONS = 4096


def unseen_between(resolutions: Sequence[int], step: int | None = None) -> list[int]:
    """The untrained resolutions `train` recalibrates by default: every `step`-th pixel strictly between the smallest
    and largest training resolution (step 1 where the range spans ≤ 64 px, else 8: about 16 per 128 px), largest
    first."""
    lo, hi = min(resolutions), max(resolutions)
    step = step or (1 if hi - lo <= 64 else 8)
    return [r for r in range(hi - 1, lo, -1) if r not in resolutions and (hi - r) % step == 0]


def _switchable_bns(model: nn.Module) -> dict[str, SwitchableBatchNorm2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, SwitchableBatchNorm2d)}


def calibration_table(model: nn.Module, images: int) -> dict | None:
    """The recalibrated statistics `model`'s switchable BNs hold, for a checkpoint: {"images": n, "statistics":
    {resolution: {layer name: tensor [2, C] (mean; var)}}}, or None when they hold none."""
    layers = _switchable_bns(model)
    resolutions = sorted({r for m in layers.values() for r in m.calibrated}, reverse=True)
    if not resolutions:
        return None
    return {"images": int(images), "statistics": {
        r: {name: torch.stack(m.calibrated[r]).detach().cpu() for name, m in layers.items() if r in m.calibrated}
        for r in resolutions}}


def load_calibration_table(model: nn.Module, table) -> int:
    """Put a `calibration_table` into `model`'s switchable BNs; returns its image count. A malformed table (not
    that shape, a resolution the model was trained at or out of [1, 4096], a layer the model does not have, a
    statistic of another shape, not finite, or a negative variance) is a ValueError naming the field."""
    layers = _switchable_bns(model)
    if not isinstance(table, dict) or not isinstance(table.get("statistics"), dict):
        raise ValueError("bn_calibration: expected an object with 'images' and 'statistics'")
    images = table.get("images")
    if isinstance(images, bool) or not isinstance(images, int) or not 2 <= images <= 10**9:
        raise ValueError(f"bn_calibration.images = {str(images)[:40]}, expected an integer in [2, 1000000000]")
    statistics = table["statistics"]
    if len(statistics) > MAX_CALIBRATED_RESOLUTIONS:
        raise ValueError(f"bn_calibration.statistics: {len(statistics)} resolutions, expected at most "
                         f"{MAX_CALIBRATED_RESOLUTIONS}")
    trained = {r for m in layers.values() for r in m.resolutions}
    loaded: dict[str, dict[int, tuple[Tensor, Tensor]]] = {name: {} for name in layers}
    for r, per_layer in statistics.items():
        where = f"bn_calibration.statistics[{str(r)[:20]}]"
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 4096 or r in trained:
            raise ValueError(f"{where}: expected an untrained resolution, an integer in [1, 4096] not in "
                             f"{sorted(trained)}")
        # a layer the forward pass never reaches has no statistics (it keeps interpolating); an unknown one is refused
        odd = sorted(str(n)[:80] for n in per_layer if n not in layers)[:3] if isinstance(per_layer, dict) else []
        if not isinstance(per_layer, dict) or odd:
            raise ValueError(f"{where}: expected statistics per switchable BN layer of the model"
                             + (f"; unknown {odd}" if odd else ""))
        for name, value in per_layer.items():
            c = layers[name].num_features
            if not isinstance(value, Tensor) or not value.is_floating_point() or tuple(value.shape) != (2, c):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{where}[{name!r}]: expected a float tensor of shape (2, {c}) (mean; var), got "
                                 f"{shape}")
            if not torch.isfinite(value).all() or (value[1] < 0).any():
                raise ValueError(f"{where}[{name!r}]: statistics must be finite with variances ≥ 0")
            dtype = layers[name].bn[0].running_mean.dtype
            loaded[name][r] = (value[0].to(dtype).clone(), value[1].to(dtype).clone())
    for name, m in layers.items():
        m.calibrated.update(loaded[name])
    return images
