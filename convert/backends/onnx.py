"""ONNX: one graph file per resolution (ONNX has no multi-entry models), fp32 or static int8 (QDQ, per-channel),
every resolution's graph referencing ONE shared weights file through ONNX external data.

ONNX Runtime opens `model_{precision}_{r}.onnx` with `weights_{precision}.bin` beside it: byte-identical tensors
(by SHA-256 of their bytes) are stored there once (`TensorProto.data_location = EXTERNAL`, `location` / `offset` /
`length`), as are large ones; what only one resolution uses and is small (its BN scale and shift, its int8 biases and
scales) stays in its graph, where it costs no reference (`write_shared`). Graphs are compacted (`compact`: short
tensor names, no node names, doc strings or value_info). So the artifact is one weights file plus small graphs, and
sharing hinges on the tensors being byte-identical across resolutions although each resolution has its own
BatchNorm — the same problem, and the same answer, as the ExecuTorch backend's
(`resflex.convert.backends.executorch`): the modules are baked with `bn="affine"` (conv untouched, BN as
`conv(x) · scale + shift`), and then

- **fp32**: the graph keeps `Conv → Mul(scale) → Add(shift)`; the conv weights are the same bytes at every
  resolution, the per-resolution scale and shift (the BN floor) stay in each graph. ONNX Runtime's basic graph
  optimisations (`ConvMulFusion`, `ConvAddFusion`) fold the Mul and Add into the conv when a session is created, in
  memory, so the graph it runs is the BN-folded one (no Mul or Add left in the optimised graph; per-resolution latency
  within ±7 % of the BN-folded single-resolution file in `bench/convert_bench.py`, i.e. timing noise).
- **int8**: each resolution is quantized by `quantize_static` from its BN-folded graph (calibrated at that resolution;
  QDQ, symmetric per-channel int8 weights, per-tensor asymmetric uint8 activations) — the graph ONNX Runtime fuses
  into QLinearConv / QLinearAdd; the logits stay float (`_float_logits`: no Q → DQ on the output). Activations are
  uint8 because on x86 ONNX Runtime runs int8 activations only after rewriting each Q → DQ pair to uint8
  (`QDQS8ToU8Transformer`), which skips a Q with more than one consumer (`CheckOutputEdges(graph, node, 1)`);
  `ConvNodeGroupSelector::Check` then refuses the int8 input (`!int8_allowed_`), so every conv before and after a
  residual branch point stayed DQ → float Conv → Q (15 of MobileNetV2's 52 convs, and its 10 Adds float). With uint8
  there is nothing to rewrite: all 52 fuse, the same numbers (the rewrite only shifts the zero point by 128), 0.68×
  the int8-activation graph's latency. Per-channel symmetric quantization of a folded weight `W · a_r` gives scales
  `s_w · |a_r|` and values `sign(a_r) · round(W / s_w)` only up to float rounding (the division by `|a_r| s_w` is not
  exactly the division by `s_w`), so the int8 bytes are *almost* identical across resolutions, which is not enough to
  share them (MobileNetV2 ×0.35, 5 resolutions with random BN: 50 of 52 convs came out identical, the other 2 differed
  in 6 of 1.9 M values). Each conv's weight is therefore re-quantized from the *unfolded* weight: `q = round(W / s_w)`
  once (ONNX Runtime's own per-channel symmetric int8 rule), and the resolution's BN goes into the quantization
  parameters: values `sign(a_r) · q`, per-channel scales `s_w · |a_r|`, the int32 bias re-quantized at
  `x_scale·s_w·|a_r|`. Same graph, same speed, identical int8 bytes at every resolution whose BN scales have the same
  signs (a channel whose γ changes sign makes that layer's bytes differ there: correct, not shared; `Exported.notes`
  counts the convs with negative BN scales). What each resolution keeps of its own: per channel its weight scale and
  int32 bias — 8 bytes, as fp32's scale and shift. The bias scale is not stored: it is `x_scale · w_scale` by
  definition, so the graph computes it with a Mul that ONNX Runtime's constant folding evaluates at session creation
  (same float32 values, same QLinearConv fusion, bit-identical outputs); the all-zero zero points are left out
  (DequantizeLinear's default).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..quiet import is_verbose
from ..runtimes import OnnxRuntime, Spatial, spatial_keys
from ..qat_ranges import INPUT_POINT, RangeUse, last_values_of
from .base import Entry, Exported, check_calib_method

INPUT, OUTPUT = "image", "logits"
REFERENCE_BYTES = 80  # what an external reference (name, location, offset, length) costs in a graph, about
EXTERNAL_LARGE_BYTES = 4096  # initializers this large go to the weights file even when no other tensor shares them
ALIGN = 16  # offset alignment of tensors in the shared weights file


def weights_file(precision: str) -> str:
    """The name of an ONNX artifact's shared weights file (beside its graph files)."""
    return f"weights_{precision}.bin"


# What each module exported to (resolution, opset) → ONNX bytes, valid while its tensors are unchanged: the TFLite
# backend and the ONNX backend's fp32 and int8 all start from the same baked module's ONNX export.
_EXPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state_key(module: nn.Module) -> tuple:
    """Identity and in-place version of every tensor of the module (a changed weight gives a new key)."""
    return tuple((name, t.data_ptr(), t._version) for name, t in module.state_dict(keep_vars=True).items())


def export_onnx_file(module: nn.Module, resolution: int, path: Path, opset: int = 18) -> Path:
    """Export one baked module with a batch-1 NCHW input named `image` and output `logits` (a module exported
    before, unchanged since, at the same resolution and opset is written from the first export's bytes)."""
    key = (resolution, opset, _state_key(module))
    done = _EXPORTS.setdefault(module, {})
    if key not in done:
        x = torch.zeros(1, 3, resolution, resolution)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                              opset_version=opset, dynamo=False)
        done[key] = Path(path).read_bytes()
    else:
        Path(path).write_bytes(done[key])
    return path


def write_shared(models: Mapping[str, object], folder: Path, weights: str,
                 large_bytes: int = EXTERNAL_LARGE_BYTES) -> dict[str, int]:
    """Write each ONNX `ModelProto` as `folder/name`, its initializers moved into ONE external-data file
    `folder/weights`, byte-identical tensors (SHA-256 of their bytes) stored once. A tensor goes there when storing
    its bytes once beats storing them in each of the n tensors that hold them (`size · (n − 1) > n ·
    REFERENCE_BYTES`) or it is at least `large_bytes`; the rest (each resolution's own BN scales, biases,
    quantization scalars) stay inside their graph, where they cost no reference.
    Returns the byte counts: `stored` (the weights file) and `referenced` (what the external tensors add up to)."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import set_external_data

    tensors = [t for model in models.values() for t in model.graph.initializer]
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"initializer {t.name!r} is already external")
        if not t.HasField("raw_data"):  # typed fields (float_data, int32_data, …) → raw little-endian bytes
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    keys = [hashlib.sha256(t.raw_data).digest() for t in tensors]
    count = collections.Counter(keys)
    where: dict[bytes, tuple[int, int]] = {}  # SHA-256 of a tensor's bytes → (offset, length) in the weights file
    referenced = 0
    with open(folder / weights, "wb") as out:
        for t, key in zip(tensors, keys):
            size = len(t.raw_data)
            if size < large_bytes and size * (count[key] - 1) <= count[key] * REFERENCE_BYTES:
                continue
            if key not in where:
                out.write(b"\0" * (-out.tell() % ALIGN))
                where[key] = (out.tell(), size)
                out.write(t.raw_data)
            referenced += size
            set_external_data(t, weights, *where[key])  # sets data_location = EXTERNAL
            t.ClearField("raw_data")
        stored = out.tell()
    for name, model in models.items():
        (folder / name).write_bytes(model.SerializeToString())
    return {"stored": stored, "referenced": referenced}


def compact(model) -> None:
    """Shrink a graph's protobuf in place without changing what it computes: short node and tensor names (the graph's
    input and output keep theirs), no doc strings, metadata or value_info (ONNX Runtime infers shapes). Per-node
    names from the exporters make up most of a graph file once its weights are external."""
    graph = model.graph
    keep = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for t in graph.initializer:
        t.name = short(t.name)
        t.ClearField("doc_string")
    for n in graph.node:
        n.name = ""  # optional in ONNX; ONNX Runtime names nodes itself
        n.ClearField("doc_string")
        n.ClearField("metadata_props")
        n.input[:] = [short(x) for x in n.input]
        n.output[:] = [short(x) for x in n.output]
    graph.ClearField("value_info")
    graph.ClearField("doc_string")
    model.ClearField("doc_string")


def _load(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def _unshare_constants(path: Path):
    """Give each `Identity` of an initializer its own copy, in place; returns the model. torch.onnx stores equal
    constants once and feeds the other users through an Identity; quantize_static then quantizes such a bias for its
    first conv only, and ONNX Runtime leaves every other conv behind the Identity in float (MobileNetV3's
    zero-initialized squeeze-excite biases: 20 float convs of 53 at width 0.35)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    copies = [n for n in graph.node
              if n.op_type == "Identity" and n.input[0] in constants and n.output[0] not in outputs]
    for node in copies:
        copy = onnx.TensorProto()
        copy.CopyFrom(constants[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)
    if copies:
        onnx.save(model, str(path))
    return model


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice at WARNING on the root logger, and the sessions it opens warn (in C++)
    about every initializer graph optimisation removes: both are raised to ERROR unless the conversion is verbose."""
    if is_verbose():
        yield
        return
    import onnxruntime

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))
    onnxruntime.set_default_logger_severity(3)
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(2)  # onnxruntime's default, WARNING
        root.setLevel(level)


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader over one resolution's calibration batch, one image at a time."""

    def __init__(self, batch: Tensor):
        self._items = iter([{INPUT: x[None].numpy().astype(np.float32)} for x in batch])

    def get_next(self):
        return next(self._items, None)


# quantize_static's activation calibrators (`--calib-method`; the first is the default): "minmax" the observed range,
# "percentile" the symmetric range holding 99.999 % of the |activations| (onnxruntime's CalibPercentile default).
# Not offered: "entropy" (through quantize_static its histogram has as many bins as quantized bins, 128, so the KL
# search has one candidate and equals "minmax") and "distribution" (meant for float8: int8 top-1 agreement fell to
# 0.4-22 % on MobileNetV2 in bench/quant_bench.py).
CALIB_METHODS = ("minmax", "percentile")
# quantize_static's activation type: uint8, so that ONNX Runtime fuses every conv on x86 (see the module docstring;
# bench/onnx_int8_bench.py measures "QInt8" beside it)
ACTIVATIONS = "QUInt8"


def _module_scopes(node_name: str) -> set[str]:
    """The FQNs of the modules an ONNX node was exported from, read from the TorchScript exporter's scoped node name
    (`/features/features.2/block/block.0/block.0.0/Conv`: each segment names a child, prefixed by its parent's
    segment when the parent is a container → features, features.2, features.2.block, …, features.2.block.0.0)."""
    owners, fqn, prev = set(), "", None
    for seg in node_name.split("/")[1:-1]:
        fqn = fqn + seg[len(prev):] if prev and seg.startswith(prev + ".") else f"{fqn}.{seg}" if fqn else seg
        owners.add(fqn)
        prev = seg
    return owners


def _range_overrides(graph, ranges: Mapping[str, tuple[float, float]]) -> dict[str, list[dict]]:
    """quantize_static's TensorQuantOverrides holding QAT's (lo, hi) for every tensor of the exported `graph` that is
    a QAT point (the input, or the last output computed inside the point's module: `resflex.convert.qat_ranges`)."""
    values = [(out, _module_scopes(n.name)) for n in graph.node for out in n.output]
    point_of = last_values_of(values, ranges)
    point_of.update({i.name: INPUT_POINT for i in graph.input})
    return {t: [{"rmin": np.array(ranges[p][0], np.float32), "rmax": np.array(ranges[p][1], np.float32)}]
            for t, p in point_of.items() if p in ranges}


def _activation_points(model) -> set[str]:
    """Activation tensors a QDQ graph quantizes (QuantizeLinear nodes whose input is not an initializer), by their
    name before quantization (quantize_static renames a graph output's Q input `NAME_QuantizeLinear_Input`)."""
    inits = {t.name for t in model.graph.initializer}
    return {n.input[0].removesuffix("_QuantizeLinear_Input") for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def _quantize(module: nn.Module, resolution: int, calib: Tensor, work: Path, tag: str | None = None,
              method: str = CALIB_METHODS[0], ranges: Mapping[str, tuple[float, float]] | None = None,
              use: list | None = None):
    """The resolution's QDQ int8 graph (`quantize_static` on the BN-folded graph, activations calibrated with
    `method`, see `CALIB_METHODS`, except the QAT points `ranges` covers, {point: (lo, hi)}; `use` gets a
    `RangeUse`) with every conv's int8 weight re-quantized from the unfolded weight (see the module docstring).
    Returns (ModelProto, convs whose int8 bytes carry a BN sign flip)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calibrators = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in calibrators:
        raise ValueError(f"unknown ONNX calibration method {method!r}; expected one of: {', '.join(CALIB_METHODS)}")

    from .executorch import _folded  # the same affine → folded conv rewrite as ExecuTorch's int8

    folded, unfolded = _folded(module)
    fp32, int8 = work / f"fp32_{tag or resolution}.onnx", work / f"int8_{tag or resolution}.onnx"
    export_onnx_file(folded, resolution, fp32)
    exported = _unshare_constants(fp32)
    # the histogram calibrators print their progress: kept off the terminal unless the conversion is verbose
    printed = contextlib.nullcontext() if is_verbose() else contextlib.redirect_stdout(io.StringIO())
    overrides = _range_overrides(exported.graph, ranges) if ranges else {}
    with _quiet_quantizer(), printed:
        quantize_static(str(fp32), str(int8), _CalibrationReader(calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=getattr(QuantType, ACTIVATIONS),
                        weight_type=QuantType.QInt8,
                        calibrate_method=calibrators[method],
                        extra_options={"TensorQuantOverrides": overrides} if overrides else None)
    model = _load(int8)
    _float_logits(model)
    if use is not None:
        points = _activation_points(model)
        use.append(RangeUse(len(points & overrides.keys()), len(points - overrides.keys())))
    biases = {name: t.detach().numpy() for name, t in folded.state_dict().items() if name.endswith(".bias")}
    flipped = _share_int8_weights(model, unfolded, biases)
    return model, flipped


def _drop_initializers(graph, names) -> None:
    """Remove the initializers among `names` that no node reads any more."""
    still_used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name not in names or t.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _float_logits(model) -> None:
    """Remove, in place, the QuantizeLinear → DequantizeLinear pair `quantize_static` puts on the graph output, so the
    classifier reads int8 and writes float logits (ONNX Runtime runs the Gemm as QGemm with a float output). Logits
    rounded to 256 levels tie where the float ones differ by less than a step: top-1 agreement of a trained
    MobileNetV3-Small ×0.25 fell to 80 % on near ties alone (bench/RESULTS.md, arch_bench_trained)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    out = graph.output[0].name
    dq = producer.get(out)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if q is None or q.op_type != "QuantizeLinear" or producer.get(q.input[0]) is None:
        return
    if sum(q.output[0] in n.input for n in graph.node) != 1 or sum(q.input[0] in n.input for n in graph.node) != 1:
        return  # the quantized logits feed something else too: leave the graph as it is
    last = producer[q.input[0]]
    last.output[list(last.output).index(q.input[0])] = out
    graph.node.remove(q)
    graph.node.remove(dq)
    _drop_initializers(graph, {*q.input[1:], *dq.input[1:]})


def _share_int8_weights(model, unfolded: Mapping[str, tuple[Tensor, Tensor]], biases: Mapping[str, np.ndarray]):
    """Rewrite, in `model` (QDQ from `quantize_static`), each folded conv `fqn` of `unfolded` (fqn → unfolded
    weight, BN scale) to int8 values `sign(a) · round(W / s_w)` and scales `s_w · |a|`; its int32 bias re-quantized
    from the folded fp32 bias in `biases`. Returns how many convs carry a negative BN scale (their bytes are shared
    only with resolutions of the same signs)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.quant_utils import quantize_data

    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def put(name: str, array: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    flipped, unused = 0, set()
    for fqn, (weight, bn_scale) in unfolded.items():
        q_name = f"{fqn}.weight_quantized"
        dq = [n for n in consumers.get(q_name, []) if n.op_type == "DequantizeLinear"]
        if q_name not in inits or len(dq) != 1:
            continue  # not quantized as expected: keep what quantize_static wrote (correct, just not shared)
        convs = [n for n in consumers.get(dq[0].output[0], []) if n.op_type == "Conv"]
        if len(convs) != 1:
            continue
        conv, w_scale_name = convs[0], dq[0].input[1]
        bias_dq = x_dq = None
        if len(conv.input) > 2 and conv.input[2]:
            bias_dq, x_dq = producer.get(conv.input[2]), producer.get(conv.input[0])
            if bias_dq is not None and bias_dq.op_type != "DequantizeLinear":
                bias_dq = None  # a float bias does not depend on the weight scale: nothing to redo
            elif bias_dq is not None and (x_dq is None or x_dq.op_type != "DequantizeLinear"
                                          or f"{fqn}.bias" not in biases):
                continue  # an int32 bias we cannot recompute: keep quantize_static's conv (correct, not shared)
        w, a = weight.numpy().astype(np.float32), bn_scale.numpy().astype(np.float32)
        q = np.empty(w.shape, dtype=np.int8)
        s = np.empty(w.shape[0], dtype=np.float32)
        for c in range(w.shape[0]):
            _, s_c, q_c = quantize_data(w[c].ravel(), TensorProto.INT8, symmetric=True)
            q[c], s[c] = np.asarray(q_c).reshape(w.shape[1:]), np.float32(s_c)
        sign = np.where(a < 0, -1, 1).astype(np.int8)
        flipped += bool((sign < 0).any())
        scale = np.maximum(s * np.abs(a), np.finfo(np.float32).tiny).astype(np.float32)
        put(q_name, q * sign.reshape(-1, *([1] * (q.ndim - 1))))
        put(w_scale_name, scale)
        unused.update(dq[0].input[2:])  # the zero points are all 0, DequantizeLinear's default
        del dq[0].input[2:]
        if bias_dq is not None:
            bias_scale = (array(x_dq.input[1]).astype(np.float32) * scale).astype(np.float32)
            bias_q = np.clip(np.round(biases[f"{fqn}.bias"].astype(np.float64) / bias_scale),
                             np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
            put(bias_dq.input[0], bias_q)
            # the bias scale is x_scale · w_scale by definition: a Mul node instead of 4 stored bytes per channel
            # (ONNX Runtime's constant folding turns it back into the same float32 values at session creation,
            # before the QDQ fusion into QLinearConv reads it)
            unused.update(bias_dq.input[1:])
            bias_dq.input[1] = f"{bias_dq.input[0]}_scale_x_times_w"
            del bias_dq.input[2:]
            mul = helper.make_node("Mul", [x_dq.input[1], w_scale_name], [bias_dq.input[1]])
            model.graph.node.insert(list(model.graph.node).index(bias_dq), mul)
    _drop_initializers(model.graph, unused)
    return flipped


class OnnxBackend:
    name = "onnx"
    precisions = ("fp32", "int8")
    bn_style = "affine"  # conv weights untouched by BN, so every resolution's graph references the same bytes
    own_process = False  # exported here, or in a `BackgroundExport` child
    calib_methods = CALIB_METHODS  # int8 activation calibrators; the first is the default
    sharing = "size"  # no effect: ONNX Runtime folds the Mul/Add into the conv when it creates the session
    takes_act_ranges = True  # int8: QAT's activation ranges go to quantize_static as TensorQuantOverrides
    act_ranges = None  # {resolution: {QAT point: (lo, hi)}} (`convert --calib-from qat`), or None: images only

    def __init__(self, calib_method: str | None = None, sharing: str = "size", act_ranges=None):
        self.sharing = sharing
        self.calib_method = check_calib_method(self.name, calib_method, self.calib_methods)
        self.act_ranges = act_ranges

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        out_dir.mkdir(parents=True, exist_ok=True)
        models, entries, flipped, use = {}, [], 0, []
        with tempfile.TemporaryDirectory(prefix=".onnx_", dir=out_dir) as tmp:
            work = Path(tmp)
            for key in spatial_keys(baked):  # resolutions (Resizable Networks: × stage-scale configurations)
                module, sp = baked[key], Spatial.of(key)
                r, name = sp.resolution, f"model_{precision}_{sp.tag}.onnx"
                if precision == "fp32":
                    models[name] = _load(export_onnx_file(module, r, work / name))
                else:
                    models[name], n = _quantize(module, r, calib[key], work, sp.tag,
                                                getattr(self, "calib_method", CALIB_METHODS[0]),
                                                (self.act_ranges or {}).get(r), use)
                    flipped += n
                compact(models[name])
                entries.append(Entry(r, name, INPUT, OUTPUT, (1, 3, r, r), sp.stage_scales))
        weights = weights_file(precision)
        sizes = write_shared(models, out_dir, weights)
        notes = (f"one graph file per resolution, every one referencing the shared {weights} through ONNX external "
                 f"data ({sizes['stored'] / 1e6:.3f} MB stored for {sizes['referenced'] / 1e6:.3f} MB referenced); "
                 "ONNX Runtime CPUExecutionProvider")
        if flipped:
            notes += (f"; {flipped} conv(s) × resolution with a negative BN scale (int8 bytes shared only at "
                      "equal signs)")
        return Exported(self.name, precision, (*models, weights), "NCHW", tuple(entries), True, notes,
                        range_use=sum(use, RangeUse()) if self.act_ranges and use else None)

    def runner(self, exported: Exported, out_dir: Path) -> OnnxRuntime:
        return OnnxRuntime(Path(out_dir) / exported.files[0])
