"""Bake: a switchable model at one resolution → a plain eval-mode torch module with no resolution logic.

Every `SwitchableBatchNorm2d` becomes that resolution's BN (trained, nearest, interpolated or recalibrated,
as `bn_mode` says) and every SAN `MetaConv2d` becomes an `nn.Conv2d` whose kernel the meta-learner generated
once. How the BN is then expressed is the `bn` style — the choice that decides whether backends can share
conv weights across resolutions:

- `keep`:   `nn.BatchNorm2d` (eval), which converters usually fold into the conv;
- `fold`:   folded into the preceding conv now (conv weights then differ per resolution);
- `affine`: an explicit per-channel `x * scale + shift` after an untouched conv, so the conv weights stay
            byte-identical across resolutions and a backend can store them once.
"""

from __future__ import annotations

import copy
import enum

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from resflex.mobile.layers import BNMode, MetaConv2d, ScaleCode, SwitchableBatchNorm2d, parse_enum
from resflex.mobile.models import MultiResolutionNet


class BNStyle(str, enum.Enum):
    KEEP = "keep"
    FOLD = "fold"
    AFFINE = "affine"


class ChannelAffine(nn.Module):
    """Eval-mode BatchNorm as y = x · scale + shift per channel (scale = γ/√(σ²+ε), shift = β − μ·scale)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("shift", (bn.bias - bn.running_mean * scale).detach().view(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def _plain_bn(layer: SwitchableBatchNorm2d, resolution: int, mode: BNMode) -> nn.BatchNorm2d:
    weight, bias, mean, var = layer.parameters_at(resolution, mode)
    bn = nn.BatchNorm2d(layer.num_features, eps=layer.eps)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return bn.eval()


def _plain_conv(layer: MetaConv2d, resolution: int, code: ScaleCode) -> nn.Conv2d:
    layer.switch(resolution, layer.bn_mode, code)
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     groups=layer.groups, bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(layer.weight_at(layer.code_resolution()))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def _replace(module: nn.Module, convert) -> None:
    """Replace children in place by `convert(child)` (None keeps the child and recurses into it)."""
    for name, child in module.named_children():
        new = convert(child)
        if new is None:
            _replace(child, convert)
        else:
            setattr(module, name, new)


def _fold_pairs(module: nn.Module, style: BNStyle) -> None:
    """Inside every Sequential, turn (Conv2d, BatchNorm2d) pairs into the requested style."""
    for child in module.children():
        _fold_pairs(child, style)
    if not isinstance(module, nn.Sequential):
        return
    items = list(module._modules.items())
    for (_, a), (bn_name, b) in zip(items, items[1:]):
        if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
            if style is BNStyle.FOLD:
                conv_name = next(n for n, m in items if m is a)
                module._modules[conv_name] = fuse_conv_bn_eval(a, b)
                module._modules[bn_name] = nn.Identity()
            else:
                module._modules[bn_name] = ChannelAffine(b)


@torch.no_grad()
def bake(
    model: MultiResolutionNet,
    resolution: int,
    bn_mode: BNMode | str = BNMode.INTERPOLATE,
    scale_code: ScaleCode | str = ScaleCode.IDEAL,
    bn: BNStyle | str = BNStyle.KEEP,
) -> nn.Module:
    """A plain eval-mode copy of `model` that computes exactly what `model` computes at `resolution`."""
    bn_mode = parse_enum(BNMode, bn_mode, "BN mode")
    scale_code = parse_enum(ScaleCode, scale_code, "scale code")
    bn = parse_enum(BNStyle, bn, "BN style")
    if getattr(model, "num_stages", 0):
        raise ValueError(f"converting a {model.config.method.value} checkpoint (stage scales) is not supported yet: "
                         "it can be trained and evaluated (`resflex eval --stage-scales`)")
    if resolution not in model.config.resolutions and bn_mode is BNMode.RECALIBRATE:
        if not any(resolution in m.calibrated for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)):
            raise ValueError(f"bake at {resolution}: BN mode 'recalibrate' needs recalibrate_bn(model, ..., "
                             f"{resolution}) first")
    baked = copy.deepcopy(model).eval()

    def convert(child: nn.Module):
        if isinstance(child, SwitchableBatchNorm2d):
            return _plain_bn(child, resolution, bn_mode)
        if isinstance(child, MetaConv2d):
            return _plain_conv(child, resolution, scale_code)
        return None

    _replace(baked, convert)
    baked.eval()
    if bn is not BNStyle.KEEP:
        _fold_pairs(baked, bn)
    baked._state = (resolution, bn_mode, scale_code)
    return baked.requires_grad_(False)
