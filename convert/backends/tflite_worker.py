"""The TFLite backend's worker, run as a script in the onnx2tf environment (numpy 1.26, TensorFlow 2.19):
per-resolution ONNX files -> onnx2tf Keras models -> one SavedModel with a signature per resolution -> one
multi-signature .tflite (TFLiteConverter) -> shared-constant post-pass.

    python -I tflite_worker.py job.json     (in the job's folder; writes report.json there)

`resflex.convert.backends.tflite.TFLiteBackend` writes the job and runs this file with the environment's Python.
It imports nothing from resflex (the environment has no resflex and no torch) and imports TensorFlow, onnx2tf and
flatbuffers only inside the functions that need them, so the main environment can import it too (tests, linters).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import numpy as np


def log(msg):
    print(f"[resflex tflite] {msg}", file=sys.stderr, flush=True)


def serving_fn(model, output_name):
    def serve(image):
        out = model(image)
        return {output_name: out[0] if isinstance(out, (list, tuple)) else out}
    return serve


def saved_model(job):
    """Every ONNX file of the job -> an onnx2tf Keras model, wrapped as the signatures of one SavedModel (written to
    "merged_saved_model"). Returns the signature keys."""
    import onnx2tf
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    root, signatures = tf.Module(), {}
    for item in job["entries"]:
        r, key, tag = item["resolution"], item["key"], item.get("tag", item["resolution"])
        t = time.time()
        if spatial_means_as_pools(item["onnx"]):
            log(f"{item['onnx']}: spatial ReduceMean → GlobalAveragePool + Flatten")
        unrooted_node_names(item["onnx"])
        model = onnx2tf.convert(input_onnx_file_path=item["onnx"], output_folder_path=f"onnx2tf_{tag}",
                                disable_model_save=True, non_verbose=True)
        shape = tuple(int(d) for d in model.inputs[0].shape)
        if shape != (1, r, r, 3):
            raise RuntimeError(f"onnx2tf made input shape {shape} at resolution {r}; expected (1, {r}, {r}, 3)")
        fn = tf.function(serving_fn(model, job["output"]),
                         input_signature=[tf.TensorSpec(shape, tf.float32, name=job["input"])])
        signatures[key] = fn.get_concrete_function()
        # The root holds only the variables each signature reads (onnx2tf makes some, a grouped conv's kernel,
        # outside the Keras model's tracking), not the Keras model nor the tf.function: saving a Keras model writes
        # its layers' metadata and configs (~1000 layers: 50 s of the save, and the converter's loads revive them)
        # and an attached tf.function is traced again; the signatures' graphs and the .tflite are the same.
        setattr(root, f"variables_{tag}", list(signatures[key].variables))
        log(f"onnx2tf {key}: {time.time() - t:.1f} s")
    tf.saved_model.save(root, "merged_saved_model", signatures=signatures)
    return list(signatures)


def unrooted_node_names(path):
    """Drop the leading '/' of the ONNX node names at `path` (torch.onnx writes '/features/features.6/Conv'): onnx2tf
    names a grouped conv's kernel variable after its node, and TensorFlow refuses to save a variable whose name
    starts with '/' ("not a valid root scope name")."""
    import onnx

    model = onnx.load(path)
    rooted = [n for n in model.graph.node if n.name.startswith("/")]
    for node in rooted:
        node.name = node.name.lstrip("/")
    if rooted:
        onnx.save(model, path)


def spatial_means_as_pools(path):
    """Rewrite, in the ONNX file at `path`, each ReduceMean over both spatial axes of a 4-D NCHW tensor without
    keepdims (`x.mean((2, 3))`, a common classifier head) as GlobalAveragePool + Flatten — the same values. onnx2tf
    can turn such a ReduceMean into a `tf.Mean` that TFLite's converter cannot lower without flex ops
    (ERROR_NEEDS_FLEX_OPS); GlobalAveragePool it converts natively. Returns how many it rewrote."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    shapes = onnx.shape_inference.infer_shapes(model).graph
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in (*shapes.value_info, *shapes.input, *shapes.output)}
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"})
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes", consts.get(node.input[1]) if len(node.input) > 1 else None)
        if node.op_type == "ReduceMean" and rank.get(node.input[0]) == 4 and attrs.get("keepdims", 1) == 0 \
                and axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [2, 3]:
            pooled = f"{node.output[0]}__pooled"
            nodes += [helper.make_node("GlobalAveragePool", [node.input[0]], [pooled]),
                      helper.make_node("Flatten", [pooled], list(node.output), axis=1)]
            rewritten += 1
        else:
            nodes.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save(model, path)
    return rewritten


@contextlib.contextmanager
def saved_model_loaded_once():
    """Within the block, the TFLite converter's SavedModel loads (`lite._load`: `from_saved_model` reads the
    signatures, `convert` loads again only for debug info — twice per precision) return the first load of a folder:
    a load only reads the folder, and the converter only reads the loaded object. Restored on exit."""
    from tensorflow.lite.python import lite

    original, loaded = lite._load, {}

    def load(export_dir, tags=None, options=None):
        key = (os.path.abspath(export_dir), frozenset(tags or ()), options)
        if key not in loaded:
            loaded[key] = original(export_dir, tags, options)
        return loaded[key]

    lite._load = load
    try:
        yield loaded
    finally:
        lite._load = original


def convert(job, precision, keys):
    """The SavedModel's signatures -> one multi-signature .tflite flatbuffer at `precision`."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model("merged_saved_model", signature_keys=keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        batches = {item["key"]: np.load(item["calib"]) for item in job["entries"]}

        def representative_dataset():
            for key, batch in batches.items():
                for x in batch:
                    yield key, {job["input"]: x[None].astype(np.float32)}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    elif precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}")
    t = time.time()
    flat = converter.convert()
    log(f"TFLite converter, {precision}, {len(keys)} signatures: {time.time() - t:.1f} s")
    return flat


# ---- flatbuffer post-pass --------------------------------------------------------------------------------------
_NP = {0: np.float32, 1: np.float16, 2: np.int32, 9: np.int8}  # TensorType → numpy


def schema():
    from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def make_builder():
    import flatbuffers

    class DedupBuilder(flatbuffers.Builder):
        """Writes each distinct numeric vector once (zero points, equal scales, shapes) and aligns tensor data
        (byte vectors) to 16 bytes, as the TFLite converter does."""

        def __init__(self):
            super().__init__(1 << 20)
            self.vectors = {}

        def CreateNumpyVector(self, x):
            key = (x.dtype.str, x.tobytes())
            if key in self.vectors:
                return self.vectors[key]
            if x.dtype == np.uint8:
                payload = key[1]
                self.StartVector(1, len(payload), 16)
                self.head -= len(payload)
                self.Bytes[self.head:self.head + len(payload)] = payload
                self.vectorNumElems = len(payload)
                offset = self.EndVector()
            else:
                offset = super().CreateNumpyVector(x)
            self.vectors[key] = offset
            return offset

    return DedupBuilder()


def dedupe_buffers(model):
    """Point tensors with byte-identical constant data at one buffer; drop unreferenced buffers."""
    first, canon = {}, {}
    for i, b in enumerate(model.buffers):
        if i and b.data is not None and len(b.data):
            canon[i] = first.setdefault(bytes(b.data), i)
    refs = {0}
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = canon.get(t.buffer, t.buffer)
            refs.add(t.buffer)
    refs.update(md.buffer for md in model.metadata or [])
    refs.update(int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else []))
    keep = sorted(refs)
    new = {old: n for n, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = new[t.buffer]
    for md in model.metadata or []:
        md.buffer = new[md.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = np.array([new[int(b)] for b in model.metadataBuffer], dtype=np.int32)


def conv_ops(sg, codes):
    """A subgraph's CONV_2D and DEPTHWISE_CONV_2D operators, in graph order (`codes`: builtin code per opcode index)."""
    O = schema().BuiltinOperator
    return [op for op in sg.operators if codes[op.opcodeIndex] in (O.CONV_2D, O.DEPTHWISE_CONV_2D)]


def add_buffer(model, array):
    """Append a buffer holding `array`'s bytes to `model`; returns its index."""
    b = schema().BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8).copy()
    model.buffers.append(b)
    return len(model.buffers) - 1


def share_float_weights(model, ref_index, fold_values=()):
    """In every subgraph but the reference, rewrite each float conv whose filter is the reference filter scaled
    per output channel (W = k * W_ref: BN folded at another resolution) as MUL(conv(x; W_ref, b / k), k), the
    conv's fused activation moved to the MUL, so the filter bytes are shared. A conv whose reference has a number of
    output elements per filter element in `fold_values` keeps its own folded filter (the sharing plan: its MUL
    would cost more time than its bytes are worth). Returns (convs shared, kept)."""
    fold_values = set(fold_values)
    S = schema()
    O = S.BuiltinOperator
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]

    def mul_opcode():
        if O.MUL not in codes:
            oc = S.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = O.MUL, O.MUL, 1
            model.operatorCodes.append(oc)
            codes.append(O.MUL)
        return codes.index(O.MUL)

    def new_tensor(sg, shape, name, buffer=0, signature=None):
        t = S.TensorT()
        t.shape, t.type, t.buffer, t.name = np.array(shape, dtype=np.int32), 0, buffer, name
        t.shapeSignature = None if signature is None else np.array(signature, dtype=np.int32)
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def float_const(sg, producers, index):
        """(index of the tensor holding the data, its values as float64), looking through a DEQUANTIZE (fp16)."""
        op = producers.get(index)
        if op is not None and codes[op.opcodeIndex] == O.DEQUANTIZE:
            index = int(op.inputs[0])
        t = sg.tensors[index]
        data = model.buffers[t.buffer].data
        quantized = t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale)
        if t.type not in (0, 1) or quantized or data is None or not len(data):
            return None
        return index, np.frombuffer(bytes(data), dtype=_NP[t.type]).astype(np.float64).reshape(t.shape)

    ref = model.subgraphs[ref_index]
    ref_producers = {int(o): op for op in ref.operators for o in op.outputs}
    ref_convs = conv_ops(ref, codes)

    def fold_value(rop):
        """Output elements per filter element of a reference conv (`resflex.convert.bake.LayerCost.fold_value`)."""
        shape = lambda index: ref.tensors[int(index)].shape  # noqa: E731
        return int(np.prod(shape(rop.outputs[0]))) / int(np.prod(shape(rop.inputs[1])))

    def match(sg, producers, op, rop):
        """(filter tensor, reference filter tensor, per-channel k; None if the bytes are equal) when the filter of
        `op` is that of `rop` scaled per output channel, else None."""
        code = codes[op.opcodeIndex]
        if codes[rop.opcodeIndex] != code:
            return None
        w, rw = float_const(sg, producers, int(op.inputs[1])), float_const(ref, ref_producers, int(rop.inputs[1]))
        if w is None or rw is None or w[1].shape != rw[1].shape or sg.tensors[w[0]].type != ref.tensors[rw[0]].type:
            return None
        (wi, W), (rwi, RW) = w, rw
        if np.array_equal(W, RW):
            return wi, rwi, None
        axis = 0 if code == O.CONV_2D else 3  # output channels: conv [O,H,W,I], depthwise [1,H,W,O]
        Wc = np.moveaxis(W, axis, 0).reshape(W.shape[axis], -1)
        Rc = np.moveaxis(RW, axis, 0).reshape(W.shape[axis], -1)
        norm = (Rc * Rc).sum(1)
        k = np.where(norm > 0, (Wc * Rc).sum(1) / np.where(norm > 0, norm, 1.0), 1.0)
        tol = 1e-5 if sg.tensors[wi].type == 0 else 4e-3  # float32 / float16 rounding of the folded filters
        err = np.abs(Wc - k[:, None] * Rc).max(1)
        if np.any(err > tol * np.maximum(np.abs(Wc).max(1), 1e-30)) or np.any(np.abs(k) <= 1e-6 * np.abs(k).max()):
            return None
        return wi, rwi, k

    shared = kept = 0
    for si, sg in enumerate(model.subgraphs):
        if si == ref_index:
            continue
        # The reference conv at the same place in graph order is tried first; then any other (onnx2tf may order the
        # convs of a residual block differently at another resolution, e.g. where explicit PADs differ). A match
        # is checked on the filter values, so whichever reference conv it is, the result is the same.
        mine = conv_ops(sg, codes)
        in_order = dict(zip(map(id, mine), ref_convs)) if len(mine) == len(ref_convs) else {}
        producers = {int(o): op for op in sg.operators for o in op.outputs}
        operators = []
        for op in sg.operators:
            operators.append(op)
            if codes[op.opcodeIndex] not in (O.CONV_2D, O.DEPTHWISE_CONV_2D):
                continue
            first = in_order.get(id(op))
            found = None
            for rop in ([first] if first is not None else []) + [r for r in ref_convs if r is not first]:
                found = match(sg, producers, op, rop)
                if found is not None:
                    break
            if found is None:
                kept += 1
                continue
            wi, rwi, k = found
            if k is not None and fold_value(rop) in fold_values:
                kept += 1
                continue
            if k is None:
                sg.tensors[wi].buffer = ref.tensors[rwi].buffer
                shared += 1
                continue
            sg.tensors[wi].buffer = ref.tensors[rwi].buffer
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                bias = float_const(sg, producers, int(op.inputs[2]))
                if bias is None:
                    raise RuntimeError(f"conv bias in subgraph {sg.name} is not a float constant")
                bi, B = bias
                sg.tensors[bi].buffer = add_buffer(model, (B / k).astype(_NP[sg.tensors[bi].type]))
            out = sg.tensors[op.outputs[0]]
            name = out.name or b"conv"
            mid = new_tensor(sg, out.shape, name + b"/unscaled", signature=out.shapeSignature)
            scale = new_tensor(sg, [k.size], name + b"/bn_scale", add_buffer(model, k.astype(np.float32)))
            mul = S.OperatorT()
            mul.opcodeIndex = mul_opcode()
            mul.inputs = np.array([mid, scale], dtype=np.int32)
            mul.outputs = np.array([op.outputs[0]], dtype=np.int32)
            mul.builtinOptionsType = S.BuiltinOptions.MulOptions
            mul.builtinOptions = S.MulOptionsT()
            mul.builtinOptions.fusedActivationFunction = op.builtinOptions.fusedActivationFunction
            op.builtinOptions.fusedActivationFunction = S.ActivationFunctionType.NONE
            op.outputs = np.array([mid], dtype=np.int32)
            operators.append(mul)
            shared += 1
        sg.operators = operators
    return shared, kept


INT8_TIE_FRACTION = 1e-3  # int8 filters that differ from the reference in at most this share of values, by one step


def share_int8_weights(model, ref_index):
    """int8: per-channel symmetric quantization of a filter folded with a positive per-channel BN scale gives the
    reference resolution's int8 values up to float rounding of the folded weights — a value at a rounding tie
    lands one step away, which is enough to store the whole filter again (seen on a QAT model: a 143 KB filter
    twice). Where a conv's int8 filter differs from the reference's only so (|Δ| = 1 in at most INT8_TIE_FRACTION
    of its values), it takes the reference's bytes: quantizing the unfolded weight once, as the ONNX and ExecuTorch
    backends do (its per-channel scales, bias and BN stay the resolution's own). Returns (convs shared, kept)."""
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]

    def int8_filter(sg, op):
        t = sg.tensors[int(op.inputs[1])]
        data = model.buffers[t.buffer].data
        if t.type != 9 or data is None or not len(data):
            return None
        return t, np.frombuffer(bytes(data), dtype=np.int8)

    ref = model.subgraphs[ref_index]
    ref_convs = conv_ops(ref, codes)
    shared = kept = 0
    for si, sg in enumerate(model.subgraphs):
        convs = conv_ops(sg, codes)
        if si == ref_index or len(convs) != len(ref_convs):
            continue
        for op, rop in zip(convs, ref_convs):
            mine, theirs = int8_filter(sg, op), int8_filter(ref, rop)
            if mine is None or theirs is None or mine[0].buffer == theirs[0].buffer:
                continue
            (t, q), (rt, rq) = mine, theirs
            if list(t.shape) != list(rt.shape) or q.shape != rq.shape:
                kept += 1
                continue
            diff = np.abs(q.astype(np.int16) - rq)
            if diff.max() > 1 or np.count_nonzero(diff) > INT8_TIE_FRACTION * q.size:
                kept += 1
                continue
            t.buffer = rt.buffer
            shared += 1
    return shared, kept


def share_bias_scales(model):
    """The CPU-only int8 variant: each per-channel CONV_2D / DEPTHWISE_CONV_2D bias takes its filter's scale vector
    as its own quantization scale, so the builder stores that vector once (`make_builder` dedupes vectors) instead of
    a per-resolution input_scale × filter_scale copy. TFLite's int8 CPU kernels never read the bias scale
    (`kernel_util.cc` PopulateConvolutionQuantizationParams uses input_scale × filter_scale; XNNPACK likewise); the
    GPU delegate and NNAPI do, so the result is correct on CPU only. Returns how many biases took the filter's scale."""
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]
    shared = 0
    for sg in model.subgraphs:
        for op in conv_ops(sg, codes):
            if len(op.inputs) < 3 or op.inputs[2] < 0 or sg.tensors[int(op.inputs[2])].type != 2:  # int32 bias
                continue
            fq, bq = sg.tensors[int(op.inputs[1])].quantization, sg.tensors[int(op.inputs[2])].quantization
            if fq is None or bq is None or fq.scale is None or bq.scale is None:
                continue
            if len(fq.scale) > 1 and len(bq.scale) == len(fq.scale):
                bq.scale = np.asarray(fq.scale, dtype=np.float32)
                shared += 1
    return shared


def float_logits(model):
    """int8: each signature output that is a DEQUANTIZE of a FULLY_CONNECTED's int8 output (the classifier) becomes
    that FULLY_CONNECTED's own float output, the op run hybrid: its int8 input DEQUANTIZEd (the old output tensor
    reused for it), its int32 bias float (bias × input_scale × filter_scale[c], the value the int8 kernel adds), its
    int8 filter bytes unchanged (still shared across signatures). Logits rounded to the 256 levels of one int8 scale
    tie where the float ones differ by less than a step (issue 22). The kernel (`fully_connected.cc`
    EvalHybridDense) quantizes the input per batch row at run time (`asymmetricQuantizeInputs`: BatchQuantizeFloats
    with an offset), applies a per-channel filter's scales (VerifyPerChannelQuantization) and writes float; the
    opcode version (`op_version.cc`) is 12 for a per-channel filter, 9 per-tensor. Returns how many were rewritten."""
    S = schema()
    O = S.BuiltinOperator
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]

    def opcode(code, version):
        for i, oc in enumerate(model.operatorCodes):
            if codes[i] == code and oc.version == version:
                return i
        oc = S.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
        model.operatorCodes.append(oc)
        codes.append(code)
        return len(codes) - 1

    def scales(t):
        q = t.quantization
        return None if q is None or q.scale is None or not len(q.scale) else np.asarray(q.scale, dtype=np.float64)

    rewritten = 0
    for sd in model.signatureDefs:
        sg = model.subgraphs[sd.subgraphIndex]
        producers = {int(o): op for op in sg.operators for o in op.outputs}
        uses = {}
        for i in [int(i) for op in sg.operators for i in op.inputs] + [int(i) for i in sg.outputs]:
            uses[i] = uses.get(i, 0) + 1
        for out in sd.outputs:
            oi = int(out.tensorIndex)
            dq = producers.get(oi)
            if dq is None or codes[dq.opcodeIndex] != O.DEQUANTIZE or sg.tensors[oi].type != 0:
                continue
            qi = int(dq.inputs[0])
            fc = producers.get(qi)
            if fc is None or codes[fc.opcodeIndex] != O.FULLY_CONNECTED or uses.get(qi) != 1:
                continue
            xi, wi = int(fc.inputs[0]), int(fc.inputs[1])
            bi = int(fc.inputs[2]) if len(fc.inputs) > 2 and fc.inputs[2] >= 0 else None
            x, w, q = sg.tensors[xi], sg.tensors[wi], sg.tensors[qi]
            opts = fc.builtinOptions
            w_scale, x_scale = scales(w), scales(x)
            if (x.type, w.type, q.type) != (9, 9, 9) or w_scale is None or x_scale is None or opts is None \
                    or opts.weightsFormat != S.FullyConnectedOptionsWeightsFormat.DEFAULT \
                    or np.any(np.asarray(w.quantization.zeroPoint if w.quantization.zeroPoint is not None else 0)):
                continue
            if bi is not None:
                b = sg.tensors[bi]
                data = model.buffers[b.buffer].data
                if b.type != 2 or data is None or not len(data) or uses.get(bi) != 1:
                    continue
                bias = np.frombuffer(bytes(data), dtype=np.int32) * float(x_scale[0]) * w_scale
                b.type, b.quantization, b.buffer = 0, None, add_buffer(model, bias.astype(np.float32))
            # the int8 output tensor, now unused, becomes the dequantized input
            q.type, q.quantization, q.name = 0, None, None
            q.shape = np.array(x.shape, dtype=np.int32)
            q.shapeSignature = None if x.shapeSignature is None else np.array(x.shapeSignature, dtype=np.int32)
            dq.inputs, dq.outputs = np.array([xi], dtype=np.int32), np.array([qi], dtype=np.int32)
            fc.inputs[0], fc.outputs = qi, np.array([oi], dtype=np.int32)
            opts.asymmetricQuantizeInputs = True
            fc.opcodeIndex = opcode(O.FULLY_CONNECTED, 12 if len(w_scale) > 1 else 9)
            sg.operators.remove(dq)
            sg.operators.insert(sg.operators.index(fc), dq)
            rewritten += 1
    used = sorted({op.opcodeIndex for sg in model.subgraphs for op in sg.operators})
    if len(used) < len(model.operatorCodes):  # the int8 FULLY_CONNECTED's entry, if no op uses it any more
        new = {old: n for n, old in enumerate(used)}
        model.operatorCodes = [model.operatorCodes[i] for i in used]
        for sg in model.subgraphs:
            for op in sg.operators:
                op.opcodeIndex = new[op.opcodeIndex]
    return rewritten


def pack(model):
    builder = make_builder()
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def post_process(flat, job, precision):
    S = schema()
    model = S.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    report = {"convs_shared": None, "convs_kept": None}
    keys = {sd.signatureKey.decode(): sd.subgraphIndex for sd in model.signatureDefs}
    want = [item["key"] for item in job["entries"]]
    if sorted(keys) != sorted(want):
        raise RuntimeError(f"converter made signatures {sorted(keys)}; expected {sorted(want)}")
    if job["share_weights"] and precision in ("fp32", "fp16") and len(keys) > 1:
        report["convs_shared"], report["convs_kept"] = share_float_weights(model, keys[job["reference"]],
                                                                           job.get("fold_values", ()))
    if precision == "int8" and len(keys) > 1:
        report["int8_ties_shared"], _ = share_int8_weights(model, keys[job["reference"]])
    if precision == "int8":
        report["float_logits"] = float_logits(model)
    if job["strip_names"]:  # names of internal tensors cost ~20 KB per signature; signatures keep their own
        io = {(sd.subgraphIndex, int(m.tensorIndex)) for sd in model.signatureDefs for m in sd.inputs + sd.outputs}
        for gi, sg in enumerate(model.subgraphs):
            for ti, t in enumerate(sg.tensors):
                if (gi, ti) not in io:
                    t.name = None
    dedupe_buffers(model)
    out, cpu_only = pack(model), None
    if precision == "int8" and job.get("int8_cpu_out"):  # the CPU-only artifact beside it
        report["bias_scales_shared"] = share_bias_scales(model)
        cpu_only = pack(model)
        report["cpu_only_bytes"] = len(cpu_only)
    return out, report, cpu_only


def exit_with_parent() -> None:
    """Stop when the process that started this one is gone (killed convert): no orphan keeps converting."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(path):
    """Run the job: the SavedModel once, then one .tflite per precision in job["precisions"] (written to
    job["outs"][precision]); report.json holds, per precision, what the post-pass did, the bytes and the seconds
    (the shared SavedModel time counted in each)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    exit_with_parent()
    start = time.time()
    job = json.load(open(path))
    keys = saved_model(job)
    shared = time.time() - start
    reports = {}
    with saved_model_loaded_once():
        for precision in job["precisions"]:
            t = time.time()
            flat = convert(job, precision, keys)
            out, report, cpu_only = post_process(flat, job, precision)
            with open(job["outs"][precision], "wb") as f:
                f.write(out)
            if cpu_only is not None:
                with open(job["int8_cpu_out"], "wb") as f:
                    f.write(cpu_only)
            report.update(bytes=len(out), converter_bytes=len(flat), seconds=shared + time.time() - t)
            log(f"{precision}: converter {len(flat)} bytes, stored {len(out)} bytes")
            reports[precision] = report
    with open("report.json", "w") as f:
        json.dump(reports, f)


if __name__ == "__main__":
    main(sys.argv[1])
