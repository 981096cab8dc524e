"""Building blocks whose state-dict keys are timm's, so a timm checkpoint of the same network starts training
(`resflex train --init`) — MobileNetV3, EfficientNet-Lite, MobileNetV4 and RegNet are built from them.

Every conv is directly followed by its BN inside an `nn.Sequential` (named as timm names them), so `bake` folds or
rewrites each pair the way it does for every other registered model; activations are separate, weightless
modules (timm puts them inside its BN). Written from the papers; timm (`huggingface/pytorch-image-models`) was read
only for its key names and rounding rules."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import Tensor, nn

from .base import ModelConfig, MultiResolutionNet, Ops, init_weights
from .mobilenet_v2 import make_divisible

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}


def named(**layers: nn.Module | None) -> nn.Sequential:
    """An `nn.Sequential` whose children carry the given names (None entries left out)."""
    return nn.Sequential(OrderedDict((k, v) for k, v in layers.items() if v is not None))


def act(name: str | None) -> nn.Module | None:
    return None if name is None else ACTIVATIONS[name](inplace=True)


class Block(nn.Sequential):
    """A chain of named layers with an optional identity residual around the whole chain."""

    def __init__(self, layers: OrderedDict, use_residual: bool = False):
        super().__init__(OrderedDict((k, v) for k, v in layers.items() if v is not None))
        self.use_residual = use_residual  # the name QAT looks for (resflex.mobile.qat)

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        return x + y if self.use_residual else y


class SqueezeExcite(nn.Module):
    """x · hard-sigmoid(W₂ ReLU(W₁ mean(x))) (MobileNetV3 §5.3); timm keys `conv_reduce`, `conv_expand` (with bias).
    Plain shared convs in every method: they act on a pooled 1×1 map, like a classifier."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True)))))


def conv_bn_act(ops: Ops, cin: int, cout: int, k: int, stride: int = 1, activation: str | None = "relu") -> Block:
    """timm's `ConvBnAct` block: keys `conv`, `bn1`."""
    return Block(OrderedDict(conv=ops.conv(cin, cout, k, stride), bn1=ops.bn(cout), act1=act(activation)))


def depthwise_separable(ops: Ops, cin: int, cout: int, k: int, stride: int, activation: str,
                        se: bool = False) -> Block:
    """Depthwise k×k → (SE) → linear 1×1 projection; timm's `DepthwiseSeparableConv` keys."""
    return Block(OrderedDict(
        conv_dw=ops.conv(cin, cin, k, stride, groups=cin), bn1=ops.bn(cin), act1=act(activation),
        se=SqueezeExcite(cin, make_divisible(cin / 4)) if se else None,
        conv_pw=ops.conv(cin, cout, 1), bn2=ops.bn(cout)), use_residual=stride == 1 and cin == cout)


def inverted_residual(ops: Ops, cin: int, cout: int, k: int, stride: int, expansion: float, activation: str,
                      se: bool = False) -> Block:
    """MobileNetV2's inverted residual (MBConv) with optional SE on the expanded channels; timm's keys."""
    mid = make_divisible(cin * expansion)
    return Block(OrderedDict(
        conv_pw=ops.conv(cin, mid, 1), bn1=ops.bn(mid), act1=act(activation),
        conv_dw=ops.conv(mid, mid, k, stride, groups=mid), bn2=ops.bn(mid), act2=act(activation),
        se=SqueezeExcite(mid, make_divisible(mid / 4)) if se else None,
        conv_pwl=ops.conv(mid, cout, 1), bn3=ops.bn(cout)), use_residual=stride == 1 and cin == cout)


BlockFactory = Callable[[Ops, int], tuple[nn.Module, int, int]]  # (ops, cin) → (block, cout, stride)


def build_stacks(ops: Ops, stacks: Sequence[Sequence[BlockFactory]], stride: int,
                 names: Callable[[int, int], str] = lambda i, j: str(j), cin: int = 0) -> tuple[list[nn.Sequential], int]:
    """The blocks, one `nn.Sequential` per stack (timm's `blocks.i` / RegNet's `s{i+1}`), with block `j` of stack
    `i` named `names(i, j)`. `stride` is the stem's; `cin` its channels. For Resizable Networks each stage (the
    blocks at one feature-map size) gets its resize before its first non-strided block (Appendix A.1), named
    `resize` inside that stack (it holds no weights, so the keys stay timm's). Returns (stacks, channels out)."""
    out, new_stage = [], True
    for i, stack in enumerate(stacks):
        layers = OrderedDict()
        for j, make in enumerate(stack):
            block, cout, block_stride = make(ops, cin)
            stride *= block_stride
            new_stage = new_stage or block_stride > 1
            if new_stage and block_stride == 1:
                resize = ops.stage_resize(stride)
                if resize:
                    layers["resize"] = resize[0]
                new_stage = False
            layers[names(i, j)] = block
            cin = cout
        out.append(nn.Sequential(layers))
    return out, cin


class TimmLayoutNet(MultiResolutionNet, nn.Sequential):
    """A registered model that is also an `nn.Sequential` of its top-level layers in forward order (timm's names:
    `conv_stem`, `bn1`, `blocks`, …), so its forward is that chain and `bake` sees the stem's conv → BN pair."""

    weights_layout = "timm"  # `train --init` reads a timm state dict of this network (resflex.mobile.importer)
    classifier_path = "classifier"  # the classifier's module path

    def __init__(self, config: ModelConfig, layers: OrderedDict):
        super().__init__(config)
        for name, layer in layers.items():
            if layer is not None:
                self.add_module(name, layer)
        init_weights(self)
