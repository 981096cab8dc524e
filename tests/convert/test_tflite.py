"""TFLite backend: torch → ONNX → onnx2tf (own environment) → one multi-signature .tflite, run in LiteRT.

The conversion tests need the onnx2tf environment (`bash scripts/setup-onnx2tf.sh`) and are skipped, saying so,
without it; the missing-environment message is tested everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resflex.convert import onnx2tf_env
from resflex.convert.bake import bake
from resflex.convert.backends.tflite import TFLiteBackend, signature_key
from resflex.mobile.layers import SwitchableBatchNorm2d
from resflex.mobile.models import create_model

RES = (32, 24, 16)


def _onnx2tf_missing() -> str | None:
    try:
        onnx2tf_env.find_onnx2tf()
    except RuntimeError as e:
        return f"onnx2tf environment not installed (bash scripts/setup-onnx2tf.sh): {e}"
    return None


needs_onnx2tf = pytest.mark.skipif(_onnx2tf_missing() is not None, reason=str(_onnx2tf_missing()))


def test_missing_environment_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(onnx2tf_env.ENV_VAR, str(tmp_path / "no-such-venv"))
    with pytest.raises(RuntimeError, match=r"bash scripts/setup-onnx2tf\.sh") as info:
        onnx2tf_env.find_onnx2tf()
    assert "RESFLEX_ONNX2TF_VENV" in str(info.value) and str(tmp_path / "no-such-venv") in str(info.value)
    # the backend fails the same way before doing any work
    with pytest.raises(RuntimeError, match=r"setup-onnx2tf\.sh"):
        TFLiteBackend().export({16: torch.nn.Identity()}, "fp32", {}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_without_onnx2tf_is_not_accepted(monkeypatch, tmp_path):
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    monkeypatch.setenv(onnx2tf_env.ENV_VAR, str(tmp_path / "venv"))
    with pytest.raises(RuntimeError, match="onnx2tf is not installed"):
        onnx2tf_env.find_onnx2tf()


def test_unknown_precision_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="fp32, fp16, int8"):
        TFLiteBackend().export({16: torch.nn.Identity()}, "int4", {}, tmp_path)


def _tiny_model():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", RES, width=0.5, num_classes=4)
    for layer in model.modules():
        if isinstance(layer, SwitchableBatchNorm2d):  # distinct statistics per resolution
            for bn in layer.bn:
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.normal_()
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The tiny model baked at every resolution and exported once per precision: precision → (exported, dir)."""
    if _onnx2tf_missing():
        pytest.skip(_onnx2tf_missing())
    pytest.importorskip("ai_edge_litert", reason="the LiteRT interpreter (pip install ai-edge-litert) runs .tflite")
    torch.set_num_threads(1)
    backend = TFLiteBackend(sharing="auto", size_budget=1.2)  # float: the stem folded per resolution, the rest shared
    model = _tiny_model()
    baked = {r: bake(model, r, bn=backend.bn_style) for r in RES}
    gen = torch.Generator().manual_seed(1)
    calib = {r: torch.randn(32, 3, r, r, generator=gen) for r in RES}
    out = {}
    for precision in ("fp32", "fp16", "int8"):
        folder = tmp_path_factory.mktemp(f"tflite_{precision}")
        out[precision] = (backend.export(baked, precision, calib, folder), folder)
    return backend, baked, out


def _logits(backend, exported, folder, baked, n=48):
    runner = backend.runner(exported, folder)
    gen = torch.Generator().manual_seed(2)
    for entry in exported.entries:
        x = torch.randn(n, 3, entry.resolution, entry.resolution, generator=gen)
        with torch.no_grad():
            want = baked[entry.resolution](x).numpy()
        yield entry, runner.run(entry, x.numpy()), want


@needs_onnx2tf
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_one_file_with_a_signature_per_resolution(converted, precision):
    backend, _, out = converted
    exported, folder = out[precision]
    assert exported.backend == "tflite" and exported.precision == precision and exported.layout == "NHWC"
    assert exported.files == (f"model_{precision}.tflite",) and (folder / exported.files[0]).is_file()
    assert [e.name for e in exported.entries] == [signature_key(r) for r in RES]
    runner = backend.runner(exported, folder)
    signatures = runner.signatures()
    assert sorted(signatures) == sorted(signature_key(r) for r in RES)
    for entry in exported.entries:
        assert signatures[entry.name] == {"inputs": [entry.input_name], "outputs": [entry.output_name]}
        detail = runner.interpreter.get_signature_runner(entry.name).get_input_details()[entry.input_name]
        assert tuple(detail["shape"]) == entry.input_shape == (1, entry.resolution, entry.resolution, 3)
        assert detail["dtype"] == np.float32  # int8 too keeps float input and output


@needs_onnx2tf
def test_fp32_matches_the_baked_module_at_every_resolution(converted):
    backend, baked, out = converted
    for entry, got, want in _logits(backend, *out["fp32"], baked):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), entry.name


@needs_onnx2tf
def test_fp16_is_close(converted):
    backend, baked, out = converted
    for entry, got, want in _logits(backend, *out["fp16"], baked):
        assert np.abs(got - want).max() <= 1e-2 * np.abs(want).max(), entry.name


@needs_onnx2tf
def test_int8_agrees_on_top1(converted):
    backend, baked, out = converted
    for entry, got, want in _logits(backend, *out["int8"], baked, n=64):
        assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9, entry.name


def _logits_ops(path):
    """signature key → (producer of the signature's output, its builtin code, its opcode version, its input tensors,
    its output tensor)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    result = {}
    for sig in model.signatureDefs:
        graph = model.subgraphs[sig.subgraphIndex]
        (out,) = sig.outputs
        op = next(op for op in graph.operators if int(out.tensorIndex) in op.outputs)
        code = model.operatorCodes[op.opcodeIndex]
        result[sig.signatureKey.decode()] = (op, max(code.builtinCode, code.deprecatedBuiltinCode), code.version,
                                             [graph.tensors[i] for i in op.inputs], graph.tensors[op.outputs[0]])
    return result


@needs_onnx2tf
def test_int8_logits_are_the_classifier_fully_connecteds_float_output(converted):
    """Both int8 files: the classifier's FULLY_CONNECTED runs hybrid (float input and logits, the int8 filter stored
    once for every signature, float bias, inputs quantized at run time), so the logits are not rounded to 256 levels
    (issue 22); opcode version 12 (per-channel hybrid, `op_version.cc`)."""
    from ai_edge_litert import schema_py_generated as schema

    _, _, out = converted
    exported, folder = out["int8"]
    for name in (exported.files[0], *(c.files[0] for c in exported.companions)):
        ops = _logits_ops(folder / name)
        assert sorted(ops) == sorted(e.name for e in exported.entries), name
        for key, (op, code, version, (x, w, b), y) in ops.items():
            assert code == schema.BuiltinOperator.FULLY_CONNECTED and version == 12, (name, key)
            assert (x.type, w.type, b.type, y.type) == (schema.TensorType.FLOAT32, schema.TensorType.INT8,
                                                        schema.TensorType.FLOAT32, schema.TensorType.FLOAT32)
            assert len(w.quantization.scale) == w.shape[0] > 1 and op.builtinOptions.asymmetricQuantizeInputs
        assert len({w.buffer for *_, (_, w, _), _ in ops.values()}) == 1, name


def _conv_filter_buffers(path):
    """signature key → buffer index of each CONV_2D's filter data (through a fp16 DEQUANTIZE), in order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    op = schema.BuiltinOperator
    result = {}
    for sig in model.signatureDefs:
        graph = model.subgraphs[sig.subgraphIndex]
        producers = {int(o): p for p in graph.operators for o in p.outputs}
        buffers = []
        for p in graph.operators:
            if codes[p.opcodeIndex] in (op.CONV_2D, op.DEPTHWISE_CONV_2D):
                index = int(p.inputs[1])
                if index in producers and codes[producers[index].opcodeIndex] == op.DEQUANTIZE:
                    index = int(producers[index].inputs[0])
                buffers.append(graph.tensors[index].buffer)
        result[sig.signatureKey.decode()] = buffers
    return result


@needs_onnx2tf
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_conv_weights_are_stored_once(converted, precision):
    """Every signature reads the same filter buffers, except (float, `--sharing auto`) the convs the plan folds."""
    backend, baked, out = converted
    exported, folder = out[precision]
    buffers = _conv_filter_buffers(folder / exported.files[0])
    assert len(buffers) == len(RES) and all(len(b) == 3 for b in buffers.values())
    if precision == "int8":
        assert len({tuple(b) for b in buffers.values()}) == 1 and exported.folded_layers is None
        return
    assert exported.folded_layers == backend.float_plan(baked).folded == ("features.0.0",)
    stems, rest = zip(*[(b[0], tuple(b[1:])) for b in buffers.values()])
    assert len(set(stems)) == len(RES) and len(set(rest)) == 1  # the stem's folded filter per signature


def test_the_worker_is_a_module_that_imports_neither_resflex_nor_tensorflow():
    """tflite_worker.py runs as a script in the onnx2tf environment (no resflex, no torch there); it stays importable
    here, TensorFlow and onnx2tf imported only inside the functions that use them."""
    import ast

    from resflex.convert.backends import tflite, tflite_worker

    assert tflite.WORKER == Path(tflite_worker.__file__)
    tree = ast.parse(tflite.WORKER.read_text())
    top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top |= {(node.module or "").split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= {"contextlib", "json", "os", "sys", "time", "numpy", "__future__"}, top
    code = ("import sys, runpy; runpy.run_path(sys.argv[1]); "
            "assert not {'tensorflow', 'onnx2tf', 'torch'} & set(sys.modules)")
    subprocess.run([sys.executable, "-I", "-c", code, str(tflite.WORKER)], check=True)


_LOADED_ONCE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("tflite_worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
import tensorflow as tf
from tensorflow.lite.python import lite
m = tf.Module()
m.v = tf.Variable([[1.0, -2.0]])
f = tf.function(lambda x: {"y": x * m.v}, input_signature=[tf.TensorSpec([1, 2], tf.float32, name="x")])
tf.saved_model.save(m, "sm", signatures={"serving_a": f.get_concrete_function()})
convert = lambda: tf.lite.TFLiteConverter.from_saved_model("sm", signature_keys=["serving_a"]).convert()
calls, original = [], lite._load
lite._load = lambda *a: calls.append(a) or original(*a)
counting = lite._load
with worker.saved_model_loaded_once():
    flats = [convert(), convert()]
assert lite._load is counting and len(calls) == 1, calls
assert flats[0] == flats[1] == convert() and len(calls) == 3
"""


@needs_onnx2tf
def test_the_converters_of_one_job_load_the_saved_model_once(tmp_path):
    """`saved_model_loaded_once`: two conversions (four `lite._load` calls) load the SavedModel once, give the same
    flatbuffer as without it, and `lite._load` is restored after the block."""
    from resflex.convert.backends import tflite

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    subprocess.run([str(onnx2tf_env.find_onnx2tf()), "-I", "-c", _LOADED_ONCE, str(tflite.WORKER)], cwd=tmp_path,
                   env=env, check=True, capture_output=True)


def _int8_conv_model(schema, filters):
    """A flatbuffer ModelT with one subgraph per filter, each a CONV_2D reading that int8 filter."""
    model = schema.ModelT()
    oc = schema.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    model.operatorCodes, model.buffers, model.subgraphs = [oc], [schema.BufferT()], []
    for q in filters:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(np.asarray(q, np.int8).tobytes(), np.uint8).copy()
        model.buffers.append(buffer)
        tensors = []
        for shape, type_, index in (((1, 4, 4, 2), 0, 0), (q.shape, 9, len(model.buffers) - 1), ((1, 4, 4, 8), 0, 0)):
            t = schema.TensorT()
            t.shape, t.type, t.buffer = np.array(shape, np.int32), type_, index
            tensors.append(t)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1], np.int32), np.array([2], np.int32)
        sg = schema.SubGraphT()
        sg.tensors, sg.operators = tensors, [op]
        model.subgraphs.append(sg)
    return model


def test_int8_filters_one_rounding_step_apart_share_the_reference_bytes(monkeypatch):
    """A folded filter's int8 values may land one step from the reference's at rounding ties: shared; a filter
    that really differs is kept."""
    from ai_edge_litert import schema_py_generated as schema

    from resflex.convert.backends import tflite_worker

    monkeypatch.setattr(tflite_worker, "schema", lambda: schema)
    rng = np.random.default_rng(0)
    ref = rng.integers(-127, 128, (8, 3, 3, 2 * 1000 // 9)).astype(np.int8)
    tie = ref.copy()
    tie.flat[5] += 1 if tie.flat[5] < 127 else -1
    other = rng.integers(-127, 128, ref.shape).astype(np.int8)
    model = _int8_conv_model(schema, [ref, tie, other])
    assert tflite_worker.share_int8_weights(model, 0) == (1, 1)
    buffers = [sg.tensors[1].buffer for sg in model.subgraphs]
    assert buffers[1] == buffers[0] and buffers[2] != buffers[0]


def _conv_quantization(path):
    """(filter scales, bias scales) of every per-channel CONV_2D / DEPTHWISE_CONV_2D in every signature."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    convs = (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D)
    return [(graph.tensors[op.inputs[1]].quantization.scale, graph.tensors[op.inputs[2]].quantization.scale)
            for graph in model.subgraphs for op in graph.operators
            if codes[op.opcodeIndex] in convs and len(graph.tensors[op.inputs[1]].quantization.scale) > 1]


@needs_onnx2tf
def test_int8_cpu_only_artifact_stores_bias_scales_as_the_filter_scales(converted):
    """Beside the GPU-capable int8 file, the CPU-only one: every per-channel conv bias carries its filter's scale
    vector (stored once), 4 bytes less per bias channel per signature, and LiteRT's CPU kernels (XNNPACK, the
    optimized and the reference builtins) give bit-identical outputs at every signature."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    _, _, out = converted
    exported, folder = out["int8"]
    (cpu,) = exported.companions
    assert exported.compute_units == ("GPU", "NNAPI") and cpu.compute_units == ("CPU",)
    assert cpu.files == ("model_int8_cpu.tflite",) and cpu.entries == exported.entries and "CPU only" in cpu.notes
    gpu_path, cpu_path = folder / exported.files[0], folder / cpu.files[0]
    before, after = _conv_quantization(gpu_path), _conv_quantization(cpu_path)
    assert len(before) == len(after) == 3 * len(RES)
    assert not any(np.array_equal(w, b) for w, b in before)  # today: input_scale × filter_scale, per resolution
    assert all(np.array_equal(w, b) for w, b in after)
    channels = sum(len(b) for _, b in before)
    assert gpu_path.stat().st_size - cpu_path.stat().st_size >= 4 * channels
    rng = np.random.default_rng(3)
    for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, OpResolverType.BUILTIN_REF):
        gpu, mine = (Interpreter(model_path=str(p), experimental_op_resolver_type=resolver)
                     for p in (gpu_path, cpu_path))
        for entry in exported.entries:
            x = rng.standard_normal((8, *entry.input_shape[1:])).astype(np.float32)
            for image in x:
                want = gpu.get_signature_runner(entry.name)(image=image[None])["logits"]
                got = mine.get_signature_runner(entry.name)(image=image[None])["logits"]
                assert np.array_equal(got, want), (resolver, entry.name)


@needs_onnx2tf
@pytest.mark.slow
def test_int8_cpu_only_artifact_can_be_turned_off(tmp_path):
    """`TFLiteBackend(int8_cpu_only=False)` writes today's int8 file alone, offered on every TFLite unit."""
    model = _tiny_model()
    baked = {r: bake(model, r, bn="fold") for r in RES[-1:]}
    calib = {r: torch.randn(4, 3, r, r, generator=torch.Generator().manual_seed(1)) for r in RES[-1:]}
    exported = TFLiteBackend(int8_cpu_only=False).export(baked, "int8", calib, tmp_path)
    assert exported.companions == () and exported.compute_units is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_int8.tflite"]
