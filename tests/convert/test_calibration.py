"""int8 calibration methods: each runs through the backend's real quantizer, the manifest records the choice, a bad
choice is a clear error, a small calibration set a warning with the count used."""

import json
import warnings

import numpy as np
import pytest
import torch

from resflex.cli.main import main
from resflex.convert.backends.base import check_calib_method
from resflex.convert.backends.executorch import CALIB_METHODS as ET_METHODS
from resflex.convert.backends.executorch import ExecuTorchBackend
from resflex.convert.backends.onnx import CALIB_METHODS as ONNX_METHODS
from resflex.convert.backends.onnx import OnnxBackend
from resflex.convert.bake import bake
from resflex.convert.pipeline import ConvertConfig, calib_methods, convert
from resflex.mobile.bundle.io import Bundle
from resflex.mobile.bundle.schema import Calibration, Manifest, from_dict, to_dict

RES = (32, 24, 16)
CLASSES = ["a-class", "b-class", "c-class", "d-class"]  # sorted, as an ImageFolder lists its class folders


def _calib(n=24):
    g = torch.Generator().manual_seed(0)
    return {r: torch.randn(n, 3, r, r, generator=g) for r in RES}


def _agreement(module, runner, entry, x):
    with torch.no_grad():
        ref = module(x).numpy()
    return float((runner.run(entry, x.numpy()).argmax(1) == ref.argmax(1)).mean())


@pytest.mark.parametrize("backend, method", [(ExecuTorchBackend, m) for m in ET_METHODS] +
                         [(OnnxBackend, m) for m in ONNX_METHODS])
def test_every_method_runs_the_backends_quantizer(backend, method, tiny_model, tmp_path):
    """ExecuTorch: the PT2E quantizer's observers; ONNX: quantize_static's calibrators."""
    baked = {r: bake(tiny_model, r, bn="affine") for r in RES[:2]}
    be = backend(calib_method=method)
    exported = be.export(baked, "int8", _calib(), tmp_path)
    runner = be.runner(exported, tmp_path)
    for e in exported.entries:
        x = _calib(8)[e.resolution] + 0.1
        out = runner.run(e, x.numpy())
        assert out.shape == (8, 4) and np.isfinite(out).all()
        assert _agreement(baked[e.resolution], runner, e, x) >= 0.5


def test_executorch_observer_changes_the_quantization(tiny_model):
    from resflex.convert.backends.executorch import _quantized

    module, calib = bake(tiny_model, 32, bn="fold"), _calib(32)[32] * 3  # wide activations: the observers differ
    scales = {}
    for method in ("minmax", "histogram"):
        graph = _quantized(module, 32, calib, method)
        scales[method] = [float(n.args[1]) for n in graph.graph.nodes  # activation scales (literals in the graph)
                          if "quantize_per_tensor" in str(n.target) and isinstance(n.args[1], float)]
    assert len(scales["minmax"]) == len(scales["histogram"]) > 0
    assert scales["minmax"] != scales["histogram"]


def test_onnx_methods_give_different_ranges(tiny_model, tmp_path):
    from resflex.convert.backends.onnx import _quantize

    module, calib = bake(tiny_model, 32, bn="affine"), _calib(32)[32] * 2
    graphs = {m: _quantize(module, 32, calib, tmp_path, m, m)[0].SerializeToString() for m in ONNX_METHODS}
    assert len(set(graphs.values())) == len(ONNX_METHODS)


def test_unknown_method_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="'kl' is not available for backend 'executorch'; expected one of: "
                                         "histogram, minmax, moving_average"):
        ExecuTorchBackend(calib_method="kl")
    with pytest.raises(ValueError, match="expected one of: " + ", ".join(ONNX_METHODS)):
        OnnxBackend(calib_method="histogram")
    assert check_calib_method("x", None, ("a", "b")) == "a"
    et, onnx = ExecuTorchBackend(), OnnxBackend()
    assert calib_methods(None, [et, onnx]) == {et: ET_METHODS[0], onnx: ONNX_METHODS[0]}
    assert calib_methods("minmax", [et, onnx]) == {et: "minmax", onnx: "minmax"}
    assert calib_methods("onnx=percentile", [et, onnx]) == {et: ET_METHODS[0], onnx: "percentile"}
    with pytest.raises(ValueError, match="'percentile' is not offered by executorch .*executorch: histogram"):
        calib_methods("percentile", [et, onnx])
    with pytest.raises(ValueError, match="onnx offers .*, not 'histogram'"):
        calib_methods("onnx=histogram", [et, onnx])
    with pytest.raises(ValueError, match="backend 'tflite' is not being converted"):
        calib_methods("tflite=minmax", [et, onnx])


def test_cli_rejects_an_unknown_method(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["convert", str(tiny_checkpoint), "--out", "b", "--backends", "onnx", "--calib-method", "onnx=mse",
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"onnx offers {', '.join(ONNX_METHODS)}, not 'mse'" in err
    assert not (tmp_path / "b").exists()


def test_manifest_records_the_method_and_samples(tiny_checkpoint, tmp_path):
    result = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), backends=("onnx",),
                                   precisions=("fp32", "int8"), calib_samples=16, val_samples=16, progress=False,
                                   calib_method="percentile"))
    by_precision = {a.precision.value: a for a in Bundle.open(tmp_path / "b").manifest.artifacts}
    assert by_precision["int8"].calibration == Calibration("percentile", 16)
    assert by_precision["fp32"].calibration is None
    assert result.manifest.artifacts == list(by_precision.values())


def test_small_calibration_set_warns_with_the_count_used(tiny_model, tmp_path):
    from PIL import Image

    from resflex.mobile.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", tiny_model, CLASSES)
    g = torch.Generator().manual_seed(0)
    for split, per_class in (("train", 2), ("val", 3)):
        for c, name in enumerate(CLASSES):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = (torch.rand(40, 48, 3, generator=g) * 255 * (c + 1) / 4).byte().numpy()
                Image.fromarray(pixels).save(tmp_path / "data" / split / name / f"{i}.png")
    with pytest.warns(UserWarning, match="has 8 images, fewer than the 64 asked .*calibrated on 8 per resolution"):
        result = convert(ConvertConfig(str(checkpoint), str(tmp_path / "b"), backends=("onnx",),
                                       precisions=("int8",), data=str(tmp_path / "data"), calib_samples=64,
                                       val_samples=12, progress=False, keep_going=True))
    assert result.manifest.artifacts[0].calibration.samples == 8
    with warnings.catch_warnings():  # enough images: no warning
        warnings.simplefilter("error")
        convert(ConvertConfig(str(checkpoint), str(tmp_path / "c"), backends=("onnx",), precisions=("int8",),
                              data=str(tmp_path / "data"), calib_samples=8, val_samples=12, progress=False,
                              keep_going=True))


def test_old_manifests_without_calibration_still_read(tiny_checkpoint, tmp_path):
    convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), backends=("onnx",), precisions=("int8",),
                          calib_samples=8, val_samples=8, progress=False, keep_going=True))
    data = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert data["artifacts"][0]["calibration"] == {"method": ONNX_METHODS[0], "samples": 8, "source": "images",
                                                   "points_from_qat": None, "points_from_images": None}
    data["artifacts"][0]["calibration"] = {"method": "minmax", "samples": 8}  # before --calib-from: images
    assert from_dict(Manifest, data).artifacts[0].calibration == Calibration("minmax", 8, "images")
    data["artifacts"][0]["calibration"] = {"method": "minmax", "samples": 8, "source": "training"}
    with pytest.raises(ValueError, match=r"calibration.source: 'training' does not match"):
        from_dict(Manifest, data, "manifest.json")
    data["artifacts"][0]["calibration"] = {"method": "minmax", "samples": 8, "source": "qat", "points_from_qat": -1}
    with pytest.raises(ValueError, match=r"calibration.points_from_qat: -1 is out of range"):
        from_dict(Manifest, data, "manifest.json")
    del data["artifacts"][0]["calibration"]
    assert from_dict(Manifest, data).artifacts[0].calibration is None
    data["artifacts"][0]["calibration"] = {"method": "Bad Method", "samples": 8}
    with pytest.raises(ValueError, match=r"calibration.method: 'Bad Method' does not match"):
        from_dict(Manifest, data, "manifest.json")
    data["artifacts"][0]["calibration"] = {"method": "minmax", "samples": 0}
    with pytest.raises(ValueError, match=r"calibration.samples: 0 is out of range"):
        from_dict(Manifest, data, "manifest.json")
    assert to_dict(from_dict(Manifest, {**data, "artifacts": []}))["artifacts"] == []
