"""A three-layer CNN: the smallest registered model, for tests and quick end-to-end checks."""

from __future__ import annotations

from torch import Tensor, nn

from .base import ModelConfig, MultiResolutionNet, Ops, init_weights


class TinyCNN(MultiResolutionNet):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        ops = Ops(config)
        c = max(4, round(16 * config.width))
        # Resizable: two stages, resized before the 2nd and the 3rd conv (its first stage has no non-strided layer).
        first = ops.conv_bn(3, c, 3, config.stem_stride)
        resize1 = ops.stage_resize(config.stem_stride)
        second = ops.conv_bn(c, 2 * c, 3, 2)
        resize2 = ops.stage_resize(2 * config.stem_stride)
        self.features = nn.Sequential(first, *resize1, second, *resize2, ops.conv_bn(2 * c, 2 * c, 3, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * c, config.num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))
