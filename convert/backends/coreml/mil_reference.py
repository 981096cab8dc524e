"""A reference evaluator for converted Core ML programs: the MIL ops that CNN classifiers convert to, evaluated in
float32 torch with fp16 casts and int8 (de)quantization honoured.

Two uses: W8A8 calibration on any OS (`activation_stats`: coremltools measures activation ranges with
`MLModel.predict`, which exists only on macOS) and a numerical check of a saved `.mlpackage` here
(`ReferenceRunner`). It is not the Core ML runtime, which compiles and fuses ops and runs fp16 on GPU / Neural
Engine; the real runtime is `resflex.convert.runtimes.CoreMLRuntime` (macOS).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...runtimes import Entry
from .common import coremltools

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
        ct = coremltools()
        from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

        path = Path(path)
        spec = ct.utils.load_spec(str(path))
        weights = path / "Data" / "com.apple.CoreML" / "weights"
        self.program = load_milproto(spec, spec.specificationVersion, str(weights))
        self._evaluators: dict[str, _MILEvaluator] = {}

    def run(self, entry: Entry, x: np.ndarray, batch: int = 64) -> np.ndarray:
        """Logits of `x` (NCHW), evaluated `batch` images at a time (the program is written for batch 1; its
        reshapes keep the batch dimension, see `_MILEvaluator(batched=True)`: 5× faster than one at a time)."""
        if entry.name not in self._evaluators:
            self._evaluators[entry.name] = _MILEvaluator(self.program, entry.name, batched=True)
        evaluator = self._evaluators[entry.name]
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        rows = [evaluator({entry.input_name: x[i: i + batch]})[entry.output_name] for i in range(0, len(x), batch)]
        return torch.cat([r.reshape(len(r), -1) for r in rows]).numpy()


def on_int4_grid(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of an affine-baked module with every conv / linear weight on the grid Core ML's int4 stores: per output
    channel, symmetric, [-7, 7] (the BN stays in the affine, i.e. in the weight scales): what an int4 artifact
    should compute, so parity checks the conversion rather than the 4-bit loss."""
    import copy

    q = copy.deepcopy(module)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                s = m.weight.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *[1] * (m.weight.dim() - 1)) / 7
                m.weight.copy_(torch.round(m.weight / s) * s)
    return q


class _MILEvaluator:
    """A reference evaluator (float32 torch, fp16 casts honoured) for the MIL ops that converted CNN
    classifiers use; anything else raises NotImplementedError naming the op."""

    def __init__(self, program, function: str = "main", batched: bool = False):
        """batched: inputs may hold several images; a reshape to a leading 1 then keeps the batch size instead."""
        if function not in program.functions:
            raise KeyError(f"MIL program has no function {function!r}; it has {sorted(program.functions)}")
        self.function = program.functions[function]
        self.batched = batched

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

    def _reshape(self, x, shape):
        shape = [int(s) for s in shape]
        if self.batched and shape and shape[0] == 1:
            shape[0] = x.shape[0]
        return x.reshape(shape)

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
    # nn.Hardsigmoid; nn.Hardswish converts to mul(thresholded_relu(x, -3), sigmoid_hard(that, 1/6, 0.5))
    _sigmoid_hard = staticmethod(lambda x, alpha=0.2, beta=0.5: torch.clamp(x * float(alpha) + float(beta), 0, 1))
    _thresholded_relu = staticmethod(lambda x, alpha=1.0: torch.where(x >= float(alpha), x, torch.zeros_like(x)))
    _clip = staticmethod(lambda x, alpha, beta: torch.clamp(x, float(alpha), float(beta)))
    _add = staticmethod(lambda x, y: torch.as_tensor(x) + y)
    _sub = staticmethod(lambda x, y: torch.as_tensor(x) - y)
    _mul = staticmethod(lambda x, y: torch.as_tensor(x) * y)
    _real_div = staticmethod(lambda x, y: torch.as_tensor(x) / y)
    _identity = staticmethod(lambda x: x)
