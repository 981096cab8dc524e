"""A backend's exports in a child process (what `convert` does for Core ML on two or more cores)."""

import pytest
import torch

from resflex.convert.background import BackgroundExport
from resflex.convert.backends.onnx import OnnxBackend
from resflex.convert.bake import bake


def test_exports_in_a_child_process_match_in_process_ones(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    baked = {r: bake(tiny_model, r, "interpolate", "ideal", "fold") for r in (32, 16)}
    calib = {r: torch.randn(4, 3, r, r) for r in baked}
    job = BackgroundExport.start(OnnxBackend(), baked, ("fp32", "int8"), calib, tmp_path / "child")
    here = OnnxBackend().export(baked, "fp32", calib, tmp_path / "here")
    assert job.exported("fp32") == here and set(job.seconds) == {"fp32", "int8"}
    assert job.exported("int8").files == ("model_int8_32.onnx", "model_int8_16.onnx", "weights_int8.bin")
    child, here_file = tmp_path / "child" / "model_fp32_32.onnx", tmp_path / "here" / "model_fp32_32.onnx"
    assert child.read_bytes() == here_file.read_bytes()
    weights = [tmp_path / side / "weights_fp32.bin" for side in ("child", "here")]
    assert weights[0].read_bytes() == weights[1].read_bytes()
    assert not job.work.exists()  # its working folder is gone


def test_a_failing_precision_is_reported_and_the_others_kept(tiny_model, tmp_path):
    baked = {16: bake(tiny_model, 16, "interpolate", "ideal", "fold")}
    job = BackgroundExport.start(OnnxBackend(), baked, ("fp32", "int8"), {}, tmp_path)  # int8 without calibration
    assert job.exported("fp32").files == ("model_fp32_16.onnx", "weights_fp32.bin")
    with pytest.raises(RuntimeError, match="KeyError"):
        job.exported("int8")
