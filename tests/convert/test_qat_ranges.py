"""`convert --calib-from qat`: the activation ranges `train --qat` learned reach the int8 quantizers (ExecuTorch's PT2E
observers, ONNX Runtime's TensorQuantOverrides) at the points they cover; the rest are calibrated on images; the
manifest records which, per artifact."""

import numpy as np
import pytest
import torch

from resflex.convert.backends.onnx import _module_scopes
from resflex.convert.bake import bake
from resflex.convert.pipeline import ConvertConfig, convert
from resflex.convert.qat_ranges import RangeUse, last_values_of
from resflex.mobile.checkpoint import qat_ranges, read_checkpoint, save_checkpoint
from resflex.mobile.qat import INPUT_POINT, enable_qat

RES = (32, 24, 16)
NAMES = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
INPUT_RANGE = (-7.0, 9.0)  # far from what the calibration images give, so the scale tells where it came from


def qat_table(model, resolutions=RES) -> dict:
    """The range table of one QAT forward pass per resolution (what `train --qat` saves)."""
    qat = enable_qat(model)
    model.train()
    with torch.no_grad():
        for r in resolutions:
            model.set_resolution(r)
            model(torch.randn(8, 3, r, r))
    table = qat.range_table()
    qat.remove()
    model.eval()
    return table


def ranges_at(table, r, input_range=INPUT_RANGE):
    out = qat_ranges({"qat_ranges": table})[r]
    return {**out, INPUT_POINT: input_range}


def test_a_point_is_the_last_value_computed_in_its_module():
    values = [("x", set()), ("conv", {"a", "a.0"}), ("relu", {"a", "a.2"}), ("add", {"b"}), ("fc", {"c"})]
    assert last_values_of(values, ["a", "c", INPUT_POINT, "missing"]) == {"relu": "a", "fc": "c"}
    assert _module_scopes("/features/features.2/block/block.0/block.0.0/Conv") == {
        "features", "features.2", "features.2.block", "features.2.block.0", "features.2.block.0.0"}
    assert _module_scopes("/Flatten") == set()


def test_executorch_observers_take_the_qat_ranges(tiny_model):
    from resflex.convert.backends.executorch import _quantized

    ranges = ranges_at(qat_table(tiny_model), 32)
    module, calib = bake(tiny_model, 32, bn="fold"), torch.randn(16, 3, 32, 32)
    use = []
    graph = _quantized(module, 32, calib, "histogram", ranges, use)
    placeholder = next(n for n in graph.graph.nodes if n.op == "placeholder")
    quant = next(n for n in placeholder.users if "quantize_per_tensor" in str(n.target))
    lo, hi = INPUT_RANGE
    assert quant.args[1] == pytest.approx((hi - lo) / 255, rel=1e-6)  # QAT's input range, not the images'
    assert quant.args[2] == -128 - round(lo / ((hi - lo) / 255))
    assert use == [RangeUse(4, 2)]  # input, 3 conv-BN-ReLU units from QAT; the pool and flatten from images (the
    # logits stay float: the classifier's input is quantized at run time)


def test_onnx_quantizer_takes_the_qat_ranges(tiny_model, tmp_path):
    from onnx import numpy_helper

    from resflex.convert.backends.onnx import _quantize

    ranges = ranges_at(qat_table(tiny_model), 24)
    use = []
    model, _ = _quantize(bake(tiny_model, 24, bn="affine"), 24, torch.randn(16, 3, 24, 24), tmp_path,
                         ranges=ranges, use=use)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q_input = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image")
    lo, hi = INPUT_RANGE
    assert float(inits[q_input.input[1]]) == pytest.approx((hi - lo) / 255, rel=1e-6)
    assert int(inits[q_input.input[2]]) == round(-lo / ((hi - lo) / 255))  # uint8 activations
    assert use == [RangeUse(4, 2)]  # input, 3 conv-BN-ReLU units; the pool and flatten from the images (the
    # logits stay float)


@pytest.mark.slow
def test_convert_records_qat_ranges_per_artifact(tiny_model, tmp_path):
    table = qat_table(tiny_model)
    ckpt = save_checkpoint(tmp_path / "qat.pt", tiny_model, NAMES, qat_ranges=table)
    assert set(qat_ranges(read_checkpoint(ckpt))) == set(RES)
    result = convert(ConvertConfig(checkpoint=str(ckpt), out=str(tmp_path / "b"), backends=("onnx",),
                                   precisions=("int8",), resolutions=(24, 16), calib_samples=16, val_samples=16,
                                   progress=False))  # --calib-from auto: the checkpoint has ranges
    (artifact,) = result.manifest.artifacts
    c = artifact.calibration
    assert (c.source, c.points_from_qat, c.points_from_images) == ("qat", 8, 4)  # per resolution: 4 + 2
    assert all(np.isfinite(p.max_rel_error) for p in artifact.parity)
    images = convert(ConvertConfig(checkpoint=str(ckpt), out=str(tmp_path / "i"), backends=("onnx",),
                                   precisions=("int8",), resolutions=(24, 16), calib_samples=16, val_samples=16,
                                   calib_from="images", progress=False))
    c = images.manifest.artifacts[0].calibration
    assert (c.source, c.points_from_qat, c.points_from_images) == ("images", None, None)
