"""ONNX backend: every resolution's graph references ONE shared weights file through ONNX external data."""

import json

import numpy as np
import pytest
import torch

from resflex.convert.backends.onnx import OnnxBackend, weights_file
from resflex.convert.bake import bake
from resflex.convert.pipeline import ConvertConfig, convert
from resflex.mobile.bundle.io import Bundle
from resflex.mobile.bundle.schema import SchemaError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = dict(backends=("onnx",), calib_samples=16, val_samples=32, progress=False)


def _export(model, resolutions, precision, out):
    baked = {r: bake(model, r, "interpolate", "ideal", OnnxBackend.bn_style) for r in resolutions}
    calib = {r: torch.randn(8, 3, r, r, generator=torch.Generator().manual_seed(r)) for r in resolutions}
    exported = OnnxBackend().export(baked, precision, calib, out)
    return exported, baked, sum((out / f).stat().st_size for f in exported.files)


def _conv_weights(path):
    """Where each conv's weight (fp32, or the int8 values its DequantizeLinear reads) lives, in node order:
    (location, offset, length) for an external tensor, None for one inside the graph."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        w = n.input[1]
        if w not in inits:
            w = producer[w].input[0]  # DequantizeLinear(int8 values, scale, zero point)
        t = inits[w]
        info = {e.key: e.value for e in t.external_data}
        out.append((info["location"], int(info.get("offset", 0)), int(info["length"]))
                   if t.data_location == onnx.TensorProto.EXTERNAL else None)
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_resolutions_share_one_weights_file(tiny_model, tmp_path, precision):
    exported, baked, total = _export(tiny_model, (32, 24, 16), precision, tmp_path / "three")
    one = _export(tiny_model, (32,), precision, tmp_path / "one")[2]
    weights = weights_file(precision)
    assert exported.files[-1] == weights and sorted(p.name for p in (tmp_path / "three").iterdir()) == sorted(
        exported.files)  # no temporaries left
    # every conv weight (fp32 values, or int8 values re-quantized from the unfolded weight) is stored once, in the
    # shared file, and every resolution's graph points at the same bytes
    graphs = [_conv_weights(tmp_path / "three" / e.name) for e in exported.entries]
    external = [w for w in graphs[0] if w is not None]  # the smallest stay in each graph (cheaper than a reference)
    assert len(graphs[0]) == 3 and len(external) >= 2 and all(w[0] == weights for w in external)
    assert graphs[0] == graphs[1] == graphs[2]
    shared = (tmp_path / "three" / weights).stat().st_size
    assert shared < 1.2 * one  # three resolutions' weights ≈ one resolution's artifact
    assert total < (1.6 if precision == "fp32" else 2.6) * one  # 3 full files would be 3×
    runner = OnnxBackend().runner(exported, tmp_path / "three")
    for e in exported.entries:
        x = torch.randn(4, 3, e.resolution, e.resolution, generator=torch.Generator().manual_seed(0))
        ref = baked[e.resolution](x).numpy()
        err = np.abs(runner.run(e, x.numpy()) - ref).max() / np.abs(ref).max()
        assert err <= (1e-4 if precision == "fp32" else 0.2), (e.resolution, err)


def test_int8_matches_quantizing_the_folded_graph(tiny_model, tmp_path):
    """Re-quantizing from the unfolded weight gives the same int8 graph as quantize_static on the folded one, up
    to rounding: the shared artifact's outputs stay within one quantization step of the plain per-resolution one."""
    from resflex.convert.backends import onnx as backend

    baked = bake(tiny_model, 24, "interpolate", "ideal", "affine")
    calib = torch.randn(8, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    model, flipped = backend._quantize(baked, 24, calib, tmp_path)
    assert flipped == 0  # randomize_bn draws γ > 0
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}  # before compact(): torch's names
    w = bake(tiny_model, 24, "interpolate", "ideal", "fold").features[1][0].weight.numpy()
    q, s = inits["features.1.0.weight_quantized"], inits["features.1.0.weight_scale"]
    assert q.dtype == np.int8 and np.abs(q.astype(np.float32) * s.reshape(-1, 1, 1, 1) - w).max() <= 0.51 * s.max()


def test_bundle_lists_and_verifies_the_weights_file(tiny_checkpoint, tmp_path):
    result = convert(ConvertConfig(str(tiny_checkpoint), str(tmp_path / "b"), precisions=("fp32", "int8"), **FAST))
    assert result.ok
    for art in result.manifest.artifacts:
        weights = f"onnx/{weights_file(art.precision.value)}"
        (ref,) = [x for x in art.extra_files if x.file == weights]
        assert ref.bytes == (tmp_path / "b" / weights).stat().st_size and len(ref.sha256) == 64
        assert art.bytes == sum((tmp_path / "b" / f).stat().st_size
                                for f in (art.file, *(x.file for x in art.extra_files)))
        assert {op.artifact_bytes for op in result.lut.operating_points if op.artifact == art.file} == {art.bytes}
        assert all(p.passed for p in art.parity)
    assert all(p.max_rel_error <= 1e-4 for p in result.manifest.artifacts[0].parity)
    Bundle.open(tmp_path / "b")

    victim = tmp_path / "b" / "onnx" / "weights_int8.bin"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(SchemaError, match="checksum mismatch for onnx/weights_int8.bin"):
        Bundle.open(tmp_path / "b")
    victim.unlink()
    with pytest.raises(SchemaError, match="onnx/weights_int8.bin listed in manifest.json is missing"):
        Bundle.open(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert any(x["file"] == "onnx/weights_fp32.bin" for x in manifest["artifacts"][0]["extra_files"])


def test_negative_bn_scales_keep_int8_exact_and_shared(tiny_model, tmp_path):
    """A channel whose BN scale is negative gets its int8 values negated (scales stay positive): still the folded
    graph's numbers, and still shared between resolutions whose signs agree."""
    with torch.no_grad():
        for m in tiny_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight[:3] *= -1  # the same channels at every resolution
    exported, baked, _ = _export(tiny_model, (32, 16), "int8", tmp_path)
    assert "negative BN scale" in exported.notes
    graphs = [_conv_weights(tmp_path / e.name) for e in exported.entries]
    assert graphs[0] == graphs[1] and sum(w is not None for w in graphs[0]) >= 2
    runner = OnnxBackend().runner(exported, tmp_path)
    for e in exported.entries:
        x = torch.randn(8, 3, e.resolution, e.resolution, generator=torch.Generator().manual_seed(e.resolution))
        ref = baked[e.resolution](x).numpy()
        assert np.abs(runner.run(e, x.numpy()) - ref).max() / np.abs(ref).max() <= 0.2


def test_int8_stores_8_bytes_per_channel_and_still_fuses(tiny_model, tmp_path):
    """Each resolution keeps only its weight scale and int32 bias per channel: the bias scale is a Mul of the input
    and weight scales (folded by ONNX Runtime at session creation), the all-zero zero points are left out, every
    conv still fuses into QLinearConv, and the outputs equal those of the graph with the bias scales stored."""
    import onnxruntime as ort

    exported, _, _ = _export(tiny_model, (32, 16), "int8", tmp_path)
    model = onnx.load(str(tmp_path / exported.entries[0].name), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        x_dq, w_dq, b_dq = (producer[i] for i in conv.input)
        assert len(w_dq.input) == len(b_dq.input) == 2  # no zero points
        mul = producer[b_dq.input[1]]
        assert mul.op_type == "Mul" and list(mul.input) == [x_dq.input[1], w_dq.input[1]]

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(tmp_path / exported.entries[0].name), options,
                                   providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"), load_external_data=False)
    assert sum(n.op_type == "QLinearConv" for n in optimized.graph.node) == len(convs)

    # the same numbers as the old form, which stored each bias scale as a float32 constant
    from onnx import numpy_helper

    stored = onnx.load(str(tmp_path / exported.entries[0].name))  # external data loaded
    inits = {t.name: numpy_helper.to_array(t) for t in stored.graph.initializer}
    muls = [n for n in stored.graph.node if n.op_type == "Mul" and n.output[0] not in inits
            and all(i in inits for i in n.input)]
    for mul in muls:
        a, b = (inits[i].astype(np.float32) for i in mul.input)
        stored.graph.initializer.append(numpy_helper.from_array((a * b).astype(np.float32), mul.output[0]))
        stored.graph.node.remove(mul)
    old_form = ort.InferenceSession(stored.SerializeToString(), providers=["CPUExecutionProvider"])
    r = exported.entries[0].resolution
    x = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0)).numpy()
    assert len(muls) == len(convs)
    assert np.array_equal(session.run(None, {"image": x})[0], old_form.run(None, {"image": x})[0])


def test_int8_conv_runs_exactly_where_u8s8_pair_sums_saturate(tmp_path):
    """A QDQ conv whose int8 products overflow 16-bit pair sums (activation 64 → uint8 192, weights 127): on x86
    without VNNI ONNX Runtime's default U8S8 kernel saturates them (this output came out 1 instead of 73, and a tiny
    net's int8 parity at 16 px lost an image); the host runtime's sessions compute the exact integer result."""
    from onnx import TensorProto, helper, numpy_helper

    from resflex.convert.backends.base import Entry
    from resflex.convert.runtimes import OnnxRuntime

    c, o = 16, 4
    init = [numpy_helper.from_array(np.array(1 / 127, np.float32), "xs"),
            numpy_helper.from_array(np.array(0, np.int8), "xz"),
            numpy_helper.from_array(np.full((o, c, 3, 3), 127, np.int8), "w"),
            numpy_helper.from_array(np.full(o, 1 / 127, np.float32), "ws"),
            numpy_helper.from_array(np.array(1.0, np.float32), "ys"),
            numpy_helper.from_array(np.array(0, np.int8), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["image", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "ws"], ["wf"], axis=0),
             helper.make_node("Conv", ["xf", "wf"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, c, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, o, 4, 4])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "conv.onnx"))
    x = np.full((1, c, 4, 4), 0.5, np.float32)  # quantized to 64
    got = OnnxRuntime(tmp_path / "conv.onnx").run(Entry(4, "conv.onnx", "image", "logits", (1, c, 4, 4)), x)
    exact = np.array([[32, 48, 48, 32], [48, 73, 73, 48], [48, 73, 73, 48], [32, 48, 48, 32]], np.float32)
    assert np.array_equal(got.reshape(1, o, 4, 4)[0, 0], exact)  # 64 · 127 · (9, 6 or 4 taps) · 16 channels / 127²


def test_int8_residual_network_runs_fully_integer(tmp_path, randomized):
    """MobileNetV2's residual blocks: a tensor that feeds both the next conv and the Add. With int8 activations ONNX
    Runtime (x86) left 15 of 52 convs as DQ → float Conv → Q and every Add float; with uint8 activations every conv
    is a QLinearConv and every Add a QLinearAdd."""
    import onnxruntime as ort

    from resflex.mobile.models import create_model

    model = randomized(create_model("mobilenet_v2", "rsnet", (32,), width=0.35, num_classes=10))
    exported, baked, _ = _export(model, (32,), "int8", tmp_path)
    graph = onnx.load(str(tmp_path / exported.entries[0].name), load_external_data=False).graph
    counts = {op: sum(n.op_type == op for n in graph.node) for op in ("Conv", "Add")}
    assert counts == {"Conv": 52, "Add": 10}
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(tmp_path / exported.entries[0].name), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx"), load_external_data=False).graph.node]
    assert (optimized.count("QLinearConv"), optimized.count("QLinearAdd")) == (52, 10)
    assert "Conv" not in optimized and "Add" not in optimized
    runner = OnnxBackend().runner(exported, tmp_path)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = baked[32](x).numpy()
    assert np.abs(runner.run(exported.entries[0], x.numpy()) - ref).max() / np.abs(ref).max() <= 0.2
