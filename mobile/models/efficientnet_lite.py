"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" mobile variant of the TensorFlow TPU repository): EfficientNet-B0's
MBConv stages with ReLU6 instead of swish, no squeeze-excite, 3×3 and 5×5 depthwise kernels, and the stem and head
kept at 32 / 1280 channels at every width. State-dict keys and channel rounding are timm's `efficientnet_lite0`."""

from __future__ import annotations

from torch import nn

from .base import ModelConfig
from .mobilenet_v3 import efficient_net_body
from .timm_layout import TimmLayoutNet

# (kind, kernel, stride, expansion, output channels, SE, activation) per block, one tuple per stage (B0's Table 1).
LITE0 = tuple(
    tuple((kind, k, s if i == 0 else 1, e, c, False, "relu6") for i in range(n))
    for kind, n, k, s, e, c in (("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40),
                                ("ir", 3, 3, 2, 6, 80), ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192),
                                ("ir", 1, 3, 1, 6, 320))
)


class EfficientNetLite(TimmLayoutNet):
    def __init__(self, config: ModelConfig, rows=LITE0, dropout: float = 0.2):
        layers, ops, cout = efficient_net_body(config, rows, 32, "relu6")
        layers.update(conv_head=ops.conv(cout, 1280, 1), bn2=ops.bn(1280), act2=nn.ReLU6(inplace=True),
                      global_pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), dropout=nn.Dropout(dropout),
                      classifier=nn.Linear(1280, config.num_classes))
        super().__init__(config, layers)
