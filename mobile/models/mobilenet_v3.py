"""MobileNetV3-Large and -Small (Howard et al., 2019): inverted residuals with squeeze-excite (hard-sigmoid gate),
hard-swish in the later layers, the efficient last stage (pool → 1×1 conv without BN → classifier), and a width
multiplier. State-dict keys and channel rounding are timm's `mobilenetv3_large_100` / `mobilenetv3_small_100`
(`_075`, `_050` at width 0.75 / 0.5)."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

from torch import nn

from .base import ModelConfig, Ops
from .mobilenet_v2 import make_divisible
from .timm_layout import TimmLayoutNet, act, build_stacks, conv_bn_act, depthwise_separable, inverted_residual

# One row per block: (kind, kernel, stride, expansion, output channels, SE, activation); one list per timm stack.
# The papers' Tables 1 and 2 ("exp size" = expansion × input channels, rounded to a multiple of 8).
LARGE = (
    (("ds", 3, 1, 1, 16, False, "relu"),),
    (("ir", 3, 2, 4, 24, False, "relu"), ("ir", 3, 1, 3, 24, False, "relu")),
    (("ir", 5, 2, 3, 40, True, "relu"),) + (("ir", 5, 1, 3, 40, True, "relu"),) * 2,
    (("ir", 3, 2, 6, 80, False, "hswish"), ("ir", 3, 1, 2.5, 80, False, "hswish"))
    + (("ir", 3, 1, 2.3, 80, False, "hswish"),) * 2,
    (("ir", 3, 1, 6, 112, True, "hswish"),) * 2,
    (("ir", 5, 2, 6, 160, True, "hswish"),) + (("ir", 5, 1, 6, 160, True, "hswish"),) * 2,
    (("cn", 1, 1, 1, 960, False, "hswish"),),
)
SMALL = (
    (("ds", 3, 2, 1, 16, True, "relu"),),
    (("ir", 3, 2, 4.5, 24, False, "relu"), ("ir", 3, 1, 3.67, 24, False, "relu")),
    (("ir", 5, 2, 4, 40, True, "hswish"),) + (("ir", 5, 1, 6, 40, True, "hswish"),) * 2,
    (("ir", 5, 1, 3, 48, True, "hswish"),) * 2,
    (("ir", 5, 2, 6, 96, True, "hswish"),) + (("ir", 5, 1, 6, 96, True, "hswish"),) * 2,
    (("cn", 1, 1, 1, 576, False, "hswish"),),
)


def _block(row: tuple, width: float, ops: Ops, cin: int):
    kind, k, stride, expansion, channels, se, activation = row
    cout = make_divisible(channels * width)
    if kind == "ds":
        block = depthwise_separable(ops, cin, cout, k, stride, activation, se)
    elif kind == "ir":
        block = inverted_residual(ops, cin, cout, k, stride, expansion, activation, se)
    else:
        block = conv_bn_act(ops, cin, cout, k, stride, activation)
    return block, cout, stride


def efficient_net_body(config: ModelConfig, rows, stem: int, activation: str) -> tuple[OrderedDict, Ops, int]:
    """`conv_stem`, `bn1`, its activation and `blocks` from per-stack rows (MobileNetV3, EfficientNet-Lite)."""
    ops = Ops(config)
    layers = OrderedDict(conv_stem=ops.conv(3, stem, 3, config.stem_stride), bn1=ops.bn(stem),
                         act1=act(activation))
    stacks, cout = build_stacks(ops, [[partial(_block, row, config.width) for row in stack] for stack in rows],
                                config.stem_stride, cin=stem)
    layers["blocks"] = nn.Sequential(*stacks)
    return layers, ops, cout


class MobileNetV3(TimmLayoutNet):
    def __init__(self, config: ModelConfig, rows=LARGE, head_channels: int = 1280, dropout: float = 0.2):
        # timm keeps the stem at 16 below width 0.75 and the head at 1280 (Large) / 1024 (Small) at every width.
        stem = 16 if config.width < 0.75 else make_divisible(16 * config.width)
        layers, _, cout = efficient_net_body(config, rows, stem, "hswish")
        layers.update(global_pool=nn.AdaptiveAvgPool2d(1), conv_head=nn.Conv2d(cout, head_channels, 1, bias=True),
                      act2=nn.Hardswish(inplace=True), flatten=nn.Flatten(1), dropout=nn.Dropout(dropout),
                      classifier=nn.Linear(head_channels, config.num_classes))
        super().__init__(config, layers)
