"""What every resflex model shares: its config, its preprocessing, resolution switching and the layer factory."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from ..layers import (
    DEFAULT_BN_MODE,
    DEFAULT_STAGE_SCALES,
    BNMode,
    MetaConv2d,
    ScaleAwareBatchNorm2d,
    ScaleCode,
    StageResize,
    SwitchableBatchNorm2d,
    check_resolutions,
    check_scales,
    check_stage_scales,
    parse_enum,
    set_resolution,
    set_stage_scales,
)

PAPER_RESOLUTIONS = (224, 192, 160, 128, 96)  # RS-Nets / SAN default `--sizes`
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_ROUNDINGS = ("round", "floor")
STEM_STRIDES = (1, 2)


class Method(str, enum.Enum):
    """How a network learns its resolutions."""

    RSNET = "rsnet"  # shared convs, private BN per resolution (RS-Nets)
    SAN = "san"  # meta-generated convs from the scale code, private BN per resolution (SAN)
    SINGLE = "single"  # the individually trained baseline (I-Net): plain BN, one resolution
    RESIZABLE = "resizable"  # shared convs, per-stage feature resizing, scale-aware BN (Resizable Networks)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: resize to round(S / crop_ratio), center-crop S, then
    (x - mean) / std on RGB values in [0, 1], channels first.

    `resize_rounding="floor"` resizes to int(S / crop_ratio) instead, as the official RS-Nets and SAN evaluation
    does (`Resize(int(size / .875))`: 219 px for 192, 182 for 160, 109 for 96); `resflex import` sets it."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_ratio: float = 0.875
    interpolation: str = "bilinear"
    resize_rounding: str = "round"  # "round" | "floor"

    def __post_init__(self):
        if self.resize_rounding not in RESIZE_ROUNDINGS:
            raise ValueError(f"resize_rounding: expected one of {', '.join(RESIZE_ROUNDINGS)}, "
                             f"got {self.resize_rounding!r}")

    def resize_size(self, resolution: int) -> int:
        if self.resize_rounding == "floor":
            return int(resolution / self.crop_ratio)
        return round(resolution / self.crop_ratio)

    def normalize(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(mean=tuple(d["mean"]), std=tuple(d["std"]), crop_ratio=float(d["crop_ratio"]),
                   interpolation=str(d["interpolation"]),
                   resize_rounding=str(d.get("resize_rounding", "round")))  # absent in checkpoints before import


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's architecture (weights come separately)."""

    arch: str
    method: Method = Method.RSNET
    resolutions: tuple[int, ...] = PAPER_RESOLUTIONS
    width: float = 1.0
    num_classes: int = 1000
    meta_hidden: int = 0  # SAN meta-learner: 0 = linear, 8 or 16 = 2-layer MLP
    # Resizable only: the trained stage scale factors. Scale-aware BNs hold one private BN per
    # (resolution, factor) pair in the order of `resolutions` × `scales` (see resflex.mobile.layers.stage_resize).
    scales: tuple[float, ...] = ()
    # Stride of the stem's first convolution: 2 as the papers' ImageNet networks; 1 is the small-input stem for
    # images below ~64 px (CIFAR-style), which keeps 4× more spatial detail through the network (README, recipe).
    stem_stride: int = 2
    # Your own network (`resflex.mobile.switchable`, arch "FILE.py:FACTORY"): the modules resized before (resizable)
    # and the sha256 of the factory's file; both empty for registered architectures and left out of `to_dict`.
    stage_modules: tuple[str, ...] = ()
    arch_sha256: str = ""
    # SAN: the meta-learners read a·ε(S) + b, (a, b) = san_code: (1, 0) for models trained here; an imported
    # SAN checkpoint's index code 0.7 − 0.1·i at sizes other than the papers' (resflex.mobile.importer), so its
    # kernels are generated exactly as the official forward generates them. Left out of `to_dict` when (1, 0).
    san_code: tuple[float, float] = (1.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "method", parse_enum(Method, self.method, "method"))
        if self.stem_stride not in STEM_STRIDES or isinstance(self.stem_stride, bool):
            raise ValueError(f"stem_stride: expected one of {', '.join(map(str, STEM_STRIDES))}, got {self.stem_stride!r}")
        object.__setattr__(self, "resolutions", check_resolutions(self.resolutions))
        if self.method is Method.RESIZABLE:
            object.__setattr__(self, "scales", check_scales(self.scales or DEFAULT_STAGE_SCALES))
        elif self.scales:
            raise ValueError(f"scales {list(self.scales)}: only method 'resizable' has stage scale factors "
                             f"(method is {self.method.value!r})")
        else:
            object.__setattr__(self, "scales", ())
        if self.method is Method.SINGLE and len(self.resolutions) != 1:
            raise ValueError(f"method 'single' trains exactly one resolution, got {list(self.resolutions)}")
        if not self.width > 0:
            raise ValueError(f"width: expected a positive multiplier, got {self.width!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2, got {self.num_classes!r}")
        code = tuple(self.san_code)
        if len(code) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in code) or code[0] == 0:
            raise ValueError(f"san_code: expected two finite numbers (a, b), a != 0, got {str(self.san_code)[:60]}")
        object.__setattr__(self, "san_code", (float(code[0]), float(code[1])))
        if self.san_code != (1.0, 0.0) and self.method is not Method.SAN:
            raise ValueError(f"san_code {list(self.san_code)}: only method 'san' has meta-learners")
        if self.stage_modules and self.method is not Method.RESIZABLE:
            raise ValueError(f"stage_modules {list(self.stage_modules)}: only method 'resizable' has stages")
        if not all(isinstance(n, str) for n in self.stage_modules) or not isinstance(self.arch_sha256, str):
            raise ValueError("stage_modules: expected module names; arch_sha256: expected a hex digest")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
        d["resolutions"] = list(self.resolutions)
        d["scales"] = list(self.scales)
        d["san_code"] = list(self.san_code)
        if self.san_code == (1.0, 0.0):
            del d["san_code"]
        d["stage_modules"] = list(self.stage_modules)
        return {k: v for k, v in d.items() if v or k not in ("stage_modules", "arch_sha256")}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"model config: unknown field(s) {sorted(unknown)}; expected {sorted(fields)}")
        d = {**d, "san_code": tuple(d.get("san_code", (1.0, 0.0)))}
        return cls(**{**d, "resolutions": tuple(d.get("resolutions", PAPER_RESOLUTIONS)),
                      "scales": tuple(d.get("scales", ())), "stage_modules": tuple(d.get("stage_modules", ()))})


class Ops:
    """Layer factory: the same architecture code builds RS-Net, SAN, I-Net or Resizable-Network layers.

    For Resizable Networks the architecture calls `stage_resize(stride)` where a stage's resize belongs; every
    `bn` after it is scale-aware for that stage (its input size is set by that stage's factor)."""

    def __init__(self, config: ModelConfig):
        self.method = config.method
        self.resolutions = config.resolutions
        self.meta_hidden = config.meta_hidden
        self.san_code = config.san_code
        self.scales = config.scales
        self.stage: int | None = None  # index of the most recent stage resize; None before the first

    def stage_resize(self, stride: int) -> list[nn.Module]:
        """[] for every method but resizable; else the next stage's resize (to put before the stage's first
        non-strided block — Appendix A.1). `stride` is the stage's total stride from the input."""
        if self.method is not Method.RESIZABLE:
            return []
        self.stage = 0 if self.stage is None else self.stage + 1
        return [StageResize(self.resolutions, self.scales, self.stage, stride)]

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Module:
        if self.method is Method.SAN:
            return MetaConv2d(cin, cout, k, self.resolutions, stride, k // 2, groups, hidden=self.meta_hidden,
                              code=self.san_code)
        return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)

    def bn(self, channels: int) -> nn.Module:
        if self.method is Method.SINGLE:
            return nn.BatchNorm2d(channels)
        if self.method is Method.RESIZABLE and self.stage is not None:
            # §3.2: a private BN per scale factor after each shared conv whose input size that factor changes.
            return ScaleAwareBatchNorm2d(channels, self.resolutions, self.scales, self.stage)
        return SwitchableBatchNorm2d(channels, self.resolutions)

    def conv_bn(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU):
        layers = [self.conv(cin, cout, k, stride, groups), self.bn(cout)]
        if act is not None:
            layers.append(act(inplace=True))
        return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming (fan_out) convs, unit BN, small normal classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and not _inside_meta(model, m):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _inside_meta(model: nn.Module, linear: nn.Linear) -> bool:
    return any(isinstance(m, MetaConv2d) and any(x is linear for x in m.modules()) for m in model.modules())


class MultiResolutionNet(nn.Module):
    """Base of every registered model: knows its config, preprocessing and active resolution."""

    def __init__(self, config: ModelConfig, preprocessing: Preprocessing | None = None):
        super().__init__()
        self.config = config
        self.preprocessing = preprocessing or Preprocessing()
        self._state = (config.resolutions[0], DEFAULT_BN_MODE, ScaleCode.IDEAL)
        self._stage_scales: tuple[float, ...] = ()

    @property
    def resolution(self) -> int:
        return self._state[0]

    @property
    def num_stages(self) -> int:
        """Stages with their own scale factor (Resizable Networks); 0 for every other method."""
        return sum(isinstance(m, StageResize) for m in self.modules())

    @property
    def full_config(self) -> tuple[float, ...]:
        """The largest trained factor at every stage (the unresized network); () without stages."""
        return (max(self.config.scales),) * self.num_stages if self.num_stages else ()

    @property
    def stage_scales(self) -> tuple[float, ...]:
        """The active spatial configuration: one factor per stage (() for models without stages)."""
        return self._stage_scales or self.full_config

    def set_config(self, resolution: int, stage_scales=None, bn_mode: BNMode | str = DEFAULT_BN_MODE,
                   scale_code: ScaleCode | str = ScaleCode.IDEAL) -> None:
        """Switch to an operating point: input `resolution` and (resizable models) one trained factor per stage.

        `stage_scales=None` keeps the active configuration. Raises ValueError naming a factor that is ≤ 0, > 1 or
        not trained, or a wrong number of factors."""
        if stage_scales is not None:
            if not self.num_stages:
                raise ValueError(f"stage_scales {list(stage_scales)}: method {self.config.method.value!r} has no "
                                 "stage scales (only method 'resizable' has)")
            stage_scales = check_stage_scales(stage_scales, self.config.scales, self.num_stages,
                                              f"{self.config.arch} ({self.num_stages} stages)")
        self.set_resolution(resolution, bn_mode, scale_code)
        if stage_scales is not None:
            set_stage_scales(self, stage_scales)
            self._stage_scales = stage_scales

    @contextlib.contextmanager
    def at_config(self, resolution: int, stage_scales=None, bn_mode: BNMode | str = DEFAULT_BN_MODE,
                  scale_code: ScaleCode | str = ScaleCode.IDEAL) -> Iterator[MultiResolutionNet]:
        """Temporarily switch to a configuration; the previous resolution and stage scales are restored on exit."""
        previous, scales = self._state, self.stage_scales
        self.set_config(resolution, stage_scales, bn_mode, scale_code)
        try:
            yield self
        finally:
            self.set_config(*previous[:1], scales or None, *previous[1:])

    def set_resolution(self, resolution: int, bn_mode: BNMode | str = DEFAULT_BN_MODE,
                       scale_code: ScaleCode | str = ScaleCode.IDEAL) -> None:
        """Make every later forward run at `resolution` (see `BNMode` / `ScaleCode` for unseen ones)."""
        set_resolution(self, resolution, bn_mode, scale_code)
        self._state = (resolution, BNMode(bn_mode), ScaleCode(scale_code))
        if resolution not in self.config.resolutions:
            self.probe_map_sizes(resolution)

    @torch.no_grad()
    def probe_map_sizes(self, resolution: int) -> None:
        """Record every private BN's input map side at `resolution` and at each training resolution (one forward
        of a blank image each, eval mode, state restored), which BN interpolation weighs by. Once per resolution;
        not for resizable models, whose map sizes also depend on the stage scales."""
        layers = [m for m in self.modules() if isinstance(m, SwitchableBatchNorm2d)]
        if self.num_stages or not layers or all(resolution in m.map_sizes for m in layers):
            return
        state, was_training = self._state, self.training
        hooks = [m.register_forward_pre_hook(lambda m, args: m.map_sizes.__setitem__(current, args[0].shape[-1]))
                 for m in layers]
        self.eval()
        try:
            for current in sorted({*self.config.resolutions, resolution}):
                set_resolution(self, current, BNMode.INTERPOLATE, state[2])
                self(torch.zeros(1, 3, current, current, device=next(self.parameters()).device))
        finally:
            for h in hooks:
                h.remove()
            set_resolution(self, *state)
            self.train(was_training)

    @contextlib.contextmanager
    def at_resolution(self, resolution: int, bn_mode: BNMode | str = DEFAULT_BN_MODE,
                      scale_code: ScaleCode | str = ScaleCode.IDEAL) -> Iterator[MultiResolutionNet]:
        """Temporarily switch resolution; the previous one is restored on exit."""
        previous = self._state
        self.set_resolution(resolution, bn_mode, scale_code)
        try:
            yield self
        finally:
            self.set_resolution(*previous)

    def example_input(self, resolution: int | None = None, batch_size: int = 1) -> Tensor:
        """A normalised random input of the model's layout at `resolution` (default: the active one)."""
        r = resolution or self.resolution
        return torch.randn(batch_size, 3, r, r)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups: weight decay on conv/linear weights (and meta-learners), none on BN and biases."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_norm = any(isinstance(m, nn.BatchNorm2d) for m in self._owners(name))
            (no_decay if is_norm or (p.ndim <= 1 and ".meta" not in name) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _owners(self, name: str) -> list[nn.Module]:
        module_name = name.rsplit(".", 1)[0]
        return [self.get_submodule(module_name)] if "." in name else []


def trained_resolutions(resolutions: Sequence[int] | None, method: Method | str) -> tuple[int, ...]:
    """Default training resolutions for a method: the papers' five, or 224 alone for an I-Net."""
    if resolutions is not None:
        return tuple(resolutions)
    return (224,) if parse_enum(Method, method, "method") is Method.SINGLE else PAPER_RESOLUTIONS
