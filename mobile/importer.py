"""Weights trained elsewhere, brought into resflex.

* `import_checkpoint(ImportConfig(...))`: an official RS-Nets (github.com/yikaiw/RS-Nets, `non-quantization/`) or
  SAN (github.com/d-li14/SAN) checkpoint → a resflex checkpoint whose logits equal the official forward's at every
  training size (`resflex import`).
* `init_from_single(model, path)`: plain single-resolution weights (torchvision's ResNet / MobileNetV2 key layout, or
  a resflex checkpoint) → the start of multi-resolution training (`resflex train --init`).

Both walk the resflex model's conv+BN units in order and ask a *layout* (one per source format) which source keys
hold that unit's kernel (or SAN meta-learner) and BN. Every source key must be used or be known to be unused, every
unit must be found, and every shape must match; otherwise nothing is loaded and the error names the keys.

The official layouts (both repositories): shared layers wrapped in `ModuleParallel` (`….module.weight`), one private
BN per training size in `BatchNorm2dParallel` (`….bn_0 … bn_{N-1}`, in the order of the training `--sizes`, which the
checkpoint does not store), DataParallel's `module.` prefix on every key. SAN generates each conv kernel with
`nn.Linear(1, out·in/groups·k²)` from a code fixed by BN index, 0.7 − 0.1·i, reshaped row-major; its ResNet stem
and both heads are plain shared layers, and its ResNet blocks compute the projection shortcut with `fc3`/`bn3`
(basic) or `fc4`/`bn4` (bottleneck) — the `downsample.*` modules they also define are never used by the forward.
RS-Nets stores its ensemble weights α as `module.alpha`. Neither normalises inputs (RGB in [0, 1]); evaluation
resizes the shorter side to int(S / 0.875) and centre-crops S.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import FORMAT as RESFLEX_FORMAT
from .checkpoint import CheckpointError, check_numbers, load_tensors_only, model_from_payload, save_checkpoint
from .layers import MetaConv2d, ScaleAwareBatchNorm2d, SwitchableBatchNorm2d, check_resolutions, scale_code
from .models import (PAPER_RESOLUTIONS, Method, ModelConfig, MultiResolutionNet, Preprocessing, SwitchableNet,
                     model_from_config)
from .models.mobilenet_v2 import MobileNetV2
from .models.resnet import ResNet

FORMATS = ("auto", "rsnets", "san")
REPOSITORIES = {"rsnets": "yikaiw/RS-Nets", "san": "d-li14/SAN"}
# official arch name → (format, resflex arch)
OFFICIAL_ARCHS = {
    "parallel_resnet18": ("rsnets", "resnet18"),
    "parallel_resnet50": ("rsnets", "resnet50"),
    "parallel_mobilenetv2": ("rsnets", "mobilenet_v2"),
    "meta_resnet18": ("san", "resnet18"),
    "meta_resnet50": ("san", "resnet50"),
    "meta_mobilenetv2": ("san", "mobilenet_v2"),
}
# ResNet depths per stage → name, for reading the arch off the keys
_RESNET_DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
                  ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
                  ("bottleneck", (3, 8, 36, 3)): "resnet152"}
# What the official evaluation feeds the network: RGB in [0, 1], Resize(int(S / .875)) (PIL bilinear), CenterCrop(S).
OFFICIAL_PREPROCESSING = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_ratio=0.875,
                                       interpolation="bilinear", resize_rounding="floor")
BN_STATS = ("weight", "bias", "running_mean", "running_var")
_SHOW = 4  # keys named per problem in an error


# --------------------------------------------------------------------------- reading files


def load_weights_file(path: str | Path, what: str) -> dict:
    """`torch.load(weights_only=True)` with errors that say what was wrong; never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no file at {path}")
    payload = load_tensors_only(path, "so loading it would run code from the file", advice=(
        " Save the weights alone (torch.save({'state_dict': model.state_dict()}, ...)) and retry."))
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict (a checkpoint or a state dict), got {type(payload).__name__}")
    return payload


def _state_dict_of(payload: dict, path: Path) -> dict[str, Tensor]:
    """The state dict inside a checkpoint dict (`state_dict` / `model`) or the dict itself, `module.` stripped."""
    sd = payload
    for key in ("state_dict", "model"):
        if isinstance(payload.get(key), dict):
            sd = payload[key]
            break
    tensors = {k: v for k, v in sd.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found (expected a state dict, or a dict with 'state_dict')")
    while all(k.startswith("module.") for k in tensors):  # DataParallel / DDP, possibly wrapped twice
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    _check_tensors(tensors, path)
    return tensors


def _check_tensors(sd: dict[str, Tensor], path: Path) -> None:
    """Refuse, naming the key, before anything is allocated from them: a tensor claiming more elements than its bytes
    in the file hold (a stride-0 / expanded view), non-finite weights, a negative BN running variance."""
    for k, t in sd.items():
        if t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise CheckpointError(
                f"{path}: {k!r} claims shape {tuple(t.shape)} ({t.numel() * t.element_size()} bytes) but the file "
                f"holds {t.untyped_storage().nbytes()} bytes for it (an expanded view); save real weights")
    for k, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: {k!r} holds NaN or infinite values; expected finite weights")
        if k.endswith("running_var") and bool((t < 0).any()):
            raise CheckpointError(f"{path}: {k!r} holds negative values ({float(t.min()):g}); a BN running "
                                  f"variance must be >= 0")


def _few(keys: Sequence[str]) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:_SHOW])
    return shown + (f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")


# --------------------------------------------------------------------------- the resflex side: conv+BN units


@dataclasses.dataclass(frozen=True)
class Unit:
    """One conv + BN of a resflex model; `prefix` is its `conv_bn` Sequential (`prefix.0` conv, `prefix.1` BN).

    kind/index: stem (); body (stage, block, k, convs in body); shortcut (stage, block, convs in body);
    block (feature index, k, convs in block) for MobileNetV2's inverted residuals; last (feature index,).
    """

    kind: str
    index: tuple[int, ...]
    prefix: str


def model_units(model: MultiResolutionNet) -> tuple[list[Unit], str]:
    """(conv+BN units in forward order, classifier module path) of a ResNet or MobileNetV2."""
    if isinstance(model, ResNet):
        units = [Unit("stem", (), "stem.0")]
        for s, stage in enumerate(model.stages):
            for j, block in enumerate(stage):
                n = len(block.body)
                units += [Unit("body", (s, j, k, n), f"stages.{s}.{j}.body.{k}") for k in range(n)]
                if not isinstance(block.shortcut, nn.Identity):
                    units.append(Unit("shortcut", (s, j, n), f"stages.{s}.{j}.shortcut"))
        return units, "fc"
    if isinstance(model, MobileNetV2):
        last = len(model.features) - 1
        units = [Unit("stem", (), "features.0")]
        for i in range(1, last):
            n = len(model.features[i].block)
            units += [Unit("block", (i, k, n), f"features.{i}.block.{k}") for k in range(n)]
        units.append(Unit("last", (last,), f"features.{last}"))
        return units, "classifier.1"
    raise ValueError(f"arch {model.config.arch!r}: importing weights supports resnet18, resnet50 and mobilenet_v2")


# --------------------------------------------------------------------------- source layouts


@dataclasses.dataclass(frozen=True)
class ConvSource:
    """Where a unit's conv lives in the source: a kernel (`kind="kernel"`, keys=(weight,)) or a SAN meta-learner
    (`kind="meta"`, keys=(Linear(1, n) weight, bias))."""

    kind: str
    keys: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """A source key layout: per unit, its conv and a function (BN copy, statistic) → key; the classifier prefix."""

    name: str
    conv: Callable[[Unit], ConvSource]
    bn: Callable[[Unit], Callable[[int, str], str]]
    head: str
    ignored: str | None = None  # regex of keys the source holds but its forward never uses


def _kernel(base: str, suffix: str) -> ConvSource:
    return ConvSource("kernel", (f"{base}{suffix}",))


def _meta(base: str) -> ConvSource:
    return ConvSource("meta", (f"{base}.weight", f"{base}.bias"))


def _parallel_bn(base: str) -> Callable[[int, str], str]:
    return lambda i, stat: f"{base}.bn_{i}.{stat}"


def _single_bn(base: str) -> Callable[[int, str], str]:
    return lambda i, stat: f"{base}.{stat}"


def _resnet_names(u: Unit, san: bool) -> tuple[str, str, bool]:
    """(conv base, BN base, is meta) of a ResNet unit in the RS-Nets/SAN/torchvision naming."""
    if u.kind == "stem":
        return "conv1", "bn1", False  # SAN's stem is a plain shared conv too
    if u.kind == "body":
        s, j, k, _ = u.index
        conv = f"layer{s + 1}.{j}.fc{k + 1}" if san else f"layer{s + 1}.{j}.conv{k + 1}"
        return conv, f"layer{s + 1}.{j}.bn{k + 1}", san
    s, j, n = u.index  # shortcut
    if san:  # SAN computes the projection with fc3/bn3 (basic) or fc4/bn4 (bottleneck), not with downsample.*
        return f"layer{s + 1}.{j}.fc{n + 1}", f"layer{s + 1}.{j}.bn{n + 1}", True
    return f"layer{s + 1}.{j}.downsample.0", f"layer{s + 1}.{j}.downsample.1", False


def _official_resnet(san: bool) -> Layout:
    def conv(u):
        base, _, meta = _resnet_names(u, san)
        return _meta(base) if meta else _kernel(base, ".module.weight")

    return Layout("san" if san else "rsnets", conv, lambda u: _parallel_bn(_resnet_names(u, san)[1]), "fc.module",
                  ignored=r"^layer\d+\.\d+\.downsample\." if san else None)


def _official_mobilenet(san: bool) -> Layout:
    def names(u):
        if u.kind == "stem":
            return ("features.0.fc", "features.0.bn") if san else ("features.0.0", "features.0.1")
        if u.kind == "last":
            return ("conv.fc", "conv.bn") if san else ("conv.0", "conv.1")
        i, k, _ = u.index  # official Sequential: conv, BN, ReLU6 per unit (no ReLU6 after the projection)
        return (f"features.{i}.fc{k + 1}", f"features.{i}.bn{k + 1}") if san else \
               (f"features.{i}.conv.{3 * k}", f"features.{i}.conv.{3 * k + 1}")

    conv = (lambda u: _meta(names(u)[0])) if san else (lambda u: _kernel(names(u)[0], ".module.weight"))
    return Layout("san" if san else "rsnets", conv, lambda u: _parallel_bn(names(u)[1]), "classifier.module")


def _torchvision_resnet() -> Layout:
    return Layout("torchvision", lambda u: _kernel(_resnet_names(u, False)[0], ".weight"),
                  lambda u: _single_bn(_resnet_names(u, False)[1]), "fc")


def _torchvision_mobilenet() -> Layout:
    def names(u):
        if u.kind == "stem":
            return "features.0.0", "features.0.1"
        if u.kind == "last":
            return f"features.{u.index[0]}.0", f"features.{u.index[0]}.1"
        i, k, n = u.index  # Conv2dNormActivation units conv.k.{0,1}, then the projection conv.{n-1} + BN conv.{n}
        return (f"features.{i}.conv.{k}.0", f"features.{i}.conv.{k}.1") if k < n - 1 else \
               (f"features.{i}.conv.{k}", f"features.{i}.conv.{k + 1}")

    return Layout("torchvision", lambda u: _kernel(names(u)[0], ".weight"), lambda u: _single_bn(names(u)[1]),
                  "classifier.1")


def _resflex_single(head: str) -> Layout:
    return Layout("resflex single", lambda u: _kernel(f"{u.prefix}.0", ".weight"),
                  lambda u: _single_bn(f"{u.prefix}.1"), head)


def official_layout(fmt: str, arch: str) -> Layout:
    return _official_mobilenet(fmt == "san") if arch == "mobilenet_v2" else _official_resnet(fmt == "san")


# --------------------------------------------------------------------------- source → resflex state dict


@dataclasses.dataclass(frozen=True)
class CodeMap:
    """The source's scale code c as a function of resflex's ε(S): c = a·ε + b (SAN: c_i = 0.7 − 0.1·i)."""

    a: float = 1.0
    b: float = 0.0


class _Mapper:
    """Builds a resflex state dict from a source state dict, collecting every problem before raising."""

    def __init__(self, model: MultiResolutionNet, source: dict[str, Tensor], origin: str):
        self.model, self.origin = model, origin
        self.target = model.state_dict()
        self.left = dict(source)
        self.out: dict[str, Tensor] = {}
        self.missing: list[str] = []
        self.shapes: list[str] = []

    def take(self, key: str, optional: bool = False) -> Tensor | None:
        if key in self.left:
            return self.left.pop(key)
        if not optional:
            self.missing.append(key)
        return None

    def put(self, key: str, value: Tensor | None, source_key: str) -> None:
        if value is None:
            return
        want = self.target[key]
        if tuple(value.shape) != tuple(want.shape):
            self.shapes.append(f"{source_key} {tuple(value.shape)} vs {key} {tuple(want.shape)}")
            return
        self.out[key] = value.detach().to(want.dtype).clone()

    def conv(self, unit: Unit, src: ConvSource) -> None:
        layer = self.model.get_submodule(f"{unit.prefix}.0")
        values = [self.take(k) for k in src.keys]
        if any(v is None for v in values):
            return
        if isinstance(layer, nn.Conv2d):
            if src.kind != "kernel":
                raise ValueError(f"{self.origin}: {src.keys[0]} is a SAN meta-learner; a plain conv cannot hold it")
            self.put(f"{unit.prefix}.0.weight", values[0], src.keys[0])
            return
        if not isinstance(layer, MetaConv2d):
            raise AssertionError(f"unexpected conv {type(layer).__name__} at {unit.prefix}.0")
        last = "meta" if isinstance(layer.meta, nn.Linear) else f"meta.{len(layer.meta) - 1}"
        n = math.prod(layer.weight_shape)
        if src.kind == "kernel":  # a shared kernel: zero slope, the kernel as bias → every scale generates it
            kernel = values[0]
            if tuple(kernel.shape) != layer.weight_shape:
                self.shapes.append(f"{src.keys[0]} {tuple(kernel.shape)} vs {unit.prefix}.0 kernel "
                                   f"{layer.weight_shape}")
                return
            self.put(f"{unit.prefix}.0.{last}.weight", torch.zeros_like(self.target[f"{unit.prefix}.0.{last}.weight"]),
                     src.keys[0])
            self.put(f"{unit.prefix}.0.{last}.bias", kernel.reshape(-1), src.keys[0])
            return
        slope, intercept = values  # W = slope·c + intercept; the model feeds c = a·ε + b (ModelConfig.san_code)
        if tuple(slope.shape) != (n, 1) or tuple(intercept.shape) != (n,):
            self.shapes.append(f"{src.keys[0]} {tuple(slope.shape)} / {src.keys[1]} {tuple(intercept.shape)} vs "
                               f"{unit.prefix}.0 kernel {layer.weight_shape} = ({n}, 1) / ({n},)")
            return
        if last != "meta":
            raise ValueError(f"{self.origin}: SAN's linear meta-learners need meta_hidden=0")
        self.put(f"{unit.prefix}.0.meta.weight", slope, src.keys[0])
        self.put(f"{unit.prefix}.0.meta.bias", intercept, src.keys[1])

    def bn(self, unit: Unit, key_of: Callable[[int, str], str], copies: int) -> None:
        """`copies` source BNs → this unit's BN(s): one each (copies == number of resolutions), or the single
        source BN into every private BN (copies == 1)."""
        layer = self.model.get_submodule(f"{unit.prefix}.1")
        targets = ([f"{unit.prefix}.1.bn.{i}" for i in range(len(layer.bn))]
                   if isinstance(layer, SwitchableBatchNorm2d) else [f"{unit.prefix}.1"])
        sources = [{stat: self.take(key_of(i, stat)) for stat in BN_STATS} for i in range(copies)]
        for i in range(copies):  # the counter is optional (absent before PyTorch 0.4.1)
            sources[i]["num_batches_tracked"] = self.take(key_of(i, "num_batches_tracked"), optional=True)
        for t, target in enumerate(targets):
            src = sources[t if copies > 1 else 0]
            for stat, value in src.items():
                self.put(f"{target}.{stat}", value, key_of(t if copies > 1 else 0, stat))

    def head(self, prefix: str, target: str, required: bool = True) -> str:
        w, b = self.take(f"{prefix}.weight"), self.take(f"{prefix}.bias")
        if w is None or b is None:
            return "missing"
        if not required and tuple(w.shape) != tuple(self.target[f"{target}.weight"].shape):
            return (f"kept its fresh initialisation (the weights have {w.shape[0]} classes, the model "
                    f"{self.target[f'{target}.weight'].shape[0]})")
        self.put(f"{target}.weight", w, f"{prefix}.weight")
        self.put(f"{target}.bias", b, f"{prefix}.bias")
        return "copied"

    def finish(self, ignored: str | None = None, consumed: Sequence[str] = ()) -> dict[str, Tensor]:
        unexpected = [k for k in self.left if k not in consumed and not (ignored and re.search(ignored, k))]
        problems = []
        if self.missing:
            problems.append(f"missing key(s) {_few(self.missing)}")
        if unexpected:
            problems.append(f"unexpected key(s) {_few(unexpected)}")
        if self.shapes:
            problems.append(f"shape mismatch(es) {'; '.join(self.shapes[:_SHOW])}"
                            + (f" and {len(self.shapes) - _SHOW} more" if len(self.shapes) > _SHOW else ""))
        if problems:
            raise CheckpointError(f"{self.origin} does not match resflex {self.model.config.arch} "
                                  f"(width {self.model.config.width:g}): " + "; ".join(problems))
        return {**self.target, **self.out}


def map_weights(model: MultiResolutionNet, source: dict[str, Tensor], layout: Layout, copies: int, origin: str,
                head_required: bool = True, consumed: Sequence[str] = ()) -> str:
    """Load `source` (in `layout`) into `model`; returns what happened to the classifier."""
    units, head = model_units(model)
    mapper = _Mapper(model, source, origin)
    for u in units:
        mapper.conv(u, layout.conv(u))
        mapper.bn(u, layout.bn(u), copies)
    head_note = mapper.head(layout.head, head, head_required)
    model.load_state_dict(mapper.finish(layout.ignored, consumed))
    return head_note


# --------------------------------------------------------------------------- official checkpoints


def detect_format(sd: dict[str, Tensor], path: Path) -> str:
    """'rsnets' or 'san' from the keys; a clear error for anything else."""
    if not any(".bn_0." in k for k in sd):
        raise CheckpointError(
            f"{path}: no BatchNorm2dParallel keys (like 'layer1.0.bn1.bn_0.weight'), so this is not an RS-Nets or "
            f"SAN checkpoint; keys start {_few(sorted(sd))}. Plain single-resolution weights are used with "
            "`resflex train --init WEIGHTS`")
    meta, shared = _format_examples(sd, "san"), _format_examples(sd, "rsnets")
    if meta and not shared:
        return "san"
    if shared and not meta:
        return "rsnets"
    raise CheckpointError(f"{path}: cannot tell RS-Nets from SAN: shared conv keys {_few(shared)}, meta-learner keys "
                          f"{_few(meta)}; pass --format rsnets or --format san")


def _format_examples(sd: dict[str, Tensor], fmt: str) -> list[str]:
    """SAN: meta-learner weights Linear(1, n) (`….fc1.weight` of shape (n, 1)); RS-Nets: shared 4-D convs besides the
    stem (SAN's ResNet has a shared stem and unused `downsample.*` convs too)."""
    if fmt == "san":
        return [k for k, v in sd.items() if v.ndim == 2 and v.shape[1] == 1 and re.search(r"\.fc\d*\.weight$", k)]
    return [k for k, v in sd.items() if v.ndim == 4 and k.endswith(".module.weight") and k != "conv1.module.weight"
            and not re.match(r"^layer\d+\.\d+\.downsample\.", k)]


def _arch_from_keys(sd: dict[str, Tensor], fmt: str) -> str:
    """The official arch name the keys describe (may be one resflex does not register)."""
    prefix = "meta_" if fmt == "san" else "parallel_"
    if any(k.startswith("features.") for k in sd):
        return prefix + "mobilenetv2"
    blocks: dict[int, set[int]] = {}
    for k in sd:
        m = re.match(r"^layer(\d+)\.(\d+)\.", k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    depths = tuple(len(blocks[s]) for s in sorted(blocks))
    bottleneck = any(re.match(r"^layer\d+\.\d+\.(fc4|conv3)\.", k) for k in sd)
    name = _RESNET_DEPTHS.get(("bottleneck" if bottleneck else "basic", depths))
    if name is None:
        raise CheckpointError(f"unrecognised architecture: {'bottleneck' if bottleneck else 'basic'} blocks with "
                              f"stage depths {list(depths)}; expected ResNet-18/50 or MobileNetV2")
    return prefix + name


def _width(sd: dict[str, Tensor], fmt: str, arch: str, path: Path) -> float:
    """The width multiplier the shapes imply (the official models are width 1.0; tests use narrower ones)."""
    try:
        if arch != "mobilenet_v2":
            return sd["conv1.module.weight"].shape[0] / 64
        head_in = sd["classifier.module.weight"].shape[1]
        last_in = sd["conv.fc.weight"].shape[0] // head_in if fmt == "san" else sd["conv.0.module.weight"].shape[1]
        return round(last_in / 320, 6)  # the last inverted residual has make_divisible(320·width) channels
    except KeyError as e:
        raise CheckpointError(f"{path}: missing key(s) {e.args[0]!r}") from None


def san_code_map(sizes: Sequence[int]) -> CodeMap:
    """SAN's index code 0.7 − 0.1·i as a·ε(S_i) + b in resflex's ε(S) = 0.1·S/32, exactly when the sizes are
    equally spaced (a = 1, b = 0 for the default 224,192,160,128,96)."""
    eps = [Fraction(s, 320) for s in sizes]
    if any(abs(float(e) - scale_code(s)) > 1e-12 for e, s in zip(eps, sizes)):
        raise AssertionError("resflex's scale code is no longer 0.1·S/32; update san_code_map")
    codes = [Fraction(7, 10) - Fraction(i, 10) for i in range(len(sizes))]
    a = Fraction(1) if len(sizes) == 1 else (codes[1] - codes[0]) / (eps[1] - eps[0])
    b = codes[0] - a * eps[0]
    if any(a * e + b != c for e, c in zip(eps, codes)):
        steps = [sizes[i] - sizes[i + 1] for i in range(len(sizes) - 1)]
        raise ValueError(
            f"--sizes {','.join(map(str, sizes))} are not equally spaced (steps {steps}): SAN fixes each BN's scale "
            f"code by its index (0.7 − 0.1·i) while resflex derives it from the size (ε(S) = 0.1·S/32), and the two "
            f"agree only for equally spaced sizes. Pass the sizes the model was trained with; if they really were "
            f"unequally spaced, this checkpoint cannot be imported exactly")
    return CodeMap(float(a), float(b))


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """`resflex import`: an official checkpoint → `out`/checkpoint.pt."""

    checkpoint: str
    out: str
    format: str = "auto"
    sizes: tuple[int, ...] | None = None  # default: the papers' 224,192,160,128,96
    classes: str | None = None  # a file with one class name per line
    data: str | None = None  # or an ImageFolder root whose class folders name the classes
    overwrite: bool = False

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; expected one of: {', '.join(FORMATS)}")
        if self.classes and self.data:
            raise ValueError("--classes and --data both name the classes; pass one")
        if self.sizes is not None:  # the bounds every command applies, before the file is read
            check_resolutions(self.sizes)
            check_numbers({"model_config": {"resolutions": list(self.sizes)},
                           "preprocessing": OFFICIAL_PREPROCESSING.to_dict()}, "--sizes")

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.out) / "checkpoint.pt"


@dataclasses.dataclass(frozen=True)
class ImportResult:
    path: Path
    model: MultiResolutionNet
    class_names: list[str]
    metadata: dict


def class_names_for(num_classes: int, classes: str | None = None, data: str | None = None) -> list[str]:
    """Class names from a one-per-line file, an ImageFolder's class folders, or numbered with zero padding ("000" …
    "999"), so that an ImageFolder's sorted class folders can follow label order."""
    if classes:
        path = Path(classes)
        if not path.is_file():
            raise FileNotFoundError(f"--classes: no file at {path}")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        source = f"--classes {path}"
    elif data:
        from .data import _class_dirs  # the rule ImageFolder uses: sorted, non-hidden folders

        root = Path(data)
        split = next((root / s for s in ("train", "val") if (root / s).is_dir()), None)
        if split is None:
            raise FileNotFoundError(f"--data: {root} has no train/ or val/ folder of class folders")
        names = _class_dirs(split)
        source = f"--data {split}"
    else:
        return [str(i).zfill(len(str(num_classes - 1))) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{source} gives {len(names)} class names; the checkpoint's classifier has {num_classes}")
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: duplicate class names {sorted({n for n in names if names.count(n) > 1})[:_SHOW]}")
    return names


def read_official(path: str | Path, fmt: str = "auto",
                  sizes: Sequence[int] | None = None) -> tuple[MultiResolutionNet, dict]:
    """(resflex model in eval mode, metadata) for an official RS-Nets / SAN checkpoint; writes nothing."""
    path = Path(path)
    payload = load_weights_file(path, "import")
    if payload.get("format") == RESFLEX_FORMAT:
        raise CheckpointError(f"{path} is already a resflex checkpoint; nothing to import")
    sd = _state_dict_of(payload, path)
    detected = detect_format(sd, path)
    if fmt != "auto" and fmt != detected:
        raise CheckpointError(f"--format {fmt}, but {path} holds {REPOSITORIES[detected]} keys "
                              f"({'meta-learners like' if detected == 'san' else 'shared convs like'} "
                              f"{_few(_format_examples(sd, detected)[:2])}); pass --format {detected} or auto")
    official_arch = _arch_from_keys(sd, detected)
    stated = payload.get("arch")
    if isinstance(stated, str) and stated != official_arch:
        raise CheckpointError(f"{path}: its 'arch' field says {stated!r} but its keys describe {official_arch!r}")
    if official_arch not in OFFICIAL_ARCHS:
        raise CheckpointError(
            f"{path}: arch {official_arch!r} is not supported; resflex imports "
            f"{', '.join(a for a, (f, _) in OFFICIAL_ARCHS.items() if f == detected)}")
    arch = OFFICIAL_ARCHS[official_arch][1]

    copies = 1 + max(int(m.group(1)) for k in sd for m in [re.search(r"\.bn_(\d+)\.", k)] if m)
    if sizes is None:
        if copies != len(PAPER_RESOLUTIONS):
            raise ValueError(f"{path} has {copies} BN copies per layer (bn_0…bn_{copies - 1}) but no sizes are "
                             f"stored in it: pass --sizes with the {copies} training sizes in training order")
        sizes = PAPER_RESOLUTIONS
    sizes = check_resolutions(tuple(sizes))
    if len(sizes) != copies:
        raise ValueError(f"--sizes {','.join(map(str, sizes))} has {len(sizes)} entries but {path} has {copies} BN "
                         f"copies per layer (bn_0…bn_{copies - 1}); pass the {copies} training sizes in training order")
    code = san_code_map(sizes) if detected == "san" else CodeMap()

    metadata = {"source": detected, "repository": REPOSITORIES[detected], "file": path.name, "arch": official_arch,
                "sizes": list(sizes), "bn_copies": copies}
    for k in ("epoch", "best_acc0", "best_acc", "best_prec1"):
        if isinstance(payload.get(k), (int, float)):
            metadata[k] = payload[k]
    consumed = []
    if "alpha" in sd:  # RS-Nets' MRED ensemble weights (logits softmax-weighted per size)
        alpha = sd["alpha"].double().reshape(-1)
        if detected != "rsnets" or len(alpha) != copies:
            raise CheckpointError(f"{path}: 'alpha' has {len(alpha)} entries for {copies} BN copies")
        metadata["alpha"] = [float(v) for v in alpha]
        metadata["alpha_softmax"] = [float(v) for v in torch.softmax(alpha, 0)]
        consumed.append("alpha")
    if detected == "san":
        metadata["scale_code"] = {"official": "0.7 - 0.1*i (BN index i)", "resflex": "0.1*S/32",
                                  "official_from_resflex": {"a": code.a, "b": code.b}}

    head_key = "classifier.module.weight" if arch == "mobilenet_v2" else "fc.module.weight"
    if head_key not in sd or sd[head_key].ndim != 2:
        raise CheckpointError(f"{path}: missing key(s) {head_key!r} (the classifier)")
    config = ModelConfig(arch, Method.SAN if detected == "san" else Method.RSNET, sizes,
                         _width(sd, detected, arch, path), int(sd[head_key].shape[0]), 0, san_code=(code.a, code.b))
    check_numbers({"model_config": config.to_dict(), "preprocessing": OFFICIAL_PREPROCESSING.to_dict()}, str(path))
    model = model_from_config(config)
    model.preprocessing = OFFICIAL_PREPROCESSING
    map_weights(model, sd, official_layout(detected, arch), copies, str(path), consumed=consumed)
    return model.eval(), metadata


def import_checkpoint(config: ImportConfig) -> ImportResult:
    """Read an official checkpoint, check everything, then write `config.out`/checkpoint.pt atomically."""
    out = config.checkpoint_path
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} already exists: pass --overwrite or choose another --out")
    model, metadata = read_official(config.checkpoint, config.format, config.sizes)
    names = class_names_for(model.config.num_classes, config.classes, config.data)
    save_checkpoint(out, model, names, metadata=metadata)
    return ImportResult(out, model, names, metadata)


# --------------------------------------------------------------------------- train --init


def init_from_single(model: MultiResolutionNet, path: str | Path) -> str:
    """Start `model` (rsnet, san or single) from single-resolution weights; returns a one-line summary. Your own
    network (`switchable`) takes its factory's own state dict (see `map_single_layout`).

    Accepted: a torchvision ResNet / MobileNetV2 state dict or a timm state dict of the timm-layout models
    (MobileNetV3, EfficientNet-Lite0, MobileNetV4-Conv-Small, RegNetX-200MF; see `map_single_layout`) — bare or under
    'state_dict' / 'model', `module.` stripped —, a resflex `single` checkpoint, or a resflex checkpoint with the same model config as `model` (e.g. an import, to
    fine-tune it). Convs and classifier are copied (the classifier only if the class count matches; otherwise it keeps
    its fresh initialisation), every private BN starts as the single BN, and a SAN meta-conv gets zero slope and the
    kernel as bias, so every scale generates the pretrained kernel.
    """
    path = Path(path)
    payload = load_weights_file(path, "--init")
    if isinstance(model, SwitchableNet):  # your own network: the factory's own single-resolution state dict
        return _init_single_layout(model, _state_dict_of(payload, path), path, "your network's own state dict")
    timm = getattr(model, "weights_layout", None) == "timm"
    units, head = ([], model.classifier_path) if timm else model_units(model)
    if payload.get("format") == RESFLEX_FORMAT:
        source = model_from_payload(payload, str(path))
        cfg, mine = source.config, model.config
        if cfg.method is Method.SINGLE:
            if cfg.arch != mine.arch:
                raise ValueError(f"--init {path}: a resflex {cfg.arch} checkpoint cannot start a {mine.arch}")
            if timm:  # a single model's keys are the timm layout
                return _init_single_layout(model, source.state_dict(), path, "resflex single checkpoint")
            layout, sd, kind = _resflex_single(head), source.state_dict(), "resflex single checkpoint"
        else:
            diffs = [f"{f}: {getattr(cfg, f)!r} in the weights vs {getattr(mine, f)!r}"
                     for f in ("arch", "method", "resolutions", "width", "meta_hidden")
                     if getattr(cfg, f) != getattr(mine, f)]
            if diffs:
                raise ValueError(f"--init {path} is a multi-resolution resflex checkpoint of another model ("
                                 + "; ".join(diffs) + "): train with the same settings, or start from single weights")
            loaded = source.state_dict()
            if cfg.san_code != mine.san_code:  # an imported SAN model's own code: refold it into this model's
                loaded = refold_san_code(model, loaded, cfg.san_code, mine.san_code)
            head_w = loaded[f"{head}.weight"]
            same_head = tuple(head_w.shape) == tuple(model.state_dict()[f"{head}.weight"].shape)
            if not same_head:  # another data set: keep the fresh classifier
                loaded = {k: v for k, v in loaded.items() if not k.startswith(f"{head}.")}
            model.load_state_dict({**model.state_dict(), **loaded})
            note = "copied" if same_head else (f"kept its fresh initialisation (the weights have {head_w.shape[0]} "
                                               f"classes, the model {model.config.num_classes})")
            return f"--init {path} (resflex {cfg.method.value} checkpoint): every weight loaded; classifier {note}"
    else:
        sd = _state_dict_of(payload, path)
        if any(".bn_0." in k for k in sd):
            raise ValueError(f"--init {path} is an official RS-Nets/SAN checkpoint; convert it with "
                             f"`resflex import {path} --out RUN`, then pass RUN/checkpoint.pt to --init")
        if timm:
            return _init_single_layout(model, sd, path, "timm state dict")
        expected = _torchvision_layout(model).conv(units[0]).keys[0]  # the stem conv
        if expected not in sd:
            raise CheckpointError(
                f"--init {path}: not torchvision's {model.config.arch} layout (no {expected!r}; keys start "
                f"{_few(sorted(sd))}) nor a resflex checkpoint")
        layout, kind = _torchvision_layout(model), "torchvision state dict"
    note = map_weights(model, sd, layout, 1, f"--init {path}", head_required=False)
    return f"--init {path} ({kind}): convs and BNs copied into every resolution; classifier {note}"


def map_single_layout(model: MultiResolutionNet, source: dict[str, Tensor], origin: str) -> str:
    """Load `source`, keyed as the model's own single-resolution (`method="single"`) state dict — timm's layout for
    the registered MobileNetV3 / EfficientNet-Lite / MobileNetV4 / RegNet, the factory's own `state_dict()` for your
    network (`switchable`, `--arch FILE.py:FACTORY`) — into `model` of any method: every private BN (per resolution,
    or per resolution and stage factor) starts as the single BN, a SAN meta-conv gets zero slope and the kernel as
    bias, the classifier is copied if its class count matches (in your network, whose classifier has no known name:
    tensors of another shape whose first dimension is the class count keep their fresh values). Every source key must
    be used and every shape must match, else nothing is loaded. Returns what happened to the classifier."""
    mapper, head = _Mapper(model, source, origin), getattr(model, "classifier_path", None)
    fresh: list[str] = []

    def bn(src: str, copies: list[str]) -> None:
        for stat in (*BN_STATS, "num_batches_tracked"):
            value = mapper.take(f"{src}.{stat}", optional=stat == "num_batches_tracked")
            for copy in copies:
                mapper.put(f"{copy}.{stat}", value, f"{src}.{stat}")

    def visit(dst: str, src: str, module: nn.Module) -> None:  # dst: the key prefix in `model`, src: in `source`
        if isinstance(module, ScaleAwareBatchNorm2d):
            return bn(src, [f"{dst}.per_scale.{s}.bn.{i}" for s, per in enumerate(module.per_scale)
                            for i in range(len(per.bn))])
        if isinstance(module, SwitchableBatchNorm2d):
            return bn(src, [f"{dst}.bn.{i}" for i in range(len(module.bn))])
        if isinstance(module, MetaConv2d):  # every scale generates the pretrained kernel
            kernel, last = mapper.take(f"{src}.weight"), "meta" if isinstance(module.meta, nn.Linear) else \
                f"meta.{len(module.meta) - 1}"
            if kernel is not None and tuple(kernel.shape) != module.weight_shape:
                mapper.shapes.append(f"{src}.weight {tuple(kernel.shape)} vs {dst} kernel {module.weight_shape}")
            elif kernel is not None:
                mapper.put(f"{dst}.{last}.weight", torch.zeros_like(mapper.target[f"{dst}.{last}.weight"]),
                           f"{src}.weight")
                mapper.put(f"{dst}.{last}.bias", kernel.reshape(-1), f"{src}.weight")
            return None
        if dst == head:
            return None
        for leaf, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            key, src_key = _join(dst, leaf), _join(src, leaf)
            if key in mapper.target:
                value, want = mapper.take(src_key, optional=leaf == "num_batches_tracked"), mapper.target[key]
                if (head is None and value is not None and value.shape != want.shape and want.ndim
                        and want.shape[0] == model.config.num_classes):
                    fresh.append(src_key)  # your network's classifier, another class count
                    continue
                mapper.put(key, value, src_key)
        for name, child in module.named_children():
            visit(_join(dst, name), _join(src, name), child)
        return None

    if isinstance(model, SwitchableNet):  # `model.net` is the factory's network: its keys are the source's
        visit("net", "", model.net)
    else:
        visit("", "", model)
    note = mapper.head(head, head, required=False) if head else (
        f"kept its fresh initialisation (another class count: {', '.join(fresh)})" if fresh else "copied")
    model.load_state_dict(mapper.finish())
    return note


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _init_single_layout(model: MultiResolutionNet, sd: dict[str, Tensor], path: Path, kind: str) -> str:
    note = map_single_layout(model, sd, f"--init {path}")
    return f"--init {path} ({kind}): convs and BNs copied into every resolution; classifier {note}"


def refold_san_code(model: MultiResolutionNet, state: dict[str, Tensor], source_code: tuple[float, float],
                    target_code: tuple[float, float]) -> dict[str, Tensor]:
    """SAN weights made for meta-learners fed a·ε + b = `source_code`, re-expressed (in float64) for `model`'s
    `target_code`: only the first linear layer of each meta-learner reads the code, so only it changes."""
    (a, b), (a2, b2) = source_code, target_code
    state = dict(state)
    for name, layer in model.named_modules():
        if isinstance(layer, MetaConv2d):
            first = f"{name}.meta" if isinstance(layer.meta, nn.Linear) else f"{name}.meta.0"
            w, bias = state[f"{first}.weight"], state[f"{first}.bias"]
            w2 = w.double() * (a / a2)  # w·(a·ε + b) + bias = w2·(a2·ε + b2) + bias2
            state[f"{first}.bias"] = (bias.double() + w.double()[:, 0] * b - w2[:, 0] * b2).to(bias.dtype)
            state[f"{first}.weight"] = w2.to(w.dtype)
    return state


def _torchvision_layout(model: MultiResolutionNet) -> Layout:
    return _torchvision_mobilenet() if isinstance(model, MobileNetV2) else _torchvision_resnet()
