"""Reference models written for the tests from the published semantics (nothing copied from the official repositories
or from torchvision):

* `official_state_dict` builds a state dict in the key layout of the official RS-Nets (yikaiw/RS-Nets,
  non-quantization/) and SAN (d-li14/SAN) checkpoints, with random weights and random per-copy BN statistics, and
  `official_forward` computes their forward for BN copy i with torch.nn.functional only, reading that state dict:
  - both: DataParallel's `module.` prefix; shared layers `X.module.weight`; private BNs `X.bn_{i}.*`.
  - RS-Nets: ResNet `conv1/bn1`, `layer{s}.{j}.conv{k}/bn{k}`, projection `downsample.0/1`, head `fc.module`;
    MobileNetV2 `features.0.{0,1}`, blocks `features.{b}.conv.{0,1,3,4,6,7}`, last `conv.{0,1}`, head
    `classifier.module`; `alpha` (ensemble logits weights) in the state dict.
  - SAN: convs generated as `Linear(1, n)(c_i)` reshaped row-major to the kernel, c_i = 0.7 − 0.1·i; ResNet
    `layer{s}.{j}.fc{k}/bn{k}` with the projection in `fc{last+1}/bn{last+1}` and unused `downsample.*` keys,
    plain stem `conv1.module.weight`; MobileNetV2 `features.0.{fc,bn}`, `features.{b}.fc{k}/bn{k}`, `conv.{fc,bn}`.
* `TorchvisionResNet` / `TorchvisionMobileNetV2`: minimal modules whose `state_dict()` has torchvision's key layout
  (single-resolution, the usual ImageNet-pretrained weights), with their own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CALIBRATION_SIZE = 40
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1))  # (expansion, channels, repeats, first stride): the paper's Table 2
RESNET = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
          "resnet50": ("bottleneck", (3, 4, 6, 3))}


def divisible8(v: float) -> int:
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def mobilenet_blocks(width: float) -> tuple[int, list[tuple[int, int, int, int]], int]:
    """(stem channels, [(in, out, stride, expansion)] per inverted residual, last conv channels)."""
    cin = divisible8(32 * width)
    blocks = []
    for t, c, n, s in MOBILENET_V2_SETTING:
        cout = divisible8(c * width)
        for r in range(n):
            blocks.append((cin, cout, s if r == 0 else 1, t))
            cin = cout
    return divisible8(32 * width), blocks, (divisible8(1280 * width) if width > 1.0 else 1280)


def resnet_blocks(arch: str, base: int) -> list[tuple[int, int, int, int, int, bool]]:
    """[(stage, index, in, planes, stride, has projection)] for a ResNet whose stem has `base` channels."""
    kind, depths = RESNET[arch]
    expansion = 4 if kind == "bottleneck" else 1
    cin, out = base, []
    for s, depth in enumerate(depths):
        planes = base * 2**s
        for j in range(depth):
            stride = 2 if s > 0 and j == 0 else 1
            out.append((s + 1, j, cin, planes, stride, stride != 1 or cin != planes * expansion))
            cin = planes * expansion
    return out


# --------------------------------------------------------------------------- official state dicts


class _Builder:
    def __init__(self, repo: str, copies: int, seed: int):
        self.repo, self.copies = repo, copies
        self.g = torch.Generator().manual_seed(seed)
        self.sd: dict[str, Tensor] = {}

    def randn(self, *shape, std=1.0):
        return torch.randn(*shape, generator=self.g) * std

    def shared_conv(self, name, cout, cin, k):
        self.sd[f"{name}.module.weight"] = self.randn(cout, cin, k, k, std=(2.0 / (cin * k * k)) ** 0.5)

    def meta_conv(self, name, cout, cin, k):
        n, std = cout * cin * k * k, (2.0 / (cin * k * k)) ** 0.5
        # W(c) = slope·c + intercept: the kernels at c = 0.7 … 0.3 differ clearly
        self.sd[f"{name}.weight"] = self.randn(n, 1, std=2 * std)
        self.sd[f"{name}.bias"] = self.randn(n, std=std)

    def conv(self, shared_name, meta_name, cout, cin, k):
        if self.repo == "san":
            self.meta_conv(meta_name, cout, cin, k)
        else:
            self.shared_conv(shared_name, cout, cin, k)

    def bn(self, name, c):
        for i in range(self.copies):
            self.sd[f"{name}.bn_{i}.weight"] = 1 + 0.3 * self.randn(c)
            self.sd[f"{name}.bn_{i}.bias"] = 0.1 * self.randn(c)
            self.sd[f"{name}.bn_{i}.running_mean"] = 0.2 * self.randn(c)
            self.sd[f"{name}.bn_{i}.running_var"] = 0.5 + torch.rand(c, generator=self.g)
            self.sd[f"{name}.bn_{i}.num_batches_tracked"] = torch.tensor(1000 + i)

    def linear(self, name, cout, cin):
        self.sd[f"{name}.module.weight"] = self.randn(cout, cin, std=cin ** -0.5)
        self.sd[f"{name}.module.bias"] = 0.1 * self.randn(cout)


def official_state_dict(repo: str, arch: str, copies: int = 5, width: float = 1.0, num_classes: int = 10,
                        seed: int = 0) -> dict[str, Tensor]:
    """An official checkpoint's `state_dict` (with the `module.` prefix) for repo 'rsnets' | 'san' and arch
    'resnet18' | 'resnet34' | 'resnet50' | 'mobilenet_v2'; `width` scales the channels (the official ResNets have
    width 1 only; narrower ones keep the tests fast)."""
    b = _Builder(repo, copies, seed)
    if arch == "mobilenet_v2":
        stem, blocks, last = mobilenet_blocks(width)
        b.conv("features.0.0", "features.0.fc", stem, 3, 3)
        b.bn("features.0.1" if repo == "rsnets" else "features.0.bn", stem)
        for idx, (cin, cout, _, t) in enumerate(blocks, start=1):
            hidden = cin * t
            units = ([] if t == 1 else [(hidden, cin, 1)]) + [(hidden, 1, 3), (cout, hidden, 1)]
            for k, (co, ci, ks) in enumerate(units):
                b.conv(f"features.{idx}.conv.{3 * k}", f"features.{idx}.fc{k + 1}", co, ci, ks)
                b.bn(f"features.{idx}.conv.{3 * k + 1}" if repo == "rsnets" else f"features.{idx}.bn{k + 1}", co)
        b.conv("conv.0", "conv.fc", last, blocks[-1][1], 1)
        b.bn("conv.1" if repo == "rsnets" else "conv.bn", last)
        b.linear("classifier", num_classes, last)
    else:
        base = round(64 * width)
        bottleneck = RESNET[arch][0] == "bottleneck"
        b.shared_conv("conv1", base, 3, 7)  # SAN's stem is a shared conv as well
        b.bn("bn1", base)
        for s, j, cin, planes, _, proj in resnet_blocks(arch, base):
            p = f"layer{s}.{j}"
            units = ([(planes, cin, 1), (planes, planes, 3), (planes * 4, planes, 1)] if bottleneck
                     else [(planes, cin, 3), (planes, planes, 3)])
            for k, (co, ci, ks) in enumerate(units, start=1):
                b.conv(f"{p}.conv{k}", f"{p}.fc{k}", co, ci, ks)
                b.bn(f"{p}.bn{k}", co)
            if proj:
                cout, n = units[-1][0], len(units)
                if repo == "san":
                    b.meta_conv(f"{p}.fc{n + 1}", cout, cin, 1)
                    b.bn(f"{p}.bn{n + 1}", cout)
                b.shared_conv(f"{p}.downsample.0", cout, cin, 1)  # SAN: defined, never used by its forward
                b.bn(f"{p}.downsample.1", cout)
        b.linear("fc", num_classes, base * 8 * (4 if bottleneck else 1))
    if repo == "rsnets":
        b.sd["alpha"] = b.randn(copies)
    sd = {f"module.{k}": v for k, v in b.sd.items()}
    # As in a trained network, each BN's running statistics are those of its input (per copy): random statistics
    # would make the network chaotic, amplifying float32 rounding by orders of magnitude.
    x = torch.rand(8, 3, CALIBRATION_SIZE, CALIBRATION_SIZE, generator=b.g)
    for i in range(copies):
        official_forward(sd, repo, arch, x, i, calibrate=True)
    return sd


def official_checkpoint(repo: str, arch: str, sd: dict[str, Tensor]) -> dict:
    """The dict the official training scripts save (optimizer state reduced to its shape)."""
    name = {"rsnets": "parallel_", "san": "meta_"}[repo] + arch.replace("mobilenet_v2", "mobilenetv2")
    extra = {"best_acc0": 71.2, "best_acc": 80.5} if repo == "rsnets" else {"best_prec1": 70.1}
    return {"epoch": 120, "arch": name, "state_dict": sd, **extra,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0, 1]}]}}


# --------------------------------------------------------------------------- official forward


class _Params:
    """Reads one BN copy's view of an official state dict."""

    def __init__(self, sd: dict[str, Tensor], repo: str, copy: int, calibrate: bool = False,
                 kernels: list | None = None):
        self.sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}  # same tensors
        self.repo, self.copy, self.calibrate, self.kernels = repo, copy, calibrate, kernels
        dtype = next(v.dtype for v in sd.values() if v.is_floating_point())
        self.code = torch.tensor([0.7 - 0.1 * copy], dtype=dtype)  # SAN: by BN index; float32 like the official code

    def kernel(self, shared_name: str, meta_name: str, shape: tuple[int, ...], meta: bool | None = None) -> Tensor:
        if meta if meta is not None else self.repo == "san":
            kernel = F.linear(self.code, self.sd[f"{meta_name}.weight"], self.sd[f"{meta_name}.bias"]).reshape(shape)
        else:
            kernel = self.sd[f"{shared_name}.module.weight"]
        if self.kernels is not None:
            self.kernels.append(kernel)
        return kernel

    def bn(self, name: str, x: Tensor) -> Tensor:
        p = f"{name}.bn_{self.copy}"
        if self.calibrate:  # in place, so the caller's state dict holds the statistics
            self.sd[f"{p}.running_mean"].copy_(x.mean((0, 2, 3)))
            self.sd[f"{p}.running_var"].copy_(x.var((0, 2, 3)))
        return F.batch_norm(x, self.sd[f"{p}.running_mean"], self.sd[f"{p}.running_var"], self.sd[f"{p}.weight"],
                            self.sd[f"{p}.bias"], training=False, eps=1e-5)

    def linear(self, name: str, x: Tensor) -> Tensor:
        return F.linear(x, self.sd[f"{name}.module.weight"], self.sd[f"{name}.module.bias"])


def _channels(p: _Params, bn_name: str) -> int:
    return p.sd[f"{bn_name}.bn_0.running_mean"].numel()


def official_forward(sd: dict[str, Tensor], repo: str, arch: str, x: Tensor, copy: int,
                     calibrate: bool = False, kernels: list | None = None) -> Tensor:
    """Logits of BN copy `copy` (the i-th training size) of an official RS-Nets / SAN model on input `x`
    (`calibrate`: first set each BN's running statistics of that copy to its input's; `kernels`: append every
    conv kernel used, in forward order)."""
    p = _Params(sd, repo, copy, calibrate, kernels)
    san = repo == "san"
    if arch == "mobilenet_v2":
        stem = _channels(p, "features.0.bn" if san else "features.0.1")
        w = p.kernel("features.0.0", "features.0.fc", (stem, 3, 3, 3))
        h = F.relu6(p.bn("features.0.bn" if san else "features.0.1", F.conv2d(x, w, stride=2, padding=1)))
        width = _mobilenet_width(p, san)
        _, blocks, _ = mobilenet_blocks(width)
        for idx, (cin, cout, stride, t) in enumerate(blocks, start=1):
            hidden = cin * t
            units = ([] if t == 1 else [(hidden, cin, 1, 1, 1)]) + [(hidden, 1, 3, stride, hidden),
                                                                     (cout, hidden, 1, 1, 1)]
            out = h
            for k, (co, ci, ks, st, groups) in enumerate(units):
                wk = p.kernel(f"features.{idx}.conv.{3 * k}", f"features.{idx}.fc{k + 1}", (co, ci, ks, ks))
                out = F.conv2d(out, wk, stride=st, padding=ks // 2, groups=groups)
                out = p.bn(f"features.{idx}.bn{k + 1}" if san else f"features.{idx}.conv.{3 * k + 1}", out)
                if k < len(units) - 1:
                    out = F.relu6(out)
            h = h + out if stride == 1 and cin == cout else out
        last = _channels(p, "conv.bn" if san else "conv.1")
        w = p.kernel("conv.0", "conv.fc", (last, blocks[-1][1], 1, 1))
        h = F.relu6(p.bn("conv.bn" if san else "conv.1", F.conv2d(h, w)))
        return p.linear("classifier", F.adaptive_avg_pool2d(h, 1).flatten(1))

    base = _channels(p, "bn1")
    bottleneck = RESNET[arch][0] == "bottleneck"
    h = F.relu(p.bn("bn1", F.conv2d(x, p.kernel("conv1", "", (base, 3, 7, 7), meta=False), stride=2, padding=3)))
    h = F.max_pool2d(h, 3, 2, 1)
    for s, j, cin, planes, stride, proj in resnet_blocks(arch, base):
        q = f"layer{s}.{j}"
        units = ([(planes, cin, 1, 1), (planes, planes, 3, stride), (planes * 4, planes, 1, 1)] if bottleneck
                 else [(planes, cin, 3, stride), (planes, planes, 3, 1)])
        out = h
        for k, (co, ci, ks, st) in enumerate(units, start=1):
            out = F.conv2d(out, p.kernel(f"{q}.conv{k}", f"{q}.fc{k}", (co, ci, ks, ks)), stride=st, padding=ks // 2)
            out = p.bn(f"{q}.bn{k}", out)
            if k < len(units):
                out = F.relu(out)
        identity = h
        if proj:
            cout, n = units[-1][0], len(units)
            if san:  # the forward's projection: fc{n+1} / bn{n+1}; downsample.* is ignored
                identity = p.bn(f"{q}.bn{n + 1}", F.conv2d(h, p.kernel("", f"{q}.fc{n + 1}", (cout, cin, 1, 1)),
                                                          stride=stride))
            else:
                identity = p.bn(f"{q}.downsample.1", F.conv2d(h, p.kernel(f"{q}.downsample.0", "", ()), stride=stride))
        h = F.relu(out + identity)
    return p.linear("fc", F.adaptive_avg_pool2d(h, 1).flatten(1))


def _mobilenet_width(p: _Params, san: bool) -> float:
    """The width whose channel plan matches the state dict (the last inverted residual has divisible8(320·w))."""
    c320 = _channels(p, "features.17.bn3" if san else "features.17.conv.7")
    return c320 / 320


# --------------------------------------------------------------------------- torchvision's key layout


class _ConvBN(nn.Sequential):
    """conv, BN[, activation] as one Sequential: keys `.0.weight`, `.1.*`."""

    def __init__(self, cin, cout, k, stride=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU6()] if act else []))


class _TVInvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else [_ConvBN(cin, hidden, 1)]
        layers += [_ConvBN(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)  # keys conv.{k}.{0,1} then conv.{n-1}.weight, conv.{n}.*
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class TorchvisionMobileNetV2(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = 1000):
        super().__init__()
        stem, blocks, last = mobilenet_blocks(width)
        self.features = nn.Sequential(_ConvBN(3, stem, 3, 2), *(_TVInvertedResidual(*b) for b in blocks),
                                      _ConvBN(blocks[-1][1], last, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class _TVBlock(nn.Module):
    def __init__(self, cin, planes, stride, proj, bottleneck):
        super().__init__()
        units = ([(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, planes * 4, 1, 1)] if bottleneck
                 else [(cin, planes, 3, stride), (planes, planes, 3, 1)])
        for k, (ci, co, ks, st) in enumerate(units, start=1):
            setattr(self, f"conv{k}", nn.Conv2d(ci, co, ks, st, ks // 2, bias=False))
            setattr(self, f"bn{k}", nn.BatchNorm2d(co))
        self.n = len(units)
        cout = units[-1][1]
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if proj else None)

    def forward(self, x):
        out = x
        for k in range(1, self.n + 1):
            out = getattr(self, f"bn{k}")(getattr(self, f"conv{k}")(out))
            if k < self.n:
                out = F.relu(out)
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class TorchvisionResNet(nn.Module):
    def __init__(self, arch: str = "resnet18", width: float = 1.0, num_classes: int = 1000):
        super().__init__()
        base = round(64 * width)
        bottleneck = RESNET[arch][0] == "bottleneck"
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        stages: dict[int, list] = {}
        for s, j, cin, planes, stride, proj in resnet_blocks(arch, base):
            stages.setdefault(s, []).append(_TVBlock(cin, planes, stride, proj, bottleneck))
        for s, blocks in stages.items():
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.fc = nn.Linear(base * 8 * (4 if bottleneck else 1), num_classes)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (as trained weights would have), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * m.in_features ** -0.5)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    module.train()  # BN statistics of the module's own activations (momentum 1: one batch), as a trained net has
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        module(torch.rand(8, 3, 40, 40, generator=g))
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return module.eval()
