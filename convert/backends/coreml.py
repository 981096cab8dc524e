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

Core ML cannot run on Linux: there the artifact is checked structurally (`inspect_coreml`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Entry, Exported

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Passes of coremltools' default pipeline that fold a BN / per-channel scale / bias into the conv weights
# (fuse_elementwise_to_batchnorm would turn the affine mul + add into a batch_norm: 4 vectors, not 2).
FOLD_PASSES = ("common::fuse_conv_batchnorm", "common::fuse_conv_scale", "common::fuse_conv_bias",
               "common::fuse_elementwise_to_batchnorm")
# Ops whose const weights int8 quantizes, whatever their size.
QUANTIZED_WEIGHT_OPS = ("conv", "conv_transpose", "linear", "matmul")
ON_MACOS = sys.platform == "darwin"
NOT_ON_HOST = "Core ML cannot run on Linux: checked structurally"


def _ct():
    """coremltools, imported on first use (its import takes seconds and pulls in much of the toolchain),
    with this module's graph passes registered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools

    _register_passes()
    return coremltools


def function_name(resolution: int) -> str:
    return f"forward_{resolution}"


def package_bytes(path: Path | str) -> int:
    """Bytes on disk of an `.mlpackage` directory (every file inside it)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class CoreMLBackend:
    """Exports baked modules to one multifunction `.mlpackage` per precision (fp16 or int8 weights)."""

    name = "coreml"
    precisions = ("fp16", "int8")
    bn_style = "affine"  # what `export` expects: conv weights untouched, BN as a per-channel scale + shift

    def __init__(self, w8a8: bool = False, calib_samples: int = 32):
        """w8a8: with precision "int8", also quantize activations to int8, calibrated on the first
        `calib_samples` samples of `calib[r]` for each resolution r."""
        if calib_samples < 1:
            raise ValueError(f"calib_samples must be ≥ 1, got {calib_samples}")
        self.w8a8 = w8a8
        self.calib_samples = calib_samples

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        if precision not in self.precisions:
            raise ValueError(f"Core ML precision {precision!r} not supported; expected one of: "
                             f"{', '.join(self.precisions)}")
        if not baked:
            raise ValueError("Core ML export needs at least one resolution")
        resolutions = sorted(baked, reverse=True)
        w8a8 = self.w8a8 and precision == "int8"
        if w8a8:
            missing = [r for r in resolutions if r not in calib or len(calib[r]) == 0]
            if missing:
                raise ValueError(f"Core ML W8A8 needs calibration data at resolutions {missing}")
        ct = _ct()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        file_name = f"model_{precision}.mlpackage"
        with tempfile.TemporaryDirectory(prefix=".coreml_", dir=out_dir) as tmp, _quiet():
            tmp = Path(tmp)
            desc = ct.utils.MultiFunctionDescriptor()
            for r in resolutions:
                samples = calib[r][: self.calib_samples].detach().float() if w8a8 else None
                part = tmp / f"{function_name(r)}.mlpackage"
                self.convert(baked[r], r, precision, samples).save(str(part))
                desc.add_function(str(part), "main", function_name(r))
            desc.default_function_name = function_name(resolutions[0])
            ct.utils.save_multifunction(desc, str(tmp / file_name))
            _check_package(tmp / file_name, resolutions)
            target = out_dir / file_name
            if target.exists():
                shutil.rmtree(target)
            (tmp / file_name).rename(target)
        entries = tuple(Entry(r, function_name(r), INPUT_NAME, OUTPUT_NAME, (1, 3, r, r)) for r in resolutions)
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
        ct = _ct()
        import coremltools.optimize.coreml as cto

        module = module.eval()
        example = torch.zeros(1, 3, resolution, resolution)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example)
        pipeline = ct.PassPipeline.DEFAULT
        pipeline.remove_passes(list(FOLD_PASSES))
        if precision == "int8":  # quantized before folding: the int8 data is then the same in every function
            int8 = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                               weight_threshold=0)
            pipeline.append_pass("compression::linear_quantize_weights")
            pipeline.set_options("compression::linear_quantize_weights", {
                "config": cto.OptimizationConfig(op_type_configs={op: int8 for op in QUANTIZED_WEIGHT_OPS})})
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

    def runner(self, exported: Exported, out_dir: Path) -> CoreMLRunner | None:
        if not ON_MACOS:
            return None
        return CoreMLRunner(Path(out_dir) / exported.files[0])


class CoreMLRunner:
    """Runs the functions of a multifunction `.mlpackage` with Core ML (macOS only)."""

    def __init__(self, path: Path, compute_units: str = "ALL"):
        self.path = Path(path)
        self.compute_units = compute_units
        self._models: dict[str, Any] = {}

    def _model(self, entry: Entry):
        if entry.name not in self._models:
            ct = _ct()
            self._models[entry.name] = ct.models.MLModel(str(self.path), function_name=entry.name,
                                                         compute_units=ct.ComputeUnit[self.compute_units])
        return self._models[entry.name]

    def run(self, entry: Entry, x: np.ndarray) -> np.ndarray:
        model = self._model(entry)
        x = np.asarray(x, dtype=np.float32)
        rows = [model.predict({entry.input_name: x[i: i + 1]})[entry.output_name] for i in range(len(x))]
        return np.concatenate([np.asarray(r, dtype=np.float32).reshape(1, -1) for r in rows])


# ------------------------------------------------------------------------ structural inspection
_MIL_DTYPES = {"FLOAT16": "fp16", "FLOAT32": "fp32", "FLOAT64": "fp64", "BFLOAT16": "bf16", "BOOL": "bool",
               "STRING": "string"}
_ARRAY_DTYPES = {"FLOAT16": "fp16", "FLOAT32": "fp32", "DOUBLE": "fp64", "INT32": "int32", "INT8": "int8"}


def _mil_dtype(code: int) -> str:
    from coremltools.proto import MIL_pb2

    name = MIL_pb2.DataType.Name(code)
    return _MIL_DTYPES.get(name, name.lower())


def _feature(feature) -> dict:
    from coremltools.proto import FeatureTypes_pb2

    array = feature.type.multiArrayType
    name = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return {"name": feature.name, "shape": tuple(int(d) for d in array.shape),
            "dtype": _ARRAY_DTYPES.get(name, name.lower())}


def _operations(block) -> Iterator:
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _operations(inner)


def _tensor_values(op) -> Iterator:
    """The constant tensors an op carries: a const's value, and values bound directly to its inputs (how
    `constexpr_*` ops hold their quantized data and scales)."""
    if op.type == "const":
        yield op.attributes["val"]
    for argument in op.inputs.values():
        for binding in argument.arguments:
            if binding.WhichOneof("binding") == "value":
                yield binding.value


def inspect_coreml(path: Path | str) -> dict:
    """What a Core ML package contains, read from its spec without running it.

    Returns {"spec_version", "default_function", "bytes", "weight_file_bytes",
    "functions": {name: {"inputs", "outputs" (lists of {"name", "shape", "dtype"}), "op_types" (set),
    "op_counts" (Counter), "weight_dtypes" (Counter of the dtypes of the constant tensors the function
    keeps in the weight file: const values and constexpr inputs), "const_dtypes" (the same over every
    constant tensor of rank ≥ 1, inline ones included)}},
    "weights": {"references": weight-file tensors referenced, over all functions; "unique": distinct
    ones (a tensor shared by k functions counts k times above, once here); "unique_dtypes": Counter}}.
    """
    ct = _ct()
    path = Path(path)
    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    if desc.functions:
        described = {f.name: f for f in desc.functions}
        default = desc.defaultFunctionName
    else:
        described = {"main": desc}
        default = "main"
    functions: dict[str, dict] = {}
    blobs: dict[tuple[str, int], str] = {}
    references = 0
    for name, fn in spec.mlProgram.functions.items():
        block = fn.block_specializations[fn.opset]
        op_counts: Counter = Counter()
        weight_dtypes: Counter = Counter()
        const_dtypes: Counter = Counter()
        for op in _operations(block):
            op_counts[op.type] += 1
            for value in _tensor_values(op):
                tensor = value.type.tensorType
                dtype = _mil_dtype(tensor.dataType)
                if tensor.rank >= 1 and dtype != "string":
                    const_dtypes[dtype] += 1
                if value.HasField("blobFileValue"):
                    weight_dtypes[dtype] += 1
                    references += 1
                    blobs[(value.blobFileValue.fileName, value.blobFileValue.offset)] = dtype
        d = described.get(name)
        functions[name] = {
            "inputs": [_feature(f) for f in d.input] if d is not None else [],
            "outputs": [_feature(f) for f in d.output] if d is not None else [],
            "op_types": set(op_counts),
            "op_counts": op_counts,
            "weight_dtypes": weight_dtypes,
            "const_dtypes": const_dtypes,
        }
    weight_file = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    return {
        "spec_version": spec.specificationVersion,
        "default_function": default,
        "bytes": package_bytes(path),
        "weight_file_bytes": weight_file.stat().st_size if weight_file.exists() else 0,
        "functions": functions,
        "weights": {"references": references, "unique": len(blobs), "unique_dtypes": Counter(blobs.values())},
    }


def _check_package(path: Path, resolutions: list[int]) -> None:
    """The package just written has the functions, default and input shapes it should have."""
    info = inspect_coreml(path)
    expected = {function_name(r): r for r in resolutions}
    if set(info["functions"]) != set(expected) or info["default_function"] != function_name(max(resolutions)):
        raise RuntimeError(f"Core ML package {path.name}: functions {sorted(info['functions'])}, default "
                           f"{info['default_function']!r}; expected {sorted(expected)}, default "
                           f"{function_name(max(resolutions))!r}")
    for name, r in expected.items():
        inputs = info["functions"][name]["inputs"]
        if [(i["name"], i["shape"], i["dtype"]) for i in inputs] != [(INPUT_NAME, (1, 3, r, r), "fp32")]:
            raise RuntimeError(f"Core ML function {name}: unexpected inputs {inputs}")


# ------------------------------------------------------------------------ graph passes
_REGISTERED = False


def _register_passes() -> None:
    """Register this module's MIL graph passes (namespace `resflex::`) with coremltools, once."""
    global _REGISTERED
    if _REGISTERED:
        return
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import types
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass, PassOption
    from coremltools.converters.mil.mil.passes.helper import block_context_manager
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY, register_pass

    @register_pass(namespace="resflex", override=True)
    class dedup_small_consts(AbstractGraphPass):
        """Store identical constants once per function whatever their size (coremltools' own
        const_deduplication skips those under 100 elements: every conv's strides, pads, dilations...)."""

        def apply(self, prog):
            dedup = PASS_REGISTRY["common::const_deduplication"]
            threshold = dedup.const_threshold
            dedup.const_threshold = 1  # a class attribute: restored below
            try:
                dedup.apply(prog)
            finally:
                dedup.const_threshold = threshold

    @register_pass(namespace="resflex", override=True)
    class compact_names(AbstractGraphPass):
        """Rename every op and variable but the function's inputs and outputs to a short unique name
        ("v0", "v1", ..., base 36): names are most of an ML program's text, paid once per function."""

        def apply(self, prog):
            for func in prog.functions.values():
                outputs = set(func.outputs)
                reserved = {v.name for v in list(func.inputs.values()) + list(func.outputs)}
                counter = itertools.count()

                def fresh() -> str:
                    while (name := "v" + np.base_repr(next(counter), 36).lower()) in reserved:
                        pass
                    return name

                def walk(block) -> None:
                    for op in block.operations:
                        for inner in op.blocks:
                            walk(inner)
                        for var in op.outputs:
                            if var not in outputs:
                                var.name = fresh()
                        first = op.outputs[0] if op.outputs else None
                        op.name = first.name if first is not None and first not in outputs else fresh()

                walk(func)

    @register_pass(namespace="resflex", override=True)
    class fold_affine_into_weight_scales(AbstractGraphPass):
        """conv(x, W) → mul(s) → add(t), s and t per output channel, becomes
        conv(x, constexpr_blockwise_shift_scale(data=W, scale=w·s), bias=b·s + t): the weight data W stays
        the constant every resolution shares, and this function's BN lives in its per-channel weight
        scale (w: W's int8 quantization scale, or 1 for fp16 data) and bias. The runtime decompresses
        the constexpr at load time, so each function runs as a BN-folded conv."""

        def apply(self, prog):
            for func in prog.functions.values():
                self._fold_block(func)

        @block_context_manager
        def _fold_block(self, block):
            for op in list(block.operations):
                if op.enclosing_block is not None and op.op_type == "conv":
                    self._fold(op, block)

        @staticmethod
        def _channel_const(op, var, channels: int):
            """The per-channel constant operand of `op` (mul / add of `var` and a constant) as (C,)."""
            other = op.y if op.x is var else op.x if op.y is var else None
            if other is None or other.val is None or other.op is None or other.op.op_type != "const":
                return None
            value = np.asarray(other.val, dtype=np.float32)
            if value.shape not in ((1, channels, 1, 1), (channels, 1, 1)):
                return None
            return value.reshape(channels)

        def _fold(self, conv, block) -> None:
            weight = conv.weight
            if weight.rank != 4 or conv.outputs[0] in block.outputs:
                return
            channels = weight.shape[0]
            chain, scale, shift = [conv], None, None
            for kind in ("mul", "add"):
                out = chain[-1].outputs[0]
                children = out.child_ops
                if out in block.outputs or len(children) != 1 or children[0].op_type != kind:
                    continue  # no mul (a scale of 1 is removed as a no-op) may still leave an add
                value = self._channel_const(children[0], out, channels)
                if value is None:
                    break
                chain.append(children[0])
                scale, shift = (value, shift) if kind == "mul" else (scale, value)
            if len(chain) == 1:
                return
            last = chain[-1]
            bias = np.zeros(channels, np.float32)
            if conv.bias is not None:
                if conv.bias.val is None:
                    return
                bias = np.asarray(conv.bias.val, dtype=np.float32)
            new_weight = weight
            if scale is not None:
                source = weight.op
                if source.op_type == "const":
                    data, offset, base = weight, None, np.ones((channels, 1, 1, 1), np.float32)
                elif source.op_type == "constexpr_blockwise_shift_scale" and source.scale.shape[0] == channels:
                    data, offset, base = source.data, source.offset, source.scale.val.astype(np.float32)
                else:
                    return
                dtype = types.nptype_from_builtin(weight.dtype)
                new_weight = mb.constexpr_blockwise_shift_scale(
                    data=data, scale=(base * scale.reshape(channels, 1, 1, 1)).astype(dtype),
                    **({"offset": offset} if offset is not None else {}), before_op=conv)
                bias = bias * scale
            if shift is not None:
                bias = bias + shift
            kwargs = {k: v for k, v in conv.inputs.items() if k not in ("weight", "bias")}
            out_dtype = types.nptype_from_builtin(conv.outputs[0].dtype)
            new_out = mb.conv(**kwargs, weight=new_weight, bias=bias.astype(out_dtype),
                              name=last.outputs[0].name, before_op=conv)
            # forced: the old output descends from the old constexpr, which the new output no longer uses
            block.replace_uses_of_var_after_op(anchor_op=last, old_var=last.outputs[0], new_var=new_out,
                                               force_replace=True)
            block.remove_ops(chain)

    @register_pass(namespace="resflex", override=True)
    class quantize_activations(AbstractGraphPass):
        """Insert int8 quantize / dequantize pairs around activations, with ranges measured by evaluating
        this program on `samples` ({input name: NCHW batch}); `config`: an OptimizationConfig of
        OpLinearQuantizerConfig (what ct.optimize.coreml.linear_quantize_activations takes)."""

        samples = None
        config = None

        def apply(self, prog):
            if self.samples is None or self.config is None:
                raise ValueError("resflex::quantize_activations needs the options 'samples' and 'config'")
            stats = activation_stats(prog, self.samples)
            for name in ("compression::insert_prefix_quantize_dequantize_pair",
                         "compression::insert_suffix_quantize_dequantize_pair"):
                insert = PASS_REGISTRY[name]
                insert.set_options([PassOption("config", self.config), PassOption("activation_stats", stats)])
                insert(prog)
            PASS_REGISTRY["common::dequantize_quantize_pair_elimination"](prog)

    _REGISTERED = True


# ------------------------------------------------------------------------ W8A8 calibration on any OS
def activation_stats(program, inputs: Mapping[str, Tensor]) -> dict[str, dict[str, float]]:
    """{var name: {"rmin", "rmax"}} over every input and non-const op output of the MIL program's `main`,
    evaluated in torch on each sample (batch 1) of `inputs` — what coremltools measures with
    MLModel.predict on macOS (there from the last sample only; here over all of them)."""
    evaluator = _MILEvaluator(program)
    stats: dict[str, dict[str, float]] = {}

    def update(name: str, value: Tensor) -> None:
        lo, hi = float(value.min()), float(value.max())
        if name in stats:
            lo, hi = min(lo, stats[name]["rmin"]), max(hi, stats[name]["rmax"])
        stats[name] = {"rmin": lo, "rmax": hi}

    count = len(next(iter(inputs.values())))
    for i in range(count):
        values = evaluator({name: x[i: i + 1] for name, x in inputs.items()})
        for name, value in values.items():
            if torch.is_tensor(value) and value.is_floating_point():
                update(name, value)
    return stats


class ReferenceRunner:
    """Evaluates the functions of a saved `.mlpackage` with `_MILEvaluator` (float32 torch, fp16 casts
    and int8 (de)quantization honoured): a numerical check of the converted program on any OS. It is not
    the Core ML runtime (which compiles and fuses ops, and runs fp16 on GPU / Neural Engine)."""

    def __init__(self, path: Path | str):
        ct = _ct()
        from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

        path = Path(path)
        spec = ct.utils.load_spec(str(path))
        weights = path / "Data" / "com.apple.CoreML" / "weights"
        self.program = load_milproto(spec, spec.specificationVersion, str(weights))
        self._evaluators: dict[str, _MILEvaluator] = {}

    def run(self, entry: Entry, x: np.ndarray) -> np.ndarray:
        if entry.name not in self._evaluators:
            self._evaluators[entry.name] = _MILEvaluator(self.program, entry.name)
        evaluator = self._evaluators[entry.name]
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        rows = [evaluator({entry.input_name: x[i: i + 1]})[entry.output_name] for i in range(len(x))]
        return torch.cat([r.reshape(1, -1) for r in rows]).numpy()


class _MILEvaluator:
    """A reference evaluator (float32 torch, fp16 casts honoured) for the MIL ops that converted CNN
    classifiers use; anything else raises NotImplementedError naming the op."""

    def __init__(self, program, function: str = "main"):
        if function not in program.functions:
            raise KeyError(f"MIL program has no function {function!r}; it has {sorted(program.functions)}")
        self.function = program.functions[function]

    def __call__(self, inputs: Mapping[str, Tensor]) -> dict[str, Any]:
        env: dict[str, Any] = {name: torch.as_tensor(x, dtype=torch.float32) for name, x in inputs.items()}
        with torch.no_grad():
            for op in self.function.operations:
                if op.op_type == "const":
                    continue
                fn = getattr(self, f"_{op.op_type}", None)
                if fn is None:
                    raise NotImplementedError(f"MIL reference evaluator: op {op.op_type!r} not supported")
                args = {k: self._value(v, env) for k, v in op.inputs.items()}
                out = fn(**args)
                outs = out if isinstance(out, tuple) else (out,)
                for var, value in zip(op.outputs, outs):
                    env[var.name] = value
        return env

    @staticmethod
    def _value(var, env):
        if isinstance(var, (list, tuple)):
            return [_MILEvaluator._value(v, env) for v in var]
        if var.name in env:
            return env[var.name]
        val = var.val
        if isinstance(val, np.ndarray) and val.ndim == 0:
            return val.item()
        if isinstance(val, np.ndarray) and (val.dtype.kind == "f" or (val.dtype.kind in "iu" and val.dtype.itemsize == 1)):
            return torch.from_numpy(val.astype(np.float32))
        if isinstance(val, np.ndarray):
            return val.tolist()
        if isinstance(val, np.generic):
            return val.item()
        return val

    # ---- ops (argument names as in coremltools.converters.mil.mil.ops.defs)
    @staticmethod
    def _cast(x, dtype):
        if dtype in ("fp16", "float16"):
            return x.to(torch.float16).to(torch.float32)
        if dtype in ("fp32", "float32"):
            return x.to(torch.float32)
        raise NotImplementedError(f"MIL reference evaluator: cast to {dtype}")

    @staticmethod
    def _conv(x, weight, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, bias=None):
        spatial = x.dim() - 2
        strides = list(strides or [1] * spatial)
        dilations = list(dilations or [1] * spatial)
        if pad_type == "custom":
            pad = list(pad)
        elif pad_type == "valid":
            pad = [0] * (2 * spatial)
        elif pad_type in ("same", "same_lower"):
            pad = []
            for size, k, s, d in zip(x.shape[2:], weight.shape[2:], strides, dilations):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pad += [big, small] if pad_type == "same_lower" else [small, big]
        else:
            raise NotImplementedError(f"MIL reference evaluator: conv pad_type {pad_type}")
        torch_pad = [p for i in reversed(range(spatial)) for p in (pad[2 * i], pad[2 * i + 1])]
        x = F.pad(x, torch_pad)
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
        return conv(x, weight, bias, stride=strides, dilation=dilations, groups=int(groups))

    @staticmethod
    def _constexpr_blockwise_shift_scale(data, scale, offset=None):
        if offset is not None:
            data = data - _MILEvaluator._blocks(offset, data.shape)
        return data * _MILEvaluator._blocks(scale, data.shape)

    @staticmethod
    def _blocks(t, shape):
        for axis, (n, m) in enumerate(zip(shape, t.shape)):
            if n != m:
                t = t.repeat_interleave(n // m, dim=axis)
        return t

    @staticmethod
    def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) / torch.sqrt(variance.view(shape) + float(epsilon))
        if gamma is not None:
            y = y * gamma.view(shape)
        if beta is not None:
            y = y + beta.view(shape)
        return y

    @staticmethod
    def _linear(x, weight, bias=None):
        return F.linear(x, weight, bias)

    @staticmethod
    def _matmul(x, y, transpose_x=False, transpose_y=False):
        x = x.transpose(-1, -2) if transpose_x else x
        y = y.transpose(-1, -2) if transpose_y else y
        return torch.matmul(x, y)

    @staticmethod
    def _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, max_pool, exclude_padding_from_average=False):
        if pad_type == "valid":
            pad = [0, 0, 0, 0]
        elif pad_type != "custom":
            raise NotImplementedError(f"MIL reference evaluator: pool pad_type {pad_type}")
        pad = list(pad)
        if pad[0] != pad[1] or pad[2] != pad[3]:
            raise NotImplementedError("MIL reference evaluator: asymmetric pool padding")
        if max_pool:
            return F.max_pool2d(x, list(kernel_sizes), list(strides), [pad[0], pad[2]], ceil_mode=bool(ceil_mode))
        return F.avg_pool2d(x, list(kernel_sizes), list(strides), [pad[0], pad[2]], ceil_mode=bool(ceil_mode),
                            count_include_pad=not exclude_padding_from_average)

    def _max_pool(self, x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False):
        return self._pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, True)

    def _avg_pool(self, x, kernel_sizes, strides, pad_type="valid", pad=None, exclude_padding_from_average=False,
                  ceil_mode=False):
        return self._pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, False, exclude_padding_from_average)

    @staticmethod
    def _reduce_mean(x, axes=None, keep_dims=False):
        axes = list(range(x.dim())) if axes is None else [int(a) for a in axes]
        return x.mean(dim=axes, keepdim=bool(keep_dims))

    @staticmethod
    def _reshape(x, shape):
        return x.reshape([int(s) for s in shape])

    @staticmethod
    def _squeeze(x, axes=None):
        if axes is None:
            return x.squeeze()
        for a in sorted((int(a) % x.dim() for a in axes), reverse=True):
            x = x.squeeze(a)
        return x

    @staticmethod
    def _expand_dims(x, axes):
        for a in sorted(int(a) for a in axes):
            x = x.unsqueeze(a)
        return x

    @staticmethod
    def _transpose(x, perm):
        return x.permute([int(p) for p in perm])

    @staticmethod
    def _concat(values, axis, interleave=False):
        if interleave:
            raise NotImplementedError("MIL reference evaluator: interleaved concat")
        return torch.cat(values, dim=int(axis))

    @staticmethod
    def _quantize(input, scale, output_dtype, zero_point=None, axis=None):
        lo, hi = {"int8": (-128, 127), "uint8": (0, 255)}[output_dtype]
        scale, zero = _MILEvaluator._per_axis(input, scale, axis), _MILEvaluator._per_axis(input, zero_point, axis)
        return torch.clamp(torch.round(input / scale) + zero, lo, hi)

    @staticmethod
    def _dequantize(input, scale, zero_point=None, axis=None):
        scale, zero = _MILEvaluator._per_axis(input, scale, axis), _MILEvaluator._per_axis(input, zero_point, axis)
        return (input - zero) * scale

    @staticmethod
    def _per_axis(x, value, axis):
        if value is None:
            return 0.0
        value = torch.as_tensor(value, dtype=torch.float32)
        if value.dim() == 1 and axis is not None:
            shape = [1] * x.dim()
            shape[int(axis)] = -1
            value = value.view(shape)
        return value

    _relu = staticmethod(lambda x: F.relu(x))
    _relu6 = staticmethod(lambda x: F.relu6(x))
    _sigmoid = staticmethod(lambda x: torch.sigmoid(x))
    _silu = staticmethod(lambda x: F.silu(x))
    _tanh = staticmethod(lambda x: torch.tanh(x))
    _gelu = staticmethod(lambda x, mode="EXACT": F.gelu(x, approximate="tanh" if mode == "TANH_APPROXIMATION"
                                                        else "none"))
    _leaky_relu = staticmethod(lambda x, alpha=0.01: F.leaky_relu(x, float(alpha)))
    _hard_sigmoid = staticmethod(lambda x, alpha=0.2, beta=0.5: torch.clamp(x * float(alpha) + float(beta), 0, 1))
    _clip = staticmethod(lambda x, alpha, beta: torch.clamp(x, float(alpha), float(beta)))
    _add = staticmethod(lambda x, y: torch.as_tensor(x) + y)
    _sub = staticmethod(lambda x, y: torch.as_tensor(x) - y)
    _mul = staticmethod(lambda x, y: torch.as_tensor(x) * y)
    _real_div = staticmethod(lambda x, y: torch.as_tensor(x) / y)
    _identity = staticmethod(lambda x: x)


# ------------------------------------------------------------------------ quieter coremltools
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence coremltools' per-op warnings about untested torch versions while converting."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
