"""Crafted inputs for the adversarial suite (issue 10): a small, torch-free bundle built by code — an ONNX artifact
(one file per resolution, so its entries name files) and an ExecuTorch artifact (entries are methods) with real
sha256s — plus builders that damage it in the ways a hostile or careless user would."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from resflex.mobile.bundle import schema

RESOLUTIONS = (32, 24, 16)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_doc(files: dict[str, bytes]) -> dict:
    """manifest.json (plain dict) for `files` (bundle-relative path → bytes)."""
    onnx = [f"onnx/model_fp32_{r}.onnx" for r in RESOLUTIONS]
    pte = "executorch/model_fp32.pte"
    model = schema.ModelInfo("tiny_cnn", "rsnet", 0.5, 4, list(RESOLUTIONS), ["a", "b", "c", "d"], "0" * 64)
    artifacts = [
        schema.ArtifactInfo(schema.Backend.ONNX, schema.Precision.FP32, onnx[0], _sha(files[onnx[0]]),
                       sum(len(files[f]) for f in onnx), schema.Layout.NCHW,
                       [schema.EntryInfo(r, Path(f).name, "image", "logits", [1, 3, r, r]) for r, f in zip(RESOLUTIONS, onnx)],
                       True, extra_files=[schema.FileRef(f, _sha(files[f]), len(files[f])) for f in onnx[1:]]),
        schema.ArtifactInfo(schema.Backend.EXECUTORCH, schema.Precision.FP32, pte, _sha(files[pte]), len(files[pte]), schema.Layout.NCHW,
                       [schema.EntryInfo(r, f"forward_{r}", "image", "logits", [1, 3, r, r]) for r in RESOLUTIONS], True),
    ]
    doc = schema.Manifest(model, list(RESOLUTIONS),
                     [schema.InputSpec(r, round(r / 0.875), r, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
                      for r in RESOLUTIONS], artifacts)
    return schema.to_dict(doc)


def lut_doc() -> dict:
    points = []
    for backend, unit, art, entry in (
            (schema.Backend.ONNX, "CPUExecutionProvider", "onnx/model_fp32_32.onnx", "model_fp32_{r}.onnx"),
            (schema.Backend.EXECUTORCH, "XNNPACK", "executorch/model_fp32.pte", "forward_{r}")):
        for r in RESOLUTIONS:
            points.append(schema.OperatingPoint(
                r, backend, schema.Precision.FP32, unit, art, entry.format(r=r), 1000 * r * r, 5000, 4096, 3,
                top1=0.5 + r / 100, top1_data=schema.DataIdentity("synthetic", "val", 32),
                latency={"host": [schema.Latency("onnxruntime" if backend is schema.Backend.ONNX else "executorch", 1, 10,
                                            r / 10, r / 9, r / 8)]}))
    device = schema.Device({"cpu": "test"}, 50.0, [schema.SwitchCost("executorch", schema.Precision.FP32, 0.1, 0.2, 3.0, 0.05)])
    return schema.to_dict(schema.LUT(points, {"host": device}))


def write_bundle(root: Path, manifest=None, table=None, files=None) -> Path:
    """Write a bundle folder: artifact files, manifest.json and lut.json (defaults: the valid crafted bundle)."""
    files = files if files is not None else default_files()
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "manifest.json").write_text(json.dumps(manifest if manifest is not None else manifest_doc(files)))
    (root / "lut.json").write_text(json.dumps(table if table is not None else lut_doc()))
    return root


def default_files() -> dict[str, bytes]:
    files = {f"onnx/model_fp32_{r}.onnx": f"onnx model {r}".encode() for r in RESOLUTIONS}
    files["executorch/model_fp32.pte"] = b"pte program"
    return files


@pytest.fixture
def crafted(tmp_path):
    """`crafted(name="b", manifest=None, lut=None, files=None)` → a written bundle folder under tmp_path."""

    def build(name: str = "b", manifest=None, lut=None, files=None) -> Path:
        return write_bundle(tmp_path / name, manifest, lut, files)

    return build


class Docs:
    """The crafted documents as plain dicts (test modules cannot import conftest under --import-mode=importlib)."""

    files = staticmethod(default_files)
    lut = staticmethod(lut_doc)
    manifest_for = staticmethod(manifest_doc)
    write_bundle = staticmethod(write_bundle)

    @staticmethod
    def manifest() -> dict:
        return manifest_doc(default_files())


@pytest.fixture
def docs():
    return Docs
