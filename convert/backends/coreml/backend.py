"""The Core ML exporter (module docstring of `resflex.convert.backends.coreml` says how the weights are shared)."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...runtimes import CoreMLRuntime, Spatial, spatial_keys
from ..base import Entry, Exported, check_calib_method
from .common import (INPUT_NAME, NOT_ON_HOST, ON_MACOS, OUTPUT_NAME, coremltools, function_name, gc_skips_existing,
                     quiet, validated_once_per_pipeline)
from .inspect import check_package
from .mil_reference import ReferenceRunner, on_int4_grid

# Passes of coremltools' default pipeline that fold a BN / per-channel scale / bias into the conv weights
# (fuse_elementwise_to_batchnorm would turn the affine mul + add into a batch_norm: 4 vectors, not 2).
FOLD_PASSES = ("common::fuse_conv_batchnorm", "common::fuse_conv_scale", "common::fuse_conv_bias",
               "common::fuse_elementwise_to_batchnorm")
# Ops whose const weights int8 quantizes, whatever their size.
QUANTIZED_WEIGHT_OPS = ("conv", "conv_transpose", "linear", "matmul")


class CoreMLBackend:
    """Exports baked modules to one multifunction `.mlpackage` per precision (fp16, int8 or int4 weights)."""

    name = "coreml"
    # int4: 4-bit weights per output channel (iOS 18's constexpr_blockwise_shift_scale), weight-only. Per-block
    # scales (block 8 / 16 / 32 along the input channels) were no more accurate on MobileNetV2 ×0.35 — its
    # depthwise and first convs have too few input channels for a block — so one scale per channel it is.
    precisions = ("fp16", "int8", "int4")
    bn_style = "affine"  # what `export` expects: conv weights untouched, BN as a per-channel scale + shift
    own_process = False  # exported here, or in a `BackgroundExport` child

    # int8 is weight-only by default (nothing to calibrate); W8A8 takes each activation's min/max over the samples
    # (`mil_reference.activation_stats`, what coremltools measures), the only rule coremltools' pass offers.
    calib_methods = ("minmax",)
    sharing = "size"  # no effect: the BN scale is folded into the weights' constexpr scale, expanded at load time

    def __init__(self, w8a8: bool = False, calib_samples: int = 32, calib_method: str | None = None,
                 sharing: str = "size"):
        """w8a8: with precision "int8", also quantize activations to int8, calibrated on the first
        `calib_samples` samples of `calib[r]` for each resolution r."""
        if calib_samples < 1:
            raise ValueError(f"calib_samples must be ≥ 1, got {calib_samples}")
        self.w8a8 = w8a8
        self.sharing = sharing
        self.calib_samples = calib_samples
        self.calib_method = check_calib_method(self.name, calib_method, self.calib_methods)

    @property
    def calibrates_activations(self) -> bool:
        """Whether int8 calibrates activation ranges (W8A8) or only quantizes weights (the default)."""
        return self.w8a8

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        if precision not in self.precisions:
            raise ValueError(f"Core ML precision {precision!r} not supported; expected one of: "
                             f"{', '.join(self.precisions)}")
        if not baked:
            raise ValueError("Core ML export needs at least one resolution")
        resolutions = spatial_keys(baked)  # resolutions (Resizable Networks: × stage-scale configurations)
        w8a8 = self.w8a8 and precision == "int8"
        if w8a8:
            missing = [r for r in resolutions if r not in calib or len(calib[r]) == 0]
            if missing:
                raise ValueError(f"Core ML W8A8 needs calibration data at resolutions {missing}")
        ct = coremltools()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        file_name = f"model_{precision}.mlpackage"
        with (tempfile.TemporaryDirectory(prefix=".coreml_", dir=out_dir) as tmp, quiet(),
              validated_once_per_pipeline(), gc_skips_existing()):
            tmp = Path(tmp)
            desc = ct.utils.MultiFunctionDescriptor()
            for r in resolutions:
                samples = calib[r][: self.calib_samples].detach().float() if w8a8 else None
                part = tmp / f"{function_name(r)}.mlpackage"
                self.convert(baked[r], Spatial.of(r).resolution, precision, samples).save(str(part))
                desc.add_function(str(part), "main", function_name(r))
            desc.default_function_name = function_name(resolutions[0])
            ct.utils.save_multifunction(desc, str(tmp / file_name))
            check_package(tmp / file_name, resolutions)
            target = out_dir / file_name
            if target.exists():
                shutil.rmtree(target)
            (tmp / file_name).rename(target)
        entries = tuple(Entry(s.resolution, function_name(s), INPUT_NAME, OUTPUT_NAME,
                              (1, 3, s.resolution, s.resolution), s.stage_scales) for s in map(Spatial.of, resolutions))
        notes = "W8A8: int8 weights and activations" if w8a8 else ""
        if not ON_MACOS:
            notes = "; ".join(n for n in (NOT_ON_HOST, notes) if n)
        return Exported(self.name, precision, (file_name,), "NCHW", entries, runs_on_host=ON_MACOS, notes=notes)

    def convert(self, module: nn.Module, resolution: int, precision: str, samples: Tensor | None = None):
        """One resolution → a single-function ML program (`ct.models.MLModel`, function "main"): fp16
        compute; int8 weights for "int8", and int8 activations too when `samples` (NCHW calibration batch)
        is given."""
        if samples is not None and precision != "int8":
            raise ValueError("activation quantization needs precision 'int8'")
        ct = coremltools()
        import coremltools.optimize.coreml as cto

        module = module.eval()
        example = torch.zeros(1, 3, resolution, resolution)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # check_trace re-traces and compares (40% of the trace time); parity checks the artifact anyway
            traced = torch.jit.trace(module, example, check_trace=False)
        pipeline = ct.PassPipeline.DEFAULT
        pipeline.remove_passes(list(FOLD_PASSES))
        if precision in ("int8", "int4"):  # quantized before folding: the data is then the same in every function
            quantized = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype=precision,
                                                    granularity="per_channel", weight_threshold=0)
            pipeline.append_pass("compression::linear_quantize_weights")
            pipeline.set_options("compression::linear_quantize_weights", {
                "config": cto.OptimizationConfig(op_type_configs={op: quantized for op in QUANTIZED_WEIGHT_OPS})})
        pipeline.append_pass("resflex::fold_affine_into_weight_scales")
        pipeline.append_pass("common::dead_code_elimination")
        if samples is not None:  # after folding, so that conv → activation patterns are recognised
            pipeline.append_pass("resflex::quantize_activations")
            pipeline.set_options("resflex::quantize_activations", {
                "samples": {INPUT_NAME: samples},
                "config": cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                                           dtype="int8")),
            })
            pipeline.append_pass("common::dead_code_elimination")
        pipeline.append_pass("resflex::dedup_small_consts")
        pipeline.append_pass("resflex::compact_names")
        with validated_once_per_pipeline():
            return ct.convert(
                traced,
                inputs=[ct.TensorType(name=INPUT_NAME, shape=(1, 3, resolution, resolution), dtype=np.float32)],
                outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                convert_to="mlprogram",
                minimum_deployment_target=ct.target.iOS18,
                compute_precision=ct.precision.FLOAT16,
                pass_pipeline=pipeline,
                skip_model_load=True,
            )

    def runner(self, exported: Exported, out_dir: Path) -> CoreMLRuntime | None:
        if not ON_MACOS:
            return None
        return CoreMLRuntime(Path(out_dir) / exported.files[0])

    @staticmethod
    def reference_runner(exported: Exported, out_dir: Path) -> ReferenceRunner:
        """Where Core ML cannot run: the saved program evaluated by resflex's MIL reference evaluator."""
        return ReferenceRunner(Path(out_dir) / exported.files[0])

    @staticmethod
    def parity_reference(module: nn.Module, precision: str) -> nn.Module:
        """What an artifact of `precision` should compute: the baked module; int4, with its weights on the int4
        grid (the 4-bit loss shows in top-1, not as a conversion error)."""
        return on_int4_grid(module) if precision == "int4" else module
