"""The app-side preprocessing path is the one accuracy is measured with, and its golden vectors are current."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from resflex.mobile.data import EvalTransform
from resflex.mobile.bundle.schema import InputSpec
from resflex.mobile.models import create_model
from resflex.mobile.preprocess import apply_input_spec, frame_to_image, golden_document, yuv420_to_rgba

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "preprocess_golden.json"


def test_golden_file_is_current():
    emitted = json.dumps(golden_document(), indent=1, sort_keys=True) + "\n"
    assert GOLDEN.read_text() == emitted, "re-emit: python -m resflex.mobile.preprocess --emit-golden " + str(GOLDEN)


def test_input_spec_path_equals_the_accuracy_path():
    """What `eval`/`convert` feed the model (EvalTransform + normalize) == apply_input_spec of the manifest's spec."""
    model = create_model("tiny_cnn", "rsnet", (32, 24), width=0.5, num_classes=3)
    p = model.preprocessing
    img = torch.rand(3, 45, 61, generator=torch.Generator().manual_seed(0))
    for r in (32, 24, 20):
        expected = p.normalize(EvalTransform(r, p.crop_ratio)(img, 0).unsqueeze(0))
        spec = InputSpec(r, p.resize_size(r), r, list(p.mean), list(p.std))
        torch.testing.assert_close(apply_input_spec(img, spec), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(apply_input_spec(img, spec, "NHWC"), expected.permute(0, 2, 3, 1))


def _aa_weights(n: int, m: int) -> np.ndarray:
    """tests/golden/README.md step 4, written out independently of PyTorch."""
    scale = n / m
    support, inv = (scale, 1 / scale) if scale >= 1 else (1.0, 1.0)
    w = np.zeros((m, n))
    for i in range(m):
        c = scale * (i + 0.5)
        lo, hi = max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n)
        row = np.array([max(0.0, 1 - abs((j - c + 0.5) * inv)) for j in range(lo, hi)])
        w[i, lo:hi] = row / row.sum()
    return w


@pytest.mark.parametrize("h,w,short", [(9, 13, 7), (14, 9, 5), (4, 5, 8), (40, 31, 6)])
def test_documented_algorithm_matches_the_resize(h, w, short):
    img = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w))
    oh, ow = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    spec = InputSpec(min(oh, ow), short, min(oh, ow), [0.0] * 3, [1.0] * 3)
    got = apply_input_spec(img, spec)[0].numpy()
    full = np.einsum("oh,chw,pw->cop", _aa_weights(h, oh), img.double().numpy(), _aa_weights(w, ow))
    top, left = (oh - spec.crop) // 2, (ow - spec.crop) // 2
    np.testing.assert_allclose(got, full[:, top:top + spec.crop, left:left + spec.crop], atol=1e-6)


def test_rotation_is_clockwise_to_upright():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[1, 0, 0] = 255  # bottom-left pixel red
    for rotation, (y, x) in ((0, (1, 0)), (90, (0, 0)), (180, (0, 2)), (270, (2, 1))):
        img = frame_to_image(rgba, rotation)
        assert img[0, y, x] == 1.0 and img[0].sum() == 1.0, rotation
    with pytest.raises(ValueError, match="rotation"):
        frame_to_image(rgba, 45)


def test_yuv_reference_colours():
    w, h = 2, 2
    grey = yuv420_to_rgba(np.full(4, 126, np.uint8), np.full(1, 128, np.uint8), np.full(1, 128, np.uint8), w, h,
                          (2, 1), (1, 1))
    assert (grey[..., :3] == 128).all() and (grey[..., 3] == 255).all()  # 1.164 · 110 = 128.04
    red = yuv420_to_rgba(np.full(4, 81, np.uint8), np.full(1, 90, np.uint8), np.full(1, 240, np.uint8), w, h,
                         (2, 1), (1, 1))
    assert tuple(red[0, 0, :3]) == (254, 0, 0)  # BT.601 limited-range red: 1.164·65 + 1.596·112 = 254.4
