"""Multi-resolution quantization-aware training (`resflex train --qat`): shared weights fake-quantized once, in the
scheme the mobile int8 backends run, and activation ranges kept per resolution. (The RS-Nets paper's quantized
RS-Nets, official code `quantization/` after LQ-Nets, also share low-bit weights across resolutions with a private
BN each; their learned 2-bit quantizers are not what a phone runtime executes, int8 in this scheme is.)

- **Weights**: every conv and linear weight is fake-quantized per output channel, symmetric int8 in [-127, 127] —
  the XNNPACK (ExecuTorch), TFLite and ONNX Runtime per-channel rule. The *unfolded* shared weight is quantized:
  the backends fold each resolution's BN scale a_r into the conv, and per-channel symmetric quantization of W · a_r
  has values sign(a_r) · round(W / s_w) and scales s_w · |a_r| (`resflex.convert.backends.onnx`), so one grid
  serves every resolution and BN needs no folding simulation here.
- **Activations**: per-tensor asymmetric int8 in [-128, 127] with a moving-average min/max range per resolution
  (each resolution is calibrated on its own at conversion) at the points the quantizers put them: the input, every
  conv-BN(-activation) unit's output, every residual block's output, and the logits.

The result is an ordinary float checkpoint whose weights lie on (or next to) the int8 grid, plus the learned ranges
(`QAT.range_table`, checkpoint field `qat_ranges`): `resflex convert --calib-from qat` (the default for such a
checkpoint) gives them to the quantizers that take ranges (ExecuTorch, ONNX Runtime) instead of re-measuring them.
PyTorch's PT2E QAT (`prepare_qat_pt2e`) is not used: it traces one graph per input shape, so the five resolutions'
graphs would hold five copies of the weights and train them apart, where these networks share one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import MetaConv2d, ScaleAwareBatchNorm2d, StageResize, SwitchableBatchNorm2d
from .models.base import Method, MultiResolutionNet

WEIGHT_QMAX = 127  # symmetric int8 weights: [-127, 127]
ACT_QMIN, ACT_QMAX = -128, 127  # asymmetric int8 activations
RANGE_MOMENTUM = 0.01  # moving-average weight of each batch's min/max (PyTorch's MovingAverageMinMaxObserver)
QAT_METHODS = (Method.RSNET, Method.SAN, Method.SINGLE)
BN_TYPES = (nn.BatchNorm2d, SwitchableBatchNorm2d)
INPUT_POINT = "<input>"  # the model input's point in a range table (every other point is a module FQN: its output)


def fake_quant_weight(w: Tensor) -> Tensor:
    """Per-output-channel symmetric int8 fake quantization with a straight-through gradient."""
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / WEIGHT_QMAX
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


class QATConv2d(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, fake_quant_weight(self.weight), self.bias)


class QATLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, fake_quant_weight(self.weight), self.bias)


class QATMetaConv2d(MetaConv2d):
    """SAN: the kernel generated for the resolution is what the baked artifact holds, so that one is quantized."""

    def forward(self, x: Tensor) -> Tensor:
        w = fake_quant_weight(self.weight_at(self.code_resolution()))
        return F.conv2d(x, w, self.bias, self.stride, self.padding, 1, self.groups)


_SWAPS = ((MetaConv2d, QATMetaConv2d), (nn.Conv2d, QATConv2d), (nn.Linear, QATLinear))


class ActivationRange(nn.Module):
    """One quantization point: a moving-average (min, max) per resolution, updated in training, used to
    fake-quantize; a resolution never observed passes through unquantized."""

    def __init__(self, resolutions):
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.register_buffer("lo", torch.zeros(len(self.resolutions)))
        self.register_buffer("hi", torch.zeros(len(self.resolutions)))
        self.register_buffer("seen", torch.zeros(len(self.resolutions), dtype=torch.bool))

    def forward(self, x: Tensor, resolution: int, training: bool) -> Tensor:
        if resolution not in self.resolutions:
            return x
        i = self.resolutions.index(resolution)
        if training:
            with torch.no_grad():
                lo, hi = x.detach().min().float(), x.detach().max().float()
                if self.seen[i]:
                    lo, hi = torch.lerp(self.lo[i], lo, RANGE_MOMENTUM), torch.lerp(self.hi[i], hi, RANGE_MOMENTUM)
                self.lo[i], self.hi[i], self.seen[i] = lo, hi, True
        if not self.seen[i]:
            return x
        lo, hi = self.lo[i].clamp(max=0.0), self.hi[i].clamp(min=0.0)  # the range always holds 0 exactly
        scale = ((hi - lo) / (ACT_QMAX - ACT_QMIN)).clamp_min(1e-8)
        zero = (ACT_QMIN - torch.round(lo / scale)).clamp(ACT_QMIN, ACT_QMAX).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, ACT_QMIN, ACT_QMAX)


def check_qat_method(method: Method) -> None:
    """ValueError unless `--qat` can train networks of `method` (rsnet, san, single)."""
    if method not in QAT_METHODS:
        raise ValueError(f"--qat: method {method.value!r} is not supported (supported: "
                         f"{', '.join(m.value for m in QAT_METHODS)}); its stage resizing has no int8 export yet")


def check_qat_model(model: MultiResolutionNet) -> None:
    """ValueError unless `--qat` can train this model (a supported method, no stage resizing)."""
    check_qat_method(model.config.method)
    if any(isinstance(m, (StageResize, ScaleAwareBatchNorm2d)) for m in model.modules()):
        raise ValueError("--qat: a model with stage resizing is not supported; its stage resizing has no int8 "
                         "export yet")


def _meta_learners(model: nn.Module) -> set[int]:
    """ids of the modules inside SAN meta-learners: their Linear layers generate kernels and are not quantized."""
    return {id(x) for m in model.modules() if isinstance(m, MetaConv2d) for x in m.meta.modules()}


def _quant_points(model: nn.Module) -> Iterator[nn.Module]:
    """The modules whose output the int8 backends quantize: conv-BN(-act) units, residual blocks, classifiers."""
    meta = _meta_learners(model)
    for m in model.modules():
        children = list(m.children())
        unit = isinstance(m, nn.Sequential) and len(children) >= 2 and \
            isinstance(children[0], (nn.Conv2d, MetaConv2d)) and isinstance(children[1], BN_TYPES)
        residual = getattr(m, "use_residual", False) or hasattr(m, "shortcut")  # MobileNetV2 / ResNet blocks
        if unit or residual or isinstance(m, nn.Linear) and id(m) not in meta:
            yield m


class QAT:
    """Quantization-aware training switched on for one model (`enable_qat`); `remove()` switches it off."""

    def __init__(self, model: MultiResolutionNet):
        check_qat_model(model)
        self.model = model
        meta = _meta_learners(model)
        self.swapped = []
        for m in model.modules():
            base = next((b for b, _ in _SWAPS if type(m) is b), None)
            if base is not None and id(m) not in meta:
                m.__class__ = dict(_SWAPS)[base]
                self.swapped.append((m, base))
        device = next(model.parameters()).device
        # Not submodules of the model, so its state dict (the checkpoint) stays an ordinary float one.
        self.ranges = nn.ModuleList()
        self.names: list[str] = []  # each range's point: INPUT_POINT, or the FQN of the module whose output it is
        names = {id(m): name for name, m in model.named_modules()}
        self.handles = [self._point(model, "input", INPUT_POINT)] + [
            self._point(m, "output", names[id(m)]) for m in list(_quant_points(model))]
        self.ranges.to(device)

    def _point(self, module: nn.Module, position: str, name: str):
        r = ActivationRange(self.model.config.resolutions)
        self.ranges.append(r)
        self.names.append(name)
        model = self.model
        if position == "input":
            return module.register_forward_pre_hook(
                lambda mod, args: (r(args[0], model.resolution, model.training), *args[1:]))
        return module.register_forward_hook(lambda mod, args, out: r(out, model.resolution, model.training))

    def range_table(self) -> dict:
        """The learned activation ranges as plain data for the checkpoint (`resflex.mobile.checkpoint.qat_ranges`
        reads them back): {"resolutions": [...], "points": {point: {"lo": [...], "hi": [...]}}}, one value per
        resolution, None where the resolution was never trained."""
        def values(r: ActivationRange, t: Tensor) -> list:
            return [float(v) if seen else None for v, seen in zip(t.tolist(), r.seen.tolist())]

        return {"resolutions": list(self.model.config.resolutions),
                "points": {name: {"lo": values(r, r.lo), "hi": values(r, r.hi)}
                           for name, r in zip(self.names, self.ranges)}}

    @torch.no_grad()
    def load_ranges(self, ranges: dict[int, dict[str, tuple[float, float]]]) -> None:
        """Continue from the ranges a checkpoint holds (`checkpoint.qat_ranges`), e.g. when a run resumes."""
        for name, r in zip(self.names, self.ranges):
            for i, resolution in enumerate(r.resolutions):
                if name in ranges.get(resolution, {}):
                    (r.lo[i], r.hi[i]), r.seen[i] = ranges[resolution][name], True

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        for m, base in self.swapped:
            m.__class__ = base
        self.handles, self.swapped = [], []


def enable_qat(model: MultiResolutionNet) -> QAT:
    """Make `model` train quantization-aware, in place (after it is on its device): weights fake-quantized in every
    forward, activation ranges per resolution, parameter names and state dict unchanged. Raises ValueError for
    models `--qat` cannot handle."""
    return QAT(model)
