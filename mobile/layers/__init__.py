"""Resolution-aware building blocks (and Resizable Networks' stage resize + scale-aware BN). Never imports `resflex.mobile.models`."""

from .meta_conv import MetaConv2d, scale_code
from .resolution import (
    DEFAULT_BN_MODE,
    BNMode,
    ResolutionAware,
    ScaleCode,
    check_resolutions,
    nearest_resolution,
    neighbours,
    parse_enum,
    set_resolution,
    upper_resolution,
)
from .stage_resize import (
    DEFAULT_STAGE_SCALES,
    ScaleAwareBatchNorm2d,
    StageResize,
    StageScaled,
    check_scales,
    check_stage_scales,
    set_stage_scales,
)
from .switchable_bn import SwitchableBatchNorm2d, calibration_table, load_calibration_table, randomize_private_bn, \
    recalibrate_bn, unseen_between

__all__ = [
    "DEFAULT_BN_MODE",
    "DEFAULT_STAGE_SCALES",
    "BNMode",
    "MetaConv2d",
    "ResolutionAware",
    "ScaleAwareBatchNorm2d",
    "ScaleCode",
    "StageResize",
    "StageScaled",
    "SwitchableBatchNorm2d",
    "calibration_table",
    "check_resolutions",
    "check_scales",
    "check_stage_scales",
    "load_calibration_table",
    "nearest_resolution",
    "neighbours",
    "parse_enum",
    "randomize_private_bn",
    "recalibrate_bn",
    "scale_code",
    "set_resolution",
    "set_stage_scales",
    "unseen_between",
    "upper_resolution",
]
