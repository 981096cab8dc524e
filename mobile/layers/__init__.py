"""Resolution-aware building blocks. Never imports `resflex.mobile.models`."""

from .meta_conv import MetaConv2d, scale_code
from .resolution import (
    BNMode,
    ResolutionAware,
    ScaleCode,
    check_resolutions,
    nearest_resolution,
    neighbours,
    parse_enum,
    set_resolution,
)
from .switchable_bn import SwitchableBatchNorm2d, recalibrate_bn

__all__ = [
    "BNMode",
    "MetaConv2d",
    "ResolutionAware",
    "ScaleCode",
    "SwitchableBatchNorm2d",
    "check_resolutions",
    "nearest_resolution",
    "neighbours",
    "parse_enum",
    "recalibrate_bn",
    "scale_code",
    "set_resolution",
]
