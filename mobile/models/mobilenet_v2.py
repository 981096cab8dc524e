"""MobileNetV2 (Sandler et al., 2018) with a width multiplier, built from resolution-aware layers."""

from __future__ import annotations

from torch import Tensor, nn

from .base import ModelConfig, MultiResolutionNet, Ops, init_weights

# (expansion t, output channels c, repeats n, first stride s) — the paper's Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10% (as torchvision)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class InvertedResidual(nn.Module):
    def __init__(self, ops: Ops, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [ops.conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [ops.conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), ops.conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV2(MultiResolutionNet):
    def __init__(self, config: ModelConfig, dropout: float = 0.2):
        super().__init__(config)
        ops = Ops(config)
        cin = make_divisible(32 * config.width)
        last = make_divisible(1280 * max(1.0, config.width))
        layers = [ops.conv_bn(3, cin, 3, config.stem_stride, act=nn.ReLU6)]
        stride, new_stage = config.stem_stride, True  # a stage = the blocks at one feature-map size (5 stages)
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            cout = make_divisible(c * config.width)
            for i in range(n):
                block_stride = s if i == 0 else 1
                stride *= block_stride
                new_stage = new_stage or block_stride > 1
                if new_stage and block_stride == 1:  # A.1: resize at the first non-strided block of each stage
                    layers += ops.stage_resize(stride)
                    new_stage = False
                layers.append(InvertedResidual(ops, cin, cout, block_stride, t))
                cin = cout
        layers.append(ops.conv_bn(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, config.num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
