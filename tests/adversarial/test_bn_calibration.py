"""Hostile BN statistics in a checkpoint (`bn_calibration`, written by `train` for BN mode auto): refused on load,
naming the checkpoint and the field, before `convert` writes anything."""

import math

import pytest
import torch

from resflex.convert.pipeline import ConvertConfig, convert
from resflex.mobile.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from resflex.mobile.layers import SwitchableBatchNorm2d
from resflex.mobile.models import create_model

NAMES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]  # the synthetic set's first 4


def _model():
    torch.manual_seed(0)
    return create_model("tiny_cnn", "rsnet", (32, 16), width=0.5, num_classes=4)


def _good_table(model):
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SwitchableBatchNorm2d)}
    return {"images": 8, "statistics": {24: {n: torch.stack([torch.zeros(m.num_features), torch.ones(m.num_features)])
                                             for n, m in layers.items()}}}


def _damaged(model, how):
    table = _good_table(model)
    stats = table["statistics"][24]
    first = next(iter(stats))
    if how == "nan":
        stats[first][0, 0] = math.nan
    elif how == "negative variance":
        stats[first][1, 0] = -1.0
    elif how == "shape":
        stats[first] = stats[first][:, :1]
    elif how == "not a tensor":
        stats[first] = [0.0, 1.0]
    elif how == "integer tensor":
        stats[first] = stats[first].long()
    elif how == "unknown layer":
        stats["evil.layer"] = stats[first]
    elif how == "not per layer":
        table["statistics"][24] = list(stats.values())
    elif how == "trained resolution":
        table["statistics"] = {32: stats}
    elif how == "resolution out of range":
        table["statistics"] = {100000: stats}
    elif how == "resolution not an integer":
        table["statistics"] = {"24": stats}
    elif how == "too many resolutions":
        table["statistics"] = {r: None for r in range(1, 4099)}
    elif how == "images":
        table["images"] = True
    elif how == "not an object":
        table = [1, 2]
    return table


CASES = {
    "nan": "statistics must be finite with variances ≥ 0",
    "negative variance": "statistics must be finite with variances ≥ 0",
    "shape": r"expected a float tensor of shape \(2, \d+\) \(mean; var\), got \(2, 1\)",
    "not a tensor": "expected a float tensor of shape .*got list",
    "integer tensor": "expected a float tensor of shape",
    "unknown layer": r"unknown \['evil.layer'\]",
    "not per layer": "expected statistics per switchable BN layer",
    "trained resolution": r"bn_calibration.statistics\[32\]: expected an untrained resolution",
    "resolution out of range": r"bn_calibration.statistics\[100000\]: expected an untrained resolution",
    "resolution not an integer": r"bn_calibration.statistics\[24\]: expected an untrained resolution",
    "too many resolutions": "4098 resolutions, expected at most 4096",
    "images": r"bn_calibration.images = True, expected an integer",
    "not an object": "bn_calibration: expected an object",
}


@pytest.mark.parametrize("how", list(CASES))
def test_damaged_bn_statistics_are_refused_naming_the_checkpoint_and_field(tmp_path, how):
    model = _model()
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", model, NAMES, bn_calibration=_damaged(model, how))
    with pytest.raises(CheckpointError, match=rf"{ckpt}: .*{CASES[how]}"):
        load_checkpoint(ckpt)


def test_convert_refuses_a_damaged_table_before_writing(tmp_path):
    model = _model()
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", model, NAMES, bn_calibration=_damaged(model, "nan"))
    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match="finite"):
        convert(ConvertConfig(str(ckpt), str(out), backends=("onnx",), precisions=("fp32",), resolutions=(32, 24),
                              bn_mode="auto", calib_samples=4, val_samples=4, progress=False))
    assert not out.exists()


def test_a_good_table_loads_into_every_switchable_bn_and_a_layer_without_statistics_keeps_interpolating(tmp_path):
    model = _model()
    ckpt = save_checkpoint(tmp_path / "checkpoint.pt", model, NAMES, bn_calibration=_good_table(model))
    loaded, _ = load_checkpoint(ckpt)
    layers = [m for m in loaded.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert layers and all(list(m.calibrated) == [24] for m in layers)
    partial = _good_table(model)  # e.g. a BN the forward pass never reaches saw no images
    del partial["statistics"][24][next(iter(partial["statistics"][24]))]
    ckpt = save_checkpoint(tmp_path / "partial.pt", model, NAMES, bn_calibration=partial)
    loaded, _ = load_checkpoint(ckpt)
    layers = [m for m in loaded.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert list(layers[0].calibrated) == [] and all(list(m.calibrated) == [24] for m in layers[1:])
