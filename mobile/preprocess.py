"""The one preprocessing path from a camera frame to an artifact's input, and its golden vectors.

`resflex eval` and `convert` measure accuracy through `EvalTransform` + `Preprocessing.normalize`; `apply_input_spec`
is that same path driven by a manifest's `InputSpec`, so the Kotlin and Swift apps, which replay
`tests/golden/preprocess_golden.json`, feed the artifact what the LUT's accuracy was measured on. The algorithm
(`InputSpec.interpolation == "bilinear_antialias"`) is spelled out in `tests/golden/README.md`.

    python -m resflex.mobile.preprocess --emit-golden tests/golden/preprocess_golden.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import center_crop, resize
from .bundle.schema import InputSpec, Layout

INTERPOLATION = "bilinear_antialias"  # PyTorch interpolate(bilinear, align_corners=False, antialias=True)
TOLERANCE = 1e-4  # float32 accumulation order (~1e-7) amplified by 1/std (~4.5): see tests/golden/README.md
ROTATIONS = (0, 90, 180, 270)


def frame_to_image(rgba: np.ndarray, rotation: int = 0) -> Tensor:
    """An 8-bit H×W×4 (RGBA, alpha ignored) or H×W×3 frame, rotated clockwise by `rotation` degrees to upright →
    RGB float32 CHW in [0, 1] (as `data.load_image` reads a file)."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    rgb = torch.from_numpy(np.ascontiguousarray(rgba[..., :3].transpose(2, 0, 1))).float().div_(255.0)
    return torch.rot90(rgb, k=-rotation // 90, dims=(-2, -1)).contiguous()


def apply_input_spec(image: Tensor, spec: InputSpec, layout: Layout | str = Layout.NCHW) -> Tensor:
    """RGB CHW in [0, 1] → the artifact's batch-1 input: resize the shorter side, centre-crop, (x − mean) / std."""
    if spec.interpolation not in (INTERPOLATION, "bilinear"):  # "bilinear": bundles written before the name was exact
        raise ValueError(f"InputSpec.interpolation {spec.interpolation!r} is not supported; expected {INTERPOLATION!r}")
    x = center_crop(resize(image, spec.resize_shorter_to), spec.crop)
    mean = torch.tensor(spec.mean, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype).view(3, 1, 1)
    x = ((x - mean) / std).unsqueeze(0)
    return x.permute(0, 2, 3, 1).contiguous() if Layout(layout) is Layout.NHWC else x.contiguous()


def yuv420_to_rgba(y: np.ndarray, u: np.ndarray, v: np.ndarray, width: int, height: int,
                   y_stride: tuple[int, int], uv_stride: tuple[int, int]) -> np.ndarray:
    """Android YUV_420_888 planes (flat uint8 arrays with (row_stride, pixel_stride)) → H×W×4 RGBA uint8;
    BT.601 limited range, 2×2 chroma subsampling (what CameraX's `ImageAnalysis` delivers)."""
    yy, xx = np.mgrid[0:height, 0:width]
    luma = y[yy * y_stride[0] + xx * y_stride[1]].astype(np.float64)
    ci = (yy // 2) * uv_stride[0] + (xx // 2) * uv_stride[1]
    c, d, e = luma - 16.0, u[ci].astype(np.float64) - 128.0, v[ci].astype(np.float64) - 128.0
    rgb = np.stack([1.164 * c + 1.596 * e, 1.164 * c - 0.392 * d - 0.813 * e, 1.164 * c + 2.017 * d], axis=-1)
    rgb = np.clip(np.sign(rgb) * np.floor(np.abs(rgb) + 0.5), 0, 255)  # round half away from zero
    return np.concatenate([rgb, np.full((height, width, 1), 255.0)], axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------- golden vectors


def _test_frame(width: int, height: int, seed: int) -> np.ndarray:
    """A small RGBA frame with smooth gradients, sharp edges and noise (so every resize weight matters)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    r = 255 * xx / max(width - 1, 1)
    gr = np.where((xx // 2 + yy // 3) % 2 == 0, 230, 20)
    b = g.integers(0, 256, size=(height, width))
    a = np.full((height, width), 255)
    return np.stack([r, gr, b, a], axis=-1).round().astype(np.uint8)


_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
_CASES = (  # name, width, height, rotation, resolution, resize_shorter_to, layout, mean/std
    ("landscape_down", 13, 9, 0, 6, 7, "NCHW", _IMAGENET),
    ("landscape_down_r90", 13, 9, 90, 6, 7, "NHWC", _IMAGENET),
    ("portrait_down_r180", 9, 14, 180, 5, 6, "NCHW", _IMAGENET),
    ("portrait_down_r270", 9, 14, 270, 5, 6, "NHWC", _IMAGENET),
    ("square_strong_down", 32, 32, 0, 7, 8, "NCHW", _IMAGENET),
    ("upscale", 5, 4, 0, 7, 8, "NCHW", _IMAGENET),
    ("crop_only", 10, 8, 0, 7, 8, "NHWC", ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])),
    ("odd_crop_offsets", 17, 10, 90, 4, 9, "NCHW", _IMAGENET),
)
_YUV_CASES = (  # name, width, height, chroma pixel stride (1: planar I420, 2: interleaved NV21-like), row padding
    ("planar", 8, 6, 1, 0),
    ("interleaved_padded", 6, 4, 2, 3),
)


def golden_document() -> dict:
    """The preprocessing golden vectors (`tests/golden/preprocess_golden.json`)."""
    cases = []
    for i, (name, w, h, rot, res, short, layout, (mean, std)) in enumerate(_CASES):
        rgba = _test_frame(w, h, seed=i)
        spec = InputSpec(res, short, res, mean, std, INTERPOLATION)
        x = apply_input_spec(frame_to_image(rgba, rot), spec, layout)
        cases.append({"name": name, "width": w, "height": h, "rotation": rot, "rgba": rgba.reshape(-1).tolist(),
                      "input": dataclasses.asdict(spec), "layout": layout, "shape": list(x.shape),
                      "expected": [round(float(v), 7) for v in x.reshape(-1)]})
    yuv_cases = []
    for i, (name, w, h, ps, pad) in enumerate(_YUV_CASES):
        g = np.random.default_rng(100 + i)
        y_row = w + pad
        y = g.integers(0, 256, size=y_row * h).astype(np.uint8)
        cw, ch = (w + 1) // 2, (h + 1) // 2
        uv_row = cw * ps + pad
        u, v = (g.integers(0, 256, size=uv_row * ch).astype(np.uint8) for _ in range(2))
        rgba = yuv420_to_rgba(y, u, v, w, h, (y_row, 1), (uv_row, ps))
        yuv_cases.append({"name": name, "width": w, "height": h,
                          "y": {"data": y.tolist(), "row_stride": y_row, "pixel_stride": 1},
                          "u": {"data": u.tolist(), "row_stride": uv_row, "pixel_stride": ps},
                          "v": {"data": v.tolist(), "row_stride": uv_row, "pixel_stride": ps},
                          "expected_rgba": rgba.reshape(-1).tolist()})
    return {"kind": "resflex.preprocess_golden", "schema_version": "1.0", "tolerance": TOLERANCE,
            "algorithm": "tests/golden/README.md#preprocessing-the-one-algorithm", "cases": cases,
            "yuv_cases": yuv_cases}


def write_golden(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the golden file's path")
    path.write_text(json.dumps(golden_document(), indent=1, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resflex.mobile.preprocess", description=__doc__.split("\n")[0])
    parser.add_argument("--emit-golden", required=True, metavar="PATH", help="write the golden vectors to PATH")
    print(write_golden(parser.parse_args(argv).emit_golden))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
