"""The timm-layout architectures (issue 22 items 3-4) through bake and the fp32 converters: hard-swish, hard-sigmoid,
squeeze-excite, 5×5 depthwise, UIB blocks and group convolutions, with per-resolution BN and shared conv weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resflex.convert.bake import ChannelAffine, bake
from resflex.mobile.models import create_model

ARCHS = ("mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_lite0", "mobilenet_v4_conv_small", "regnet_x_200mf")
RESOLUTIONS = (32, 24)


@pytest.fixture
def model(request, randomized):
    torch.manual_seed(0)
    return randomized(create_model(request.param, "rsnet", RESOLUTIONS, width=0.25, num_classes=4)).eval()


@pytest.mark.parametrize("model", ARCHS, indirect=True)
def test_bake_computes_the_model_with_every_bn_rewritten(model):
    for r in (*RESOLUTIONS, 28):
        x = torch.randn(2, 3, r, r)
        with torch.no_grad(), model.at_resolution(r):
            want = model(x)
        for style in ("keep", "fold", "affine"):
            baked = bake(model, r, bn=style)
            torch.testing.assert_close(baked(x), want, rtol=1e-4, atol=1e-5)
            if style != "keep":  # every BN followed its conv inside a Sequential, so none is left
                assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in baked.modules()), style
        assert sum(isinstance(m, ChannelAffine) for m in baked.modules()) > 10


def _parity(backend, model, tmp_path):
    baked = {r: bake(model, r, bn=backend.bn_style) for r in RESOLUTIONS}
    calib = {r: torch.randn(4, 3, r, r, generator=torch.Generator().manual_seed(r)) for r in RESOLUTIONS}
    exported = backend.export(baked, "fp32", calib, tmp_path)
    runner = backend.runner(exported, tmp_path)
    for entry in exported.entries:
        x = torch.randn(3, 3, entry.resolution, entry.resolution)
        with torch.no_grad():
            ref = baked[entry.resolution](x).numpy()
        rel = np.abs(runner.run(entry, x.numpy()) - ref).max() / np.abs(ref).max()
        assert rel <= 1e-4, f"{entry.name}: max relative error {rel:.2e}"


@pytest.mark.parametrize("model", ARCHS, indirect=True)
def test_onnx_fp32_matches_torch_at_every_resolution(model, tmp_path):
    pytest.importorskip("onnxruntime")
    from resflex.convert.backends.onnx import OnnxBackend

    _parity(OnnxBackend(), model, tmp_path)


@pytest.mark.slow  # about 2 minutes per architecture on 2 shared cores (XNNPACK lowering)
@pytest.mark.parametrize("model", ARCHS, indirect=True)
def test_executorch_fp32_matches_torch_at_every_resolution(model, tmp_path):
    pytest.importorskip("executorch")
    from resflex.convert.backends.executorch import ExecuTorchBackend

    _parity(ExecuTorchBackend(), model, tmp_path)
