"""ResNet-18 and ResNet-50 (He et al., 2016) with a width multiplier, built from resolution-aware layers."""

from __future__ import annotations

from torch import Tensor, nn

from .base import ModelConfig, MultiResolutionNet, Ops, init_weights


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, ops: Ops, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.body = self.make_body(ops, cin, planes, stride)
        self.shortcut = ops.conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    @staticmethod
    def make_body(ops: Ops, cin: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(ops.conv_bn(cin, planes, 3, stride), ops.conv_bn(planes, planes, 3, act=None))

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(BasicBlock):
    expansion = 4

    @staticmethod
    def make_body(ops: Ops, cin: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(ops.conv_bn(cin, planes, 1), ops.conv_bn(planes, planes, 3, stride),
                             ops.conv_bn(planes, planes * Bottleneck.expansion, 1, act=None))


class ResNet(MultiResolutionNet):
    def __init__(self, config: ModelConfig, block: type[BasicBlock], depths: tuple[int, ...]):
        super().__init__(config)
        ops = Ops(config)
        widths = [max(8, round(w * config.width)) for w in (64, 128, 256, 512)]
        self.stem = nn.Sequential(ops.conv_bn(3, widths[0], 7, config.stem_stride), nn.MaxPool2d(3, 2, 1))
        stages, cin, stride = [], widths[0], 2 * config.stem_stride
        for i, (planes, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                block_stride = 2 if i > 0 and j == 0 else 1
                stride *= block_stride
                if j == (1 if i > 0 else 0):  # A.1: resize at the first non-strided block of each stage
                    blocks += ops.stage_resize(stride)
                blocks.append(block(ops, cin, planes, block_stride))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, config.num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))
