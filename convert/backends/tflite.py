"""TFLite: torch → ONNX → onnx2tf → one multi-signature `.tflite` per precision (fp32, fp16, int8).

Per precision, every resolution becomes one signature `serving_{r}` (input `image`, NHWC float32, batch 1; output
`logits`) of ONE `.tflite` file, so constants identical across resolutions are stored once:

1. each baked module → ONNX (`export_onnx_file`, NCHW) in a temporary folder;
2. one subprocess in the onnx2tf environment (`resflex.convert.onnx2tf_env`; onnx2tf and TensorFlow 2.19 clash with
   the main environment), the script `tflite_worker.py` beside this module, turns every ONNX file into an onnx2tf
   Keras model (NHWC input; onnx2tf transposes), wraps them as the signatures of one SavedModel and runs
   `tf.lite.TFLiteConverter.from_saved_model` over all signatures at once. Precisions: fp32; fp16 (float16 weights,
   float32 compute and I/O); int8 = full-integer static quantization (`TFLITE_BUILTINS_INT8`, per-channel weights)
   calibrated per signature on `calib[r]` (NHWC, batch 1), with float32 input and output (QUANTIZE / DEQUANTIZE at
   the ends) — the converter settings of onnx2tf's `-oiqt` output `*_integer_quant.tflite` (its
   `*_full_integer_quant.tflite` has int8 I/O unless `-iqd float32 -oqd float32`), here calibrated on our own data
   and built multi-signature; the logits stay float (`tflite_worker.float_logits`): the classifier's int8
   FULLY_CONNECTED → DEQUANTIZE becomes a hybrid FULLY_CONNECTED (input DEQUANTIZEd, same int8 filter, float bias,
   input quantized per run, version 12), as 256-level logits tie on near ties (issue 22). The GPU delegate takes
   FULLY_CONNECTED only up to version 9 (`model_builder.cc` CheckMaxSupportedOpVersion(registration, 9)), so on GPU
   that last op runs on the CPU;
3. a post-pass on the flatbuffer stores each distinct constant once, writes each distinct numeric vector once
   (e.g. the all-zero int8 zero points) and, with `strip_names` (default), drops the names of internal tensors
   (signature inputs and outputs keep theirs; the signature runner addresses tensors by signature names).

Weight sharing with BN folded (`bn_style = "fold"`, the fastest graph):
- int8: per-channel symmetric quantization is invariant to a per-channel positive scale, so the weights folded with
  each resolution's BN quantize to the same int8 bytes — up to float rounding at ties, which the post-pass evens
  out (`share_int8_weights`); only the int32 biases and the per-channel scales (tensor metadata) are per
  resolution.
- fp32/fp16 (`share_weights=True`, the default): in every signature but the largest resolution's, each conv whose
  filter is the reference filter scaled per output channel (W_r = k · W_ref) is rewritten as
  `MUL(conv(x; W_ref, b / k), k)` with the conv's activation moved onto the MUL, so the filter bytes are shared.
  Costs one elementwise MUL per conv at the smaller resolutions; `share_weights=False` keeps the plain folded
  convs (fastest, but each resolution stores its own filters); so does `sharing = "speed"` (`resflex convert
  --sharing speed`). `sharing = "auto"` keeps the folded filters of the convs whose MUL costs the most time per
  filter byte within `size_budget` × the floor (`resflex.convert.bake.plan_sharing`; the worker keeps the
  reference signature's convs whose output elements per filter element are among the plan's `fold_values`).

int8 for CPU (`int8_cpu_only=True`, the default): beside `model_int8.tflite` the same conversion writes
`model_int8_cpu.tflite`, whose per-channel conv biases take their filter's scale vector as their quantization scale,
so the builder stores that vector once instead of a per-resolution input_scale × filter_scale copy (4 bytes per
channel per resolution; ×0.35 MobileNetV2, 5 resolutions: 907 → 766 KB). TFLite's int8 CPU kernels (and XNNPACK)
compute input_scale × filter_scale and never read the bias scale, so its outputs on CPU are bit-identical; the GPU
delegate and NNAPI read it. The manifest records `compute_units: ["CPU"]` for it and `["GPU", "NNAPI"]` for
`model_int8.tflite`, so the LUT offers each int8 point on one artifact, and readers refuse a CPU-only artifact's point
on another unit. An app that runs TFLite on CPU only ships the smaller file; one that may use the GPU ships both.

QAT activation ranges (`convert --calib-from qat`) do not reach this backend: its int8 is always calibrated on
`calib[r]` (the manifest says `calibration.source: images`). The TF converter takes activation ranges only from a
`representative_dataset` (onnx2tf's own `-oiqt` path the same: `converter.representative_dataset =
representative_dataset_gen`, fed from `-cind` data) or from FakeQuant ops in the graph, and onnx2tf makes none from
an ONNX QDQ graph: a QuantizeLinear whose consumers are DequantizeLinear is dropped ("If QuantizeLinear is
immediately followed by Cast -> DequantizeLinear or DequantizeLinear only, bypass fake-quant", ops/QuantizeLinear.py),
any other becomes float `round(x / y_scale) + zero_point` / `clip_by_value` / multiply ops, which the converter
then calibrates like any tensor. Inserting `tf.quantization.fake_quant_with_min_max_vars` at the QAT points of the
onnx2tf Keras model in the worker would be the way in; not built.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..background import ChildJob, worker_folder
from ..bake import DEFAULT_SIZE_BUDGET, SharingPlan, check_size_budget, sharing_plan
from ..onnx2tf_env import find_onnx2tf
from ..runtimes import LiteRTRuntime, Spatial, spatial_keys
from .base import Entry, Exported, check_calib_method
from .onnx import export_onnx_file

INPUT, OUTPUT = "image", "logits"
WORKER = Path(__file__).with_name("tflite_worker.py")  # runs in the onnx2tf environment
SAMPLE_DATA = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf downloads it unless present
log = logging.getLogger(__name__)


def signature_key(resolution: int | Spatial) -> str:
    return f"serving_{Spatial.of(resolution).tag}"


def artifact_name(precision: str) -> str:
    return f"model_{precision}.tflite"


CPU_ONLY_INT8 = "model_int8_cpu.tflite"  # int8 whose bias scales only the CPU kernels may ignore (module docstring)


class TFLiteBackend:
    name = "tflite"
    precisions = ("fp32", "fp16", "int8")
    bn_style = "fold"  # int8 weights still quantize to identical bytes; floats are shared by the MUL rewrite
    own_process = True  # always converts in the onnx2tf environment's process: `start` returns its job
    # int8 activation calibration: the TFLite converter's calibrator records each tensor's min and max over the
    # representative dataset and offers no other observer (no histogram / percentile), so min/max is the only choice.
    calib_methods = ("minmax",)
    sharing = "size"  # "speed": float signatures keep their BN-folded filters (no MUL rewrite); int8 is the same
    size_budget = DEFAULT_SIZE_BUDGET  # "auto": float file size ÷ its floor (`float_plan`)

    def __init__(self, share_weights: bool = True, strip_names: bool = True, timeout_s: float | None = 3600.0,
                 calib_method: str | None = None, sharing: str = "size", size_budget: float = DEFAULT_SIZE_BUDGET,
                 int8_cpu_only: bool = True):
        self.share_weights = share_weights
        self.int8_cpu_only = int8_cpu_only  # int8 also as the CPU-only artifact (module docstring)
        self.sharing = sharing
        self.size_budget = check_size_budget(size_budget)
        self.strip_names = strip_names
        self.timeout_s = timeout_s
        self.calib_method = check_calib_method(self.name, calib_method, self.calib_methods)

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        return self.start(baked, (precision,), calib, out_dir).exported(precision)

    def start(self, baked: Mapping[int, nn.Module], precisions: Sequence[str], calib: Mapping[int, Tensor],
              out_dir: Path) -> TFLiteJob:
        """Begin converting `baked` to one `.tflite` per precision in the background: the ONNX files and calibration
        data are written here, then one worker process in the onnx2tf environment builds the SavedModel once and
        converts it at every precision. `TFLiteJob.result()` waits for it."""
        unknown = [p for p in precisions if p not in self.precisions]
        if unknown or not precisions:
            raise ValueError(f"TFLite precision {unknown[0] if unknown else None!r}; expected one of: "
                             f"{', '.join(self.precisions)}")
        python = find_onnx2tf()  # fails early, with the install instructions, when the environment is missing
        resolutions = spatial_keys(baked)  # resolutions (Resizable Networks: × stage-scale configurations)
        if "int8" in precisions:
            missing = [r for r in resolutions if r not in calib or len(calib[r]) == 0]
            if missing:
                raise ValueError(f"TFLite int8 needs calibration data at every resolution; none for {missing}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        work = worker_folder(self.name)
        try:
            # onnx2tf fetches this sample batch from the internet for 4-D image inputs unless it is in its working
            # directory; it only feeds onnx2tf's own checks, so seeded noise does.
            np.save(work / SAMPLE_DATA, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
            entries = []
            for r in resolutions:
                res, tag = Spatial.of(r).resolution, Spatial.of(r).tag
                export_onnx_file(baked[r], res, work / f"model_{tag}.onnx")
                item = {"resolution": res, "key": signature_key(r), "tag": tag, "onnx": f"model_{tag}.onnx",
                        "calib": None}
                if "int8" in precisions:
                    nhwc = calib[r].detach().cpu().float().permute(0, 2, 3, 1).contiguous().numpy()
                    np.save(work / f"calib_{tag}.npy", nhwc)
                    item["calib"] = f"calib_{tag}.npy"
                entries.append(item)
            plan = self.float_plan(baked)
            job = {"entries": entries, "precisions": list(precisions), "input": INPUT, "output": OUTPUT,
                   "share_weights": plan is not None, "strip_names": self.strip_names,
                   "fold_values": [] if plan is None else list(plan.fold_values),
                   "folded_layers": None if plan is None else list(plan.folded),
                   "reference": signature_key(resolutions[0]),
                   "outs": {p: str((out_dir / artifact_name(p)).resolve()) for p in precisions}}
            if "int8" in precisions and self.int8_cpu_only:
                job["int8_cpu_out"] = str((out_dir / CPU_ONLY_INT8).resolve())
            (work / "job.json").write_text(json.dumps(job))
            return TFLiteJob(self, python, work, job, resolutions)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def float_plan(self, baked: Mapping[int, nn.Module]) -> SharingPlan | None:
        """The fp32/fp16 sharing plan over the convs whose BN-folded filters differ between the two largest
        resolutions (None: every filter kept per resolution — `sharing="speed"`, unshared, or one resolution)."""
        keys = spatial_keys(baked)
        if not self.share_weights or self.sharing == "speed" or len(keys) < 2:
            return None
        first, second = baked[keys[0]], dict(baked[keys[1]].named_modules())
        names = [n for n, m in first.named_modules() if isinstance(m, nn.Conv2d)
                 and isinstance(second.get(n), nn.Conv2d) and not torch.equal(m.weight, second[n].weight)]
        budget = self.size_budget if self.sharing == "auto" else 1.0
        return sharing_plan(first.eval(), Spatial.of(keys[0]).resolution, names, len(keys), budget)

    def runner(self, exported: Exported, out_dir: Path) -> LiteRTRuntime:
        return LiteRTRuntime(Path(out_dir) / exported.files[0])


class TFLiteJob(ChildJob):
    """A TFLite conversion running in the onnx2tf environment (`TFLiteBackend.start`)."""

    def __init__(self, backend: TFLiteBackend, python: Path, work: Path, job: dict, resolutions: list[int]):
        self.backend, self.python, self.job, self.resolutions = backend, python, job, resolutions
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)  # the main environment's packages must not shadow the tool's pinned ones
        self._stderr = open(work / "stderr.txt", "w+")  # a file, not a pipe: nothing blocks while nobody reads
        self.start = time.perf_counter()
        # -I: the script's folder (this package: onnx.py, ...) must not shadow the environment's packages
        proc = subprocess.Popen([str(python), "-I", str(WORKER), "job.json"], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=self._stderr, text=True)
        super().__init__("onnx2tf/TFLite conversion", work, proc, backend.timeout_s)

    def exported(self, precision: str) -> Exported:
        """Wait for the worker; the `Exported` of one precision."""
        return self.result()[precision]

    def _collect(self, code: int) -> dict[str, Exported]:
        self._stderr.seek(0)
        stderr = self._stderr.read()
        for line in stderr.splitlines():
            if line.startswith("[resflex tflite]"):
                log.info(line)
        precisions = ", ".join(self.job["precisions"])
        if code != 0 or not (self.work / "report.json").exists():
            tail = "\n".join(line for line in stderr.splitlines()
                             if not line.startswith(("W0000", "E0000", "I0000", "WARNING: All log")))[-4000:]
            raise RuntimeError(f"onnx2tf/TFLite conversion ({precisions}) failed with exit code {code} (tool "
                               f"environment {self.python}):\n{tail}")
        reports = json.loads((self.work / "report.json").read_text())
        log.info("[resflex tflite] %s in %.1f s", precisions, time.perf_counter() - self.start)
        self.seconds = {p: reports[p]["seconds"] for p in self.job["precisions"]}
        return {p: self._exported(p, reports[p]) for p in self.job["precisions"]}

    def cancel(self) -> None:
        """Stop the worker (if still running), close its log and remove its working folder."""
        super().cancel()
        self._stderr.close()

    def _exported(self, precision: str, report: dict) -> Exported:
        rs = self.resolutions
        notes = (f"one multi-signature file, signatures {', '.join(signature_key(r) for r in rs)}; "
                 f"NHWC float32 input; {_PRECISION_NOTES[precision]}")
        folded = None
        if report.get("convs_shared") is not None:
            notes += (f"; float weights shared through a per-channel MUL in {report['convs_shared']} convs "
                      f"({report['convs_kept']} kept per resolution; --sharing {self.backend.sharing})")
            folded = tuple(self.job["folded_layers"] or ())
        if report.get("float_logits"):
            notes += (f"; float logits: the classifier's FULLY_CONNECTED runs hybrid (int8 filter, float input and "
                      f"output) in {report['float_logits']} signature(s)")
        if report.get("int8_ties_shared"):
            notes += (f"; {report['int8_ties_shared']} int8 filter(s) one rounding step off the reference's at a few "
                      "values take its bytes (the unfolded weight quantized once)")
        exported = Exported(self.backend.name, precision, (artifact_name(precision),), "NHWC",
                            tuple(Entry(Spatial.of(r).resolution, signature_key(r), INPUT, OUTPUT,
                                        (1, Spatial.of(r).resolution, Spatial.of(r).resolution, 3),
                                        Spatial.of(r).stage_scales) for r in rs), True, notes, folded_layers=folded)
        if report.get("cpu_only_bytes") is None:
            return exported
        cpu_only = dataclasses.replace(exported, files=(CPU_ONLY_INT8,), compute_units=("CPU",), notes=notes + (
            f"; CPU only: {report['bias_scales_shared']} conv biases carry their filter's scales (the CPU kernels "
            "ignore bias scales; the GPU delegate and NNAPI read them)"))
        return dataclasses.replace(exported, compute_units=("GPU", "NNAPI"), companions=(cpu_only,))


_PRECISION_NOTES = {
    "fp32": "float32 weights and compute",
    "fp16": "float16 weights dequantized to float32 at load, float32 compute and I/O",
    "int8": "full-integer int8 (per-channel weights, static activations calibrated per signature) with float32 "
            "input and output",
}
