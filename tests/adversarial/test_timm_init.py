"""`train --init` with timm weights for the timm-layout architectures (issue 22 item 3): a file for another width or
another architecture, a missing or an extra key, non-finite values → refused before anything is loaded, naming the
file and the keys; the model keeps its weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from resflex.mobile.checkpoint import CheckpointError
from resflex.mobile.importer import init_from_single
from resflex.mobile.models import create_model

_spec = importlib.util.spec_from_file_location(
    "timm_layouts", Path(__file__).parents[1] / "mobile" / "test_timm_layouts.py")
timm_layouts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timm_layouts)


def _save(tmp_path, sd, name="timm.pth"):
    torch.save(sd, tmp_path / name)
    return tmp_path / name


def _refused(model, path, *fragments):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((CheckpointError, ValueError)) as info:
        init_from_single(model, path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_weights_of_another_width_are_refused_naming_the_shapes(tmp_path):
    path = _save(tmp_path, timm_layouts.random_timm_weights("mobilenet_v3_small", 1.0))
    model = create_model("mobilenet_v3_small", "rsnet", (32, 24), width=0.5, num_classes=10)
    _refused(model, path, str(path), "shape mismatch", "blocks.")


def test_weights_of_another_timm_architecture_are_refused_naming_the_keys(tmp_path):
    path = _save(tmp_path, timm_layouts.random_timm_weights("efficientnet_lite0", 0.5))
    model = create_model("mobilenet_v4_conv_small", "rsnet", (32, 24), width=0.5, num_classes=10)
    _refused(model, path, str(path), "missing key(s)", "unexpected key(s)", "'blocks.0.0.conv_dw.weight'")


def test_a_missing_and_an_extra_key_are_both_named(tmp_path):
    sd = timm_layouts.random_timm_weights("regnet_x_200mf", 1.0)
    del sd["s3.b2.conv2.conv.weight"]
    sd["s3.b2.se.fc1.weight"] = torch.zeros(8, 152, 1, 1)  # RegNetY's SE: not in RegNetX
    model = create_model("regnet_x_200mf", "san", (32, 24), num_classes=10)
    _refused(model, _save(tmp_path, sd), "'s3.b2.conv2.conv.weight'", "'s3.b2.se.fc1.weight'")


def test_non_finite_weights_are_refused_naming_the_key(tmp_path):
    sd = timm_layouts.random_timm_weights("mobilenet_v3_large", 0.5)
    sd["blocks.2.0.se.conv_reduce.bias"][0] = float("nan")
    model = create_model("mobilenet_v3_large", "rsnet", (32, 24), width=0.5, num_classes=10)
    _refused(model, _save(tmp_path, sd), "'blocks.2.0.se.conv_reduce.bias'", "NaN")


def test_a_torchvision_mobilenet_v2_file_is_not_taken_for_timm_weights(tmp_path):
    source = create_model("mobilenet_v2", "single", (32,), width=0.5, num_classes=10)
    path = _save(tmp_path, {f"features.{k}": v for k, v in source.state_dict().items()})
    model = create_model("efficientnet_lite0", "rsnet", (32, 24), width=0.5, num_classes=10)
    _refused(model, path, "missing key(s)", "'conv_stem.weight'", "unexpected key(s)")
