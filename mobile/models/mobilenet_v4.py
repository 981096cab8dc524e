"""MobileNetV4-Conv-Small (Qin et al., 2024): plain conv stages, then universal inverted bottlenecks (UIB) — an
optional depthwise conv before the expansion ("start"), the 1×1 expansion, an optional depthwise conv after it
("middle") and the 1×1 projection, which covers ExtraDW (both), IR (middle only) and ConvNeXt-like (start only)
blocks — and a head whose 1×1 conv after pooling has a BN. ReLU throughout. State-dict keys and channel rounding are
timm's `mobilenetv4_conv_small` (`_050` at width 0.5)."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

from torch import nn

from .base import ModelConfig, Ops
from .mobilenet_v2 import make_divisible
from .timm_layout import Block, TimmLayoutNet, build_stacks, conv_bn_act, named

# ("cn", kernel, stride, channels) or ("uib", start kernel, middle kernel, stride, expansion, channels); the paper's
# Table 11, grouped in timm's stacks.
CONV_SMALL = (
    (("cn", 3, 2, 32), ("cn", 1, 1, 32)),
    (("cn", 3, 2, 96), ("cn", 1, 1, 64)),
    (("uib", 5, 5, 2, 3, 96),) + (("uib", 0, 3, 1, 2, 96),) * 4 + (("uib", 3, 0, 1, 4, 96),),
    (("uib", 3, 3, 2, 6, 128), ("uib", 5, 5, 1, 4, 128), ("uib", 0, 5, 1, 4, 128), ("uib", 0, 5, 1, 3, 128))
    + (("uib", 0, 3, 1, 4, 128),) * 2,
    (("cn", 1, 1, 960),),
)


def universal_inverted_bottleneck(ops: Ops, cin: int, cout: int, start: int, middle: int, stride: int,
                                  expansion: float) -> Block:
    """UIB (MobileNetV4 §3.2): timm keys `dw_start`, `pw_exp`, `dw_mid`, `pw_proj` (each `.conv` + `.bn`)."""
    mid = make_divisible(cin * expansion)
    return Block(OrderedDict(
        dw_start=named(conv=ops.conv(cin, cin, start, 1 if middle else stride, groups=cin), bn=ops.bn(cin))
        if start else None,
        pw_exp=named(conv=ops.conv(cin, mid, 1), bn=ops.bn(mid), act=nn.ReLU(inplace=True)),
        dw_mid=named(conv=ops.conv(mid, mid, middle, stride, groups=mid), bn=ops.bn(mid), act=nn.ReLU(inplace=True))
        if middle else None,
        pw_proj=named(conv=ops.conv(mid, cout, 1), bn=ops.bn(cout))), use_residual=stride == 1 and cin == cout)


def _block(row: tuple, width: float, ops: Ops, cin: int):
    cout = make_divisible(row[-1] * width)
    if row[0] == "cn":
        return conv_bn_act(ops, cin, cout, row[1], row[2]), cout, row[2]
    _, start, middle, stride, expansion, _ = row
    return universal_inverted_bottleneck(ops, cin, cout, start, middle, stride, expansion), cout, stride


class MobileNetV4(TimmLayoutNet):
    def __init__(self, config: ModelConfig, rows=CONV_SMALL, head_channels: int = 1280, dropout: float = 0.2):
        ops = Ops(config)
        stem = 32 if config.width < 1.0 else make_divisible(32 * config.width)  # timm fixes the stem below 1.0
        layers = OrderedDict(conv_stem=ops.conv(3, stem, 3, config.stem_stride), bn1=ops.bn(stem),
                             act1=nn.ReLU(inplace=True))
        stacks, cout = build_stacks(ops, [[partial(_block, row, config.width) for row in stack] for stack in rows],
                                    config.stem_stride, cin=stem)
        super().__init__(config, OrderedDict(
            **layers, blocks=nn.Sequential(*stacks), global_pool=nn.AdaptiveAvgPool2d(1),
            conv_head=ops.conv(cout, head_channels, 1), norm_head=ops.bn(head_channels), act2=nn.ReLU(inplace=True),
            flatten=nn.Flatten(1), dropout=nn.Dropout(dropout), classifier=nn.Linear(head_channels, config.num_classes)))
