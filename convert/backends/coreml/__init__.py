"""Core ML backend: one multifunction ML program (`model_{precision}.mlpackage`) per precision.

Every resolution becomes one function, `forward_{r}` (input `image`, NCHW float32 [1, 3, r, r]; output
`logits`), and the package's default function is the largest resolution. Multifunction packages need
deployment target iOS 18 / macOS 15.

Shared weights: `coremltools.utils.save_multifunction` stores byte-identical constants once, and a BN
folded into a conv makes its weights differ per resolution. So the modules are baked with `bn="affine"`
(conv, then `x * scale + shift`), converted without the passes that fold a scale / shift into conv
weights (`FOLD_PASSES`), and the pass `resflex::fold_affine_into_weight_scales` moves each resolution's
scale into the per-output-channel scale of a `constexpr_blockwise_shift_scale` weight and its shift into
the conv bias: the weight data (fp16, or int8 quantized once from the unfolded weight) is the same in
every function and stored once; what a function owns is one scale and one bias vector per conv. Core ML
materializes constexpr weights when it loads the model, so each function then runs as a plain BN-folded
conv network. Two more passes shrink what every function pays for its program text: identical small
constants (strides, pads, ...) stored once per function, and short variable names.

All of it happens in one `ct.convert` pass pipeline. int8 runs coremltools' own weight quantization pass
(`compression::linear_quantize_weights`: int8, symmetric, per output channel, every conv / linear weight
whatever its size) in that pipeline instead of calling `ct.optimize.coreml.linear_quantize_weights`,
which re-converts the model with the default pipeline: that folds the BN back into every weight not yet
quantized, and fails on the affine mul / add of an fp16 program (`fuse_elementwise_to_batchnorm` builds a
batch_norm with an fp32 mean and an fp16 gamma).

W8A8 (`CoreMLBackend(w8a8=True)`, precision "int8"): coremltools calibrates activations with
`MLModel.predict`, which exists only on macOS. Here the ranges come from evaluating the converted MIL
program itself in torch (`_MILEvaluator`: the ops CNN classifiers convert to) on `calib[r]`; coremltools'
own passes then insert the quantize / dequantize pairs, as `ct.optimize.coreml.linear_quantize_activations`
would.

Core ML cannot run on Linux: there the artifact is checked structurally (`inspect_coreml`) and its parity and
top-1 come from the saved program evaluated by `ReferenceRunner` (`CoreMLBackend.reference_runner`).
"""

from ...runtimes import CoreMLRuntime as CoreMLRunner
from .backend import FOLD_PASSES, QUANTIZED_WEIGHT_OPS, CoreMLBackend
from .common import INPUT_NAME, NOT_ON_HOST, ON_MACOS, OUTPUT_NAME, function_name
from .inspect import inspect_coreml
from .mil_reference import ReferenceRunner, activation_stats, on_int4_grid

__all__ = ["CoreMLBackend", "CoreMLRunner", "ReferenceRunner", "on_int4_grid", "inspect_coreml", "activation_stats",
           "function_name", "FOLD_PASSES", "QUANTIZED_WEIGHT_OPS", "INPUT_NAME", "OUTPUT_NAME", "ON_MACOS",
           "NOT_ON_HOST"]
