"""TFLite: torch → ONNX → onnx2tf → one multi-signature `.tflite` per precision (fp32, fp16, int8).

Per precision, every resolution becomes one signature `serving_{r}` (input `image`, NHWC float32, batch 1; output
`logits`) of ONE `.tflite` file, so constants identical across resolutions are stored once:

1. each baked module → ONNX (`export_onnx_file`, NCHW) in a temporary folder;
2. one subprocess in the onnx2tf environment (`resflex.convert.onnx2tf_env`; onnx2tf and TensorFlow 2.19 clash
   with the main environment) turns every ONNX file into an onnx2tf Keras model (NHWC input; onnx2tf transposes),
   wraps them as the signatures of one SavedModel and runs `tf.lite.TFLiteConverter.from_saved_model` over all
   signatures at once. Precisions: fp32; fp16 (float16 weights, float32 compute and I/O); int8 = full-integer
   static quantization (`TFLITE_BUILTINS_INT8`, per-channel weights) calibrated per signature on
   `calib[r]` (NHWC, batch 1), with float32 input and output (QUANTIZE / DEQUANTIZE at the ends) — the converter
   settings of onnx2tf's `-oiqt` output `*_integer_quant.tflite` (its `*_full_integer_quant.tflite` has int8 I/O
   unless `-iqd float32 -oqd float32`), here calibrated on our own data and built multi-signature;
3. a post-pass on the flatbuffer stores each distinct constant once, writes each distinct numeric vector once
   (e.g. the all-zero int8 zero points) and, with `strip_names` (default), drops the names of internal tensors
   (signature inputs and outputs keep theirs; the signature runner addresses tensors by signature names).

Weight sharing with BN folded (`bn_style = "fold"`, the fastest graph):
- int8: per-channel symmetric quantization is invariant to a per-channel positive scale, so the weights folded with
  each resolution's BN quantize to the same int8 bytes; only the int32 biases and the per-channel scales (tensor
  metadata) are per resolution.
- fp32/fp16 (`share_weights=True`, the default): in every signature but the largest resolution's, each conv whose
  filter is the reference filter scaled per output channel (W_r = k · W_ref) is rewritten as
  `MUL(conv(x; W_ref, b / k), k)` with the conv's activation moved onto the MUL, so the filter bytes are shared.
  Costs one elementwise MUL per conv at the smaller resolutions; `share_weights=False` keeps the plain folded
  convs (fastest, but each resolution stores its own filters).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from ..onnx2tf_env import find_onnx2tf
from .base import Entry, Exported
from .onnx import export_onnx_file

INPUT, OUTPUT = "image", "logits"
SAMPLE_DATA = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf downloads it unless present
log = logging.getLogger(__name__)


def signature_key(resolution: int) -> str:
    return f"serving_{resolution}"


def artifact_name(precision: str) -> str:
    return f"model_{precision}.tflite"


class TFLiteBackend:
    name = "tflite"
    precisions = ("fp32", "fp16", "int8")
    bn_style = "fold"  # int8 weights still quantize to identical bytes; floats are shared by the MUL rewrite

    def __init__(self, share_weights: bool = True, strip_names: bool = True, timeout_s: float | None = 3600.0):
        self.share_weights = share_weights
        self.strip_names = strip_names
        self.timeout_s = timeout_s

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        if precision not in self.precisions:
            raise ValueError(f"TFLite precision {precision!r}; expected one of: {', '.join(self.precisions)}")
        python = find_onnx2tf()  # fails early, with the install instructions, when the environment is missing
        resolutions = sorted(baked, reverse=True)
        if precision == "int8":
            missing = [r for r in resolutions if r not in calib or len(calib[r]) == 0]
            if missing:
                raise ValueError(f"TFLite int8 needs calibration data at every resolution; none for {missing}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = artifact_name(precision)
        with tempfile.TemporaryDirectory(prefix="resflex-tflite-") as tmp:
            work = Path(tmp)
            # onnx2tf fetches this sample batch from the internet for 4-D image inputs unless it is in its working
            # directory; it only feeds onnx2tf's own checks, so seeded noise does.
            np.save(work / SAMPLE_DATA, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
            entries = []
            for r in resolutions:
                export_onnx_file(baked[r], r, work / f"model_{r}.onnx")
                item = {"resolution": r, "key": signature_key(r), "onnx": f"model_{r}.onnx", "calib": None}
                if precision == "int8":
                    nhwc = calib[r].detach().cpu().float().permute(0, 2, 3, 1).contiguous().numpy()
                    np.save(work / f"calib_{r}.npy", nhwc)
                    item["calib"] = f"calib_{r}.npy"
                entries.append(item)
            job = {"entries": entries, "precision": precision, "input": INPUT, "output": OUTPUT,
                   "share_weights": self.share_weights, "strip_names": self.strip_names,
                   "reference": signature_key(resolutions[0]),
                   "out": str((out_dir / name).resolve())}
            report = self._run_helper(python, work, job)
        notes = (f"one multi-signature file, signatures {', '.join(signature_key(r) for r in resolutions)}; "
                 f"NHWC float32 input; {_PRECISION_NOTES[precision]}")
        if report.get("convs_shared") is not None:
            notes += (f"; float weights shared through a per-channel MUL in {report['convs_shared']} convs "
                      f"({report['convs_kept']} kept per resolution)")
        return Exported(self.name, precision, (name,), "NHWC",
                        tuple(Entry(r, signature_key(r), INPUT, OUTPUT, (1, r, r, 3)) for r in resolutions),
                        True, notes)

    def _run_helper(self, python: Path, work: Path, job: dict) -> dict:
        (work / "job.json").write_text(json.dumps(job))
        (work / "resflex_tflite_helper.py").write_text(_HELPER)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)  # the main environment's packages must not shadow the tool's pinned ones
        start = time.perf_counter()
        try:
            done = subprocess.run([str(python), "resflex_tflite_helper.py", "job.json"], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"onnx2tf/TFLite conversion timed out after {self.timeout_s} s") from e
        for line in done.stderr.splitlines():
            if line.startswith("[resflex tflite]"):
                log.info(line)
        if done.returncode != 0 or not (work / "report.json").exists():
            tail = "\n".join(line for line in done.stderr.splitlines()
                             if not line.startswith(("W0000", "E0000", "I0000", "WARNING: All log")))[-4000:]
            raise RuntimeError(f"onnx2tf/TFLite conversion ({job['precision']}) failed with exit code "
                               f"{done.returncode} (tool environment {python}):\n{tail}")
        report = json.loads((work / "report.json").read_text())
        log.info("[resflex tflite] %s: %d bytes in %.1f s", job["precision"], report["bytes"],
                 time.perf_counter() - start)
        return report

    def runner(self, exported: Exported, out_dir: Path) -> TFLiteRunner:
        return TFLiteRunner(Path(out_dir) / exported.files[0])


_PRECISION_NOTES = {
    "fp32": "float32 weights and compute",
    "fp16": "float16 weights dequantized to float32 at load, float32 compute and I/O",
    "int8": "full-integer int8 (per-channel weights, static activations calibrated per signature) with float32 "
            "input and output",
}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # tflite-runtime was the predecessor (last release 2.14; needs numpy < 2)
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


class TFLiteRunner:
    """Runs signatures of one `.tflite` in LiteRT on the host (default CPU kernels with XNNPACK)."""

    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        self.interpreter = _interpreter_class()(model_path=str(self.path), num_threads=threads)
        self._signatures = {}

    def signatures(self) -> dict:
        return self.interpreter.get_signature_list()

    def run(self, entry: Entry, x: np.ndarray) -> np.ndarray:
        """x: float32 NCHW batch (normalised) → float32 logits (batch, classes), one image at a time."""
        if entry.name not in self._signatures:
            self._signatures[entry.name] = self.interpreter.get_signature_runner(entry.name)
        run = self._signatures[entry.name]
        nhwc = np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1))
        return np.concatenate([run(**{entry.input_name: image[None]})[entry.output_name] for image in nhwc])


# Runs inside the onnx2tf environment (numpy 1.26, TensorFlow 2.19), written next to the job as a file so its
# tracebacks show source lines. It must import nothing from resflex.
_HELPER = r'''
"""resflex TFLite helper: per-resolution ONNX files -> onnx2tf Keras models -> one SavedModel with a signature per
resolution -> one multi-signature .tflite (TFLiteConverter) -> shared-constant post-pass. Usage: helper job.json"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np


def log(msg):
    print(f"[resflex tflite] {msg}", file=sys.stderr, flush=True)


def serving_fn(model, output_name):
    def serve(image):
        out = model(image)
        return {output_name: out[0] if isinstance(out, (list, tuple)) else out}
    return serve


def convert(job):
    import onnx2tf
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    root, signatures = tf.Module(), {}
    for item in job["entries"]:
        r, key = item["resolution"], item["key"]
        t = time.time()
        model = onnx2tf.convert(input_onnx_file_path=item["onnx"], output_folder_path=f"onnx2tf_{r}",
                                disable_model_save=True, non_verbose=True)
        shape = tuple(int(d) for d in model.inputs[0].shape)
        if shape != (1, r, r, 3):
            raise RuntimeError(f"onnx2tf made input shape {shape} at resolution {r}; expected (1, {r}, {r}, 3)")
        fn = tf.function(serving_fn(model, job["output"]),
                         input_signature=[tf.TensorSpec(shape, tf.float32, name=job["input"])])
        setattr(root, f"model_{r}", model)
        setattr(root, f"serve_{r}", fn)
        signatures[key] = fn.get_concrete_function()
        log(f"onnx2tf {r}x{r}: {time.time() - t:.1f} s")
    tf.saved_model.save(root, "merged_saved_model", signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model("merged_saved_model", signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    precision = job["precision"]
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
    log(f"TFLite converter, {precision}, {len(signatures)} signatures: {time.time() - t:.1f} s")
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


def share_float_weights(model, ref_index):
    """In every subgraph but the reference, rewrite each float conv whose filter is the reference filter scaled
    per output channel (W = k * W_ref: BN folded at another resolution) as MUL(conv(x; W_ref, b / k), k), the
    conv's fused activation moved to the MUL, so the filter bytes are shared. Returns (convs shared, kept)."""
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

    def new_buffer(array):
        b = S.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8).copy()
        model.buffers.append(b)
        return len(model.buffers) - 1

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

    def convs(sg):
        return [op for op in sg.operators if codes[op.opcodeIndex] in (O.CONV_2D, O.DEPTHWISE_CONV_2D)]

    ref = model.subgraphs[ref_index]
    ref_producers = {int(o): op for op in ref.operators for o in op.outputs}
    ref_convs = convs(ref)
    shared = kept = 0
    for si, sg in enumerate(model.subgraphs):
        if si == ref_index:
            continue
        # Convs pair up in graph order (other ops may differ: e.g. explicit PADs exist only where SAME padding
        # differs from the ONNX pads at that resolution); each pair is checked below before anything is shared.
        pairs = dict(zip(map(id, convs(sg)), ref_convs)) if len(convs(sg)) == len(ref_convs) else {}
        if not pairs:
            log(f"signature subgraph {sg.name}: conv count differs from the reference; its weights are not shared")
            continue
        producers = {int(o): op for op in sg.operators for o in op.outputs}
        operators = []
        for op in sg.operators:
            operators.append(op)
            if id(op) not in pairs:
                continue
            rop = pairs[id(op)]
            code = codes[op.opcodeIndex]
            if codes[rop.opcodeIndex] != code:
                kept += 1
                continue
            w, rw = float_const(sg, producers, int(op.inputs[1])), float_const(ref, ref_producers, int(rop.inputs[1]))
            if w is None or rw is None or w[1].shape != rw[1].shape or sg.tensors[w[0]].type != ref.tensors[rw[0]].type:
                kept += 1
                continue
            (wi, W), (rwi, RW) = w, rw
            if np.array_equal(W, RW):
                sg.tensors[wi].buffer = ref.tensors[rwi].buffer
                shared += 1
                continue
            axis = 0 if code == O.CONV_2D else 3  # output channels: conv [O,H,W,I], depthwise [1,H,W,O]
            Wc = np.moveaxis(W, axis, 0).reshape(W.shape[axis], -1)
            Rc = np.moveaxis(RW, axis, 0).reshape(W.shape[axis], -1)
            norm = (Rc * Rc).sum(1)
            k = np.where(norm > 0, (Wc * Rc).sum(1) / np.where(norm > 0, norm, 1.0), 1.0)
            tol = 1e-5 if sg.tensors[wi].type == 0 else 4e-3  # float32 / float16 rounding of the folded filters
            err = np.abs(Wc - k[:, None] * Rc).max(1)
            if np.any(err > tol * np.maximum(np.abs(Wc).max(1), 1e-30)) or np.any(np.abs(k) <= 1e-6 * np.abs(k).max()):
                kept += 1
                continue
            sg.tensors[wi].buffer = ref.tensors[rwi].buffer
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                bias = float_const(sg, producers, int(op.inputs[2]))
                if bias is None:
                    raise RuntimeError(f"conv bias in subgraph {sg.name} is not a float constant")
                bi, B = bias
                sg.tensors[bi].buffer = new_buffer((B / k).astype(_NP[sg.tensors[bi].type]))
            out = sg.tensors[op.outputs[0]]
            name = out.name or b"conv"
            mid = new_tensor(sg, out.shape, name + b"/unscaled", signature=out.shapeSignature)
            scale = new_tensor(sg, [k.size], name + b"/bn_scale", new_buffer(k.astype(np.float32)))
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


def post_process(flat, job):
    S = schema()
    model = S.ModelT.InitFromPackedBuf(bytearray(flat), 0)
    report = {"convs_shared": None, "convs_kept": None}
    keys = {sd.signatureKey.decode(): sd.subgraphIndex for sd in model.signatureDefs}
    want = [item["key"] for item in job["entries"]]
    if sorted(keys) != sorted(want):
        raise RuntimeError(f"converter made signatures {sorted(keys)}; expected {sorted(want)}")
    if job["share_weights"] and job["precision"] in ("fp32", "fp16") and len(keys) > 1:
        report["convs_shared"], report["convs_kept"] = share_float_weights(model, keys[job["reference"]])
    if job["strip_names"]:  # names of internal tensors cost ~20 KB per signature; signatures keep their own
        io = {(sd.subgraphIndex, int(m.tensorIndex)) for sd in model.signatureDefs for m in sd.inputs + sd.outputs}
        for gi, sg in enumerate(model.subgraphs):
            for ti, t in enumerate(sg.tensors):
                if (gi, ti) not in io:
                    t.name = None
    dedupe_buffers(model)
    builder = make_builder()
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), report


def main(path):
    start = time.time()
    job = json.load(open(path))
    flat = convert(job)
    out, report = post_process(flat, job)
    with open(job["out"], "wb") as f:
        f.write(out)
    report.update(bytes=len(out), converter_bytes=len(flat), seconds=time.time() - start)
    log(f"{job['precision']}: converter {len(flat)} bytes, stored {len(out)} bytes")
    with open("report.json", "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
'''
