"""The `resflex::` MIL graph passes that `CoreMLBackend.convert` adds to coremltools' pass pipeline, registered with
coremltools when this module is imported (`common.coremltools()` imports it):

- `dedup_small_consts`: identical constants stored once per function, however small;
- `compact_names`: short op and variable names (names are most of a program's text, paid once per function);
- `fold_affine_into_weight_scales`: each resolution's BN (conv → mul → add) moved into the per-channel scale of a
  `constexpr_blockwise_shift_scale` weight and the conv bias, so the weight data is shared by every function;
- `quantize_activations`: int8 quantize / dequantize pairs around activations, with ranges measured by
  evaluating the program itself (`mil_reference.activation_stats`), for W8A8 on any OS.
"""

from __future__ import annotations

import itertools

import numpy as np
from coremltools.converters.mil.mil import Builder as mb
from coremltools.converters.mil.mil import types
from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass, PassOption
from coremltools.converters.mil.mil.passes.helper import block_context_manager
from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY, register_pass

from .mil_reference import activation_stats

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
