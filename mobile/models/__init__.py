"""Model registry and the one factory, `create_model`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import (
    PAPER_RESOLUTIONS,
    Method,
    ModelConfig,
    MultiResolutionNet,
    Preprocessing,
    trained_resolutions,
)
from .efficientnet_lite import EfficientNetLite
from .foreign import ArchSourceError, SwitchableNet, from_config, from_spec, is_arch_spec, switchable
from .mobilenet_v2 import MobileNetV2
from .mobilenet_v3 import LARGE, SMALL, MobileNetV3
from .mobilenet_v4 import MobileNetV4
from .regnet import RegNet
from .resnet import BasicBlock, Bottleneck, ResNet
from .tiny import TinyCNN

_REGISTRY: dict[str, Callable[[ModelConfig], MultiResolutionNet]] = {}


def register_model(fn: Callable[[ModelConfig], MultiResolutionNet]) -> Callable[[ModelConfig], MultiResolutionNet]:
    """Register an entry point under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


@register_model
def mobilenet_v2(config: ModelConfig) -> MultiResolutionNet:
    return MobileNetV2(config)


@register_model
def resnet18(config: ModelConfig) -> MultiResolutionNet:
    return ResNet(config, BasicBlock, (2, 2, 2, 2))


@register_model
def resnet50(config: ModelConfig) -> MultiResolutionNet:
    return ResNet(config, Bottleneck, (3, 4, 6, 3))


@register_model
def tiny_cnn(config: ModelConfig) -> MultiResolutionNet:
    return TinyCNN(config)


@register_model
def mobilenet_v3_large(config: ModelConfig) -> MultiResolutionNet:
    """timm `mobilenetv3_large_100` key layout."""
    return MobileNetV3(config, LARGE, head_channels=1280)


@register_model
def mobilenet_v3_small(config: ModelConfig) -> MultiResolutionNet:
    """timm `mobilenetv3_small_100` key layout."""
    return MobileNetV3(config, SMALL, head_channels=1024)


@register_model
def efficientnet_lite0(config: ModelConfig) -> MultiResolutionNet:
    """timm `efficientnet_lite0` key layout."""
    return EfficientNetLite(config)


@register_model
def mobilenet_v4_conv_small(config: ModelConfig) -> MultiResolutionNet:
    """timm `mobilenetv4_conv_small` key layout."""
    return MobileNetV4(config)


@register_model
def regnet_x_200mf(config: ModelConfig) -> MultiResolutionNet:
    """timm `regnetx_002` key layout."""
    return RegNet(config)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _unknown(arch: str) -> ValueError:
    return ValueError(f"unknown arch {arch!r}; expected one of: {', '.join(list_models())} "
                      "(or your own network as FILE.py:FACTORY / package.module:FACTORY)")


def model_from_config(config: ModelConfig) -> MultiResolutionNet:
    if config.arch in _REGISTRY:
        return _REGISTRY[config.arch](config)
    if is_arch_spec(config.arch) or config.arch.startswith("python:"):
        return from_config(config)
    raise _unknown(config.arch)


def create_model(
    arch: str,
    method: Method | str = Method.RSNET,
    resolutions: Sequence[int] | None = None,
    width: float = 1.0,
    num_classes: int = 1000,
    meta_hidden: int = 0,
    scales: Sequence[float] | None = None,
    stem_stride: int = 2,
) -> MultiResolutionNet:
    """Build a registered model, e.g. `create_model("mobilenet_v2", "rsnet", (224, 192, 160), width=0.35)`.

    `scales`: method "resizable" only — the trained stage scale factors (default `DEFAULT_STAGE_SCALES`).
    `stem_stride`: 2 (the papers' networks) or 1 (the small-input stem for images below ~64 px).
    `arch` may also be your own network, "FILE.py:FACTORY" or "package.module:FACTORY" (`from_spec`; `width`,
    `meta_hidden` and `stem_stride` do not apply to it)."""
    if is_arch_spec(arch):  # your own network: `factory(num_classes=...)` made switchable
        return from_spec(arch, method, trained_resolutions(resolutions, method), num_classes, scales)
    if arch not in _REGISTRY:  # checked first so a typo is reported before anything else
        raise _unknown(arch)
    config = ModelConfig(arch, method, trained_resolutions(resolutions, method), width, num_classes, meta_hidden,
                         tuple(scales or ()), stem_stride)
    return model_from_config(config)


__all__ = [
    "PAPER_RESOLUTIONS",
    "Method",
    "ModelConfig",
    "MultiResolutionNet",
    "Preprocessing",
    "ArchSourceError",
    "SwitchableNet",
    "create_model",
    "is_arch_spec",
    "list_models",
    "model_from_config",
    "register_model",
    "switchable",
]
