"""RegNetX-200MF (Radosavovic et al., 2020): a ResNeXt-style network whose per-block widths follow the quantized
linear rule u_j = w0 + wa·j, w_j = w0·wm^round(log(u_j / w0) / log(wm)) (multiples of 8), grouped 3×3 convs of
group width 8, bottleneck ratio 1, and a 1×1 projection shortcut where the shape changes. State-dict keys are timm's
`regnetx_002`. The paper has no width multiplier; here `width` scales every stage's width, which is then rounded to
a multiple of its group width as the paper's compatibility rule does (width 1.0 is RegNetX-200MF exactly)."""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

from torch import Tensor, nn

from .base import ModelConfig, Ops
from .mobilenet_v2 import make_divisible
from .timm_layout import TimmLayoutNet, build_stacks, named

X_200MF = dict(w0=24, wa=36.44, wm=2.49, depth=13, group_width=8)


def stage_widths(w0: int, wa: float, wm: float, depth: int, group_width: int, width: float = 1.0,
                 quantum: int = 8) -> list[tuple[int, int, int]]:
    """(width, depth, group width) per stage: the paper's §3.3 rule, then widths made divisible by their groups."""
    per_block = [round(w0 * wm ** round(math.log((w0 + wa * j) / w0) / math.log(wm)) / quantum) * quantum
                 for j in range(depth)]
    stages = []
    for w in sorted(set(per_block)):
        scaled = int(w * width)
        g = min(group_width, scaled)
        stages.append((int(round(scaled / g) * g), per_block.count(w), g))
    return stages


def _unit(ops: Ops, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """timm's `ConvNormAct`: keys `conv`, `bn`."""
    return named(conv=ops.conv(cin, cout, k, stride, groups), bn=ops.bn(cout), act=nn.ReLU(inplace=True) if relu else None)


class Bottleneck(nn.Module):
    """1×1 → grouped 3×3 (stride) → 1×1, plus the shortcut (a 1×1 conv + BN where the shape changes), then ReLU."""

    def __init__(self, ops: Ops, cin: int, cout: int, stride: int, group_width: int):
        super().__init__()
        self.conv1 = _unit(ops, cin, cout, 1)
        self.conv2 = _unit(ops, cout, cout, 3, stride, cout // group_width)
        self.conv3 = _unit(ops, cout, cout, 1, relu=False)
        self.downsample = _unit(ops, cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()
        self.act3 = nn.ReLU(inplace=True)
        self.use_residual = True  # the name QAT looks for (resflex.mobile.qat)

    def forward(self, x: Tensor) -> Tensor:
        return self.act3(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


def _block(cout: int, stride: int, group_width: int, ops: Ops, cin: int):
    return Bottleneck(ops, cin, cout, stride, group_width), cout, stride


class RegNet(TimmLayoutNet):
    classifier_path = "head.fc"

    def __init__(self, config: ModelConfig, spec: dict = X_200MF):
        ops = Ops(config)
        stem = make_divisible(32 * config.width)
        layers = OrderedDict(stem=_unit(ops, 3, stem, 3, config.stem_stride))
        rows = [[partial(_block, w, 2 if j == 0 else 1, g) for j in range(d)]
                for w, d, g in stage_widths(**spec, width=config.width)]
        stacks, cout = build_stacks(ops, rows, config.stem_stride, names=lambda i, j: f"b{j + 1}", cin=stem)
        layers.update((f"s{i + 1}", stack) for i, stack in enumerate(stacks))
        layers["head"] = named(global_pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1),
                               fc=nn.Linear(cout, config.num_classes))
        super().__init__(config, layers)
