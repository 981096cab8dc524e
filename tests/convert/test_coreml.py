"""Core ML backend: one multifunction package per precision, checked structurally (Core ML cannot run on
Linux) and numerically with the MIL reference evaluator."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

from resflex.convert.bake import bake  # noqa: E402
from resflex.convert.backends.coreml import (  # noqa: E402
    CoreMLBackend,
    ReferenceRunner,
    inspect_coreml,
)
from resflex.mobile.bundle.io import size_of  # noqa: E402
from resflex.mobile.models import create_model  # noqa: E402

RESOLUTIONS = (32, 24, 16)


def tiny_model(width: float = 0.5, resolutions=RESOLUTIONS):
    """tiny_cnn with BN statistics that differ per resolution (fresh BNs would all be identical), some
    with a negative scale."""
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", resolutions, width=width, num_classes=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5).mul_(torch.where(torch.rand(m.num_features) < 0.25, -1.0, 1.0))
                m.bias.uniform_(-1, 1)
    return model.eval()


def baked(model, resolutions=RESOLUTIONS, bn=CoreMLBackend.bn_style):
    return {r: bake(model, r, bn=bn) for r in resolutions}


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model()
    return baked(model)


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """precision → (Exported, package path, inspect_coreml of it)."""
    out = tmp_path_factory.mktemp("coreml")
    result = {}
    for precision in CoreMLBackend.precisions:
        ex = CoreMLBackend().export(tiny, precision, {}, out)
        path = out / ex.files[0]
        result[precision] = (ex, path, inspect_coreml(path))
    return result


def test_backend_attributes():
    assert CoreMLBackend.name == "coreml"
    assert CoreMLBackend.precisions == ("fp16", "int8", "int4")
    assert CoreMLBackend.bn_style in ("keep", "fold", "affine")


@pytest.mark.parametrize("precision", CoreMLBackend.precisions)
def test_one_package_with_a_function_per_resolution(exported, precision):
    ex, path, info = exported[precision]
    assert ex.files == (f"model_{precision}.mlpackage",) and path.is_dir()
    assert ex.backend == "coreml" and ex.precision == precision and ex.layout == "NCHW"
    assert set(info["functions"]) == {"forward_32", "forward_24", "forward_16"}
    assert info["default_function"] == "forward_32"
    assert [(e.resolution, e.name, e.input_name, e.output_name, e.input_shape) for e in ex.entries] == [
        (r, f"forward_{r}", "image", "logits", (1, 3, r, r)) for r in RESOLUTIONS]
    for r in RESOLUTIONS:
        fn = info["functions"][f"forward_{r}"]
        assert fn["inputs"] == [{"name": "image", "shape": (1, 3, r, r), "dtype": "fp32"}]
        assert fn["outputs"] == [{"name": "logits", "shape": (1, 4), "dtype": "fp32"}]


@pytest.mark.parametrize("precision", CoreMLBackend.precisions)
def test_bn_lives_in_the_weight_scales(exported, precision):
    """Each function's BN is its convs' per-channel weight scale and bias: no BN / mul / add op is left,
    yet the weight data is not folded (see test_weights_are_stored_once)."""
    _, _, info = exported[precision]
    for fn in info["functions"].values():
        assert {"conv", "relu", "linear", "constexpr_blockwise_shift_scale"} <= fn["op_types"]
        assert fn["op_counts"]["conv"] == 3
        assert not {"batch_norm", "mul", "add"} & fn["op_types"]


def test_weight_dtypes(exported):
    fp16, int8 = exported["fp16"][2], exported["int8"][2]
    for fn in fp16["functions"].values():
        assert fn["weight_dtypes"]["int8"] == 0 and fn["const_dtypes"]["int8"] == 0
        assert fn["weight_dtypes"]["fp16"] > 0 and set(fn["weight_dtypes"]) == {"fp16"}
    for fn in int8["functions"].values():
        assert fn["weight_dtypes"]["int8"] == 4  # 3 convs + the classifier, per output channel
        assert "constexpr_blockwise_shift_scale" in fn["op_types"]
    assert int8["weight_file_bytes"] < fp16["weight_file_bytes"]
    int4 = exported["int4"][2]
    for fn in int4["functions"].values():
        assert fn["weight_dtypes"]["int4"] == 4 and fn["weight_dtypes"]["int8"] == 0
    assert int4["weight_file_bytes"] < int8["weight_file_bytes"]


@pytest.mark.parametrize("precision", CoreMLBackend.precisions)
def test_weights_are_stored_once(exported, precision):
    """The 4 weight tensors (3 convs + classifier) are stored once; what each function owns is its BN."""
    _, _, info = exported[precision]
    weights = info["weights"]
    per_function = [sum(fn["weight_dtypes"].values()) for fn in info["functions"].values()]
    assert weights["references"] == sum(per_function)
    assert weights["unique"] == weights["references"] - 2 * 4  # 3 functions, 4 shared tensors
    if precision in ("int8", "int4"):
        assert weights["unique_dtypes"][precision] == 4


@pytest.mark.parametrize("precision", CoreMLBackend.precisions)
def test_reference_evaluation_matches_torch(exported, tiny, precision):
    """The MIL program, evaluated in torch, computes what the baked module computes (fp16 / int8 noise; int4: the
    module with its shared weights on the per-channel int4 grid, so each function keeps its own BN)."""
    ex, path, _ = exported[precision]
    runner = ReferenceRunner(path)
    for entry in ex.entries:
        x = torch.randn(4, 3, entry.resolution, entry.resolution)
        module = CoreMLBackend.parity_reference(tiny[entry.resolution], precision)
        ref = module(x).numpy()
        got = runner.run(entry, x.numpy())
        one_at_a_time = runner.run(entry, x.numpy(), batch=1)  # the program's own batch size
        assert got.shape == ref.shape and np.allclose(got, one_at_a_time, rtol=0, atol=1e-5)
        rel = np.abs(got - ref).max() / np.abs(ref).max()
        assert rel < (2e-3 if precision == "fp16" else 3e-2), (entry.name, rel)


def test_not_run_on_linux(exported):
    for ex, path, _ in exported.values():
        assert ex.runs_on_host is (sys.platform == "darwin")
        runner = CoreMLBackend().runner(ex, path.parent)
        if sys.platform != "darwin":
            assert runner is None
            assert "checked structurally" in ex.notes


@pytest.mark.parametrize("precision", CoreMLBackend.precisions)
def test_three_resolutions_cost_at_most_15_percent_more(tmp_path, precision):
    """Shared weights: 3 functions ≤ 1.15× one function. A model whose weights outweigh the program text
    (tiny_cnn width 4: 220k parameters); at width 0.5 (5k parameters) the text of each function dominates."""
    model = tiny_model(width=4.0)
    backend = CoreMLBackend()
    one = backend.export(baked(model, (32,)), precision, {}, tmp_path / "one")
    three = backend.export(baked(model), precision, {}, tmp_path / "three")
    ratio = size_of(tmp_path / "three" / three.files[0]) / size_of(tmp_path / "one" / one.files[0])
    assert ratio <= 1.15, ratio


def test_w8a8(tmp_path):
    model = tiny_model()
    resolutions = (32, 16)
    modules = baked(model, resolutions)
    calib = {r: torch.randn(8, 3, r, r) for r in resolutions}
    ex = CoreMLBackend(w8a8=True, calib_samples=8).export(modules, "int8", calib, tmp_path)
    info = inspect_coreml(tmp_path / ex.files[0])
    assert set(info["functions"]) == {"forward_32", "forward_16"}
    for fn in info["functions"].values():
        assert {"quantize", "dequantize"} <= fn["op_types"]
        assert fn["weight_dtypes"]["int8"] == 4
    assert info["weights"]["unique_dtypes"]["int8"] == 4
    assert "W8A8" in ex.notes
    runner = ReferenceRunner(tmp_path / ex.files[0])
    for entry in ex.entries:
        x = calib[entry.resolution]
        ref = modules[entry.resolution](x).numpy()
        got = runner.run(entry, x.numpy())
        assert np.abs(got - ref).max() / np.abs(ref).max() < 0.1


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match="fp16, int8"):
        CoreMLBackend().export(tiny, "fp32", {}, tmp_path)
    with pytest.raises(ValueError, match="calibration data"):
        CoreMLBackend(w8a8=True).export(tiny, "int8", {32: torch.randn(2, 3, 32, 32)}, tmp_path)
    with pytest.raises(ValueError, match="at least one resolution"):
        CoreMLBackend().export({}, "fp16", {}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_convert_fills_the_lut_with_the_reference_evaluator(tmp_path):
    """Off macOS, convert checks every Core ML function with the MIL reference evaluator: the manifest's parity
    names that evaluator, the artifact is still 'not run on host', and the LUT gets each point's top-1."""
    from resflex.convert.pipeline import ConvertConfig, convert
    from resflex.mobile.bundle.schema import Evaluator
    from resflex.mobile.checkpoint import save_checkpoint

    names = ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"]
    ckpt = save_checkpoint(tmp_path / "ckpt" / "checkpoint.pt", tiny_model(), names)
    result = convert(ConvertConfig(str(ckpt), str(tmp_path / "b"), backends=("coreml",), precisions=("fp16", "int4"),
                                   calib_samples=8, val_samples=24, progress=False))
    by_precision = {a.precision.value: a for a in result.manifest.artifacts}
    assert set(by_precision) == {"fp16", "int4"}
    for art in by_precision.values():
        assert art.runs_on_host is (sys.platform == "darwin")
        assert [p.resolution for p in art.parity] == list(RESOLUTIONS) and all(p.samples == 24 for p in art.parity)
        assert all(p.evaluator is (Evaluator.RUNTIME if art.runs_on_host else Evaluator.MIL_REFERENCE)
                   for p in art.parity)
        # fp16 against the float module, int4 against the module on the int4 grid: the conversion is faithful
        assert all(p.passed and p.top1_agreement >= 0.99 for p in art.parity), art.parity
    points = result.lut.operating_points
    assert points and all(op.top1 is not None and 0 <= op.top1 <= 1 for op in points)
    top1 = {(op.precision.value, op.resolution): op.top1 for op in points}
    parity = {(a.precision.value, p.resolution): p.top1_artifact for a in by_precision.values() for p in a.parity}
    assert top1 == parity
