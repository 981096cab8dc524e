"""ExecuTorch: one `.pte` per precision, one XNNPACK-delegated method per resolution, conv weights stored once.

The file holds a method `forward_{r}` for every resolution `r` plus `forward` (= the largest resolution); each
takes one normalised NCHW float32 image (batch 1) and returns float32 logits. Export is `torch.export.export` →
XNNPACK lowering (`_lower`: the graphs of `to_edge_transform_and_lower({...}, partitioner=[XnnpackPartitioner()])`,
byte for byte, with fewer retraces) → `.to_executorch()` for every method, and int8 is PT2E static quantization
(`XNNPACKQuantizer`, symmetric per-channel weights, per-tensor activations) calibrated separately at every
resolution, except that the linear layer computing the logits quantizes its input at run time and returns float
(`_float_logits`).

How the weights are shared. ExecuTorch keeps one copy of byte-identical constants: XNNPACK names every constant
by the SHA-256 of its bytes in the program's NamedDataStore, and identical delegate blobs (`forward` and the
largest `forward_{r}`) are stored once. So everything hinges on making each conv's stored bytes the same at
every resolution although each resolution has its own BatchNorm. The backend therefore asks for modules baked
with `bn="affine"` (`conv(x) · scale + shift`, conv untouched) and then:

- **fp32**: a shared conv is followed by a depthwise 1×1 conv holding that resolution's scale and shift (static
  weights; XNNPACK fuses the ReLU/ReLU6 into it). Exact, but one extra pass over the conv's output in every
  method. With `sharing = "auto"` the convs whose extra pass costs most per weight byte (MobileNet-like nets have
  their big activations early, where weights are small) get BN folded per resolution instead, while the file
  stays within `size_budget` × its floor (`fp32_plan`, `resflex.convert.bake.plan_sharing`).
- **int8**: the conv is quantized once from the *unfolded* weight — int8 values `q = round(W / s_w)` with
  per-channel `s_w = max|W| / 127` — and each resolution's BN is folded into the quantization parameters, not
  the int8 values: `W · a_r = (sign(a_r) · q) · (s_w · |a_r|)`, so the method's per-channel weight scales are
  `s_w · |a_r|` and its bias `shift_r + a_r · b` (XNNPACK wants positive scales, hence the sign moved into the
  values). The graph is exactly the BN-folded graph (same ops, same speed) and the int8 bytes are identical at
  every resolution whose BN scales have the same signs (channels whose γ flips sign between resolutions make
  that layer's bytes differ there: correct, just not shared; `Exported.notes` counts them). What cannot be
  shared: each method still carries, per BN channel, its weight scale and int32 bias (8 bytes; the bias scale,
  which XNNPACK never reads, is serialized as the weight-scale bytes and so stored once:
  `_compact_xnnpack_constants`), and its own XNNPACK graph (~50 KB for MobileNetV2).

`sharing = "speed"` (`resflex convert --sharing speed`) folds BN per resolution into every fp32 conv (the
BN-folded graph, K× the fp32 bytes; int8 is unchanged: its shared graph already is the folded one), "size" folds
none; `share_weights=False` folds BN per resolution everywhere (fastest graphs, K× the bytes). Measured trade-offs
(MobileNetV2, 5 resolutions): `bench/convert_bench.py --sharing size,speed,auto`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import sys
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..bake import (
    DEFAULT_SIZE_BUDGET,
    ChannelAffine,
    SharingPlan,
    check_size_budget,
    conv_pairs,
    sharing_plan,
)
from ..runtimes import ExecuTorchRuntime, Spatial, spatial_keys
from ..qat_ranges import INPUT_POINT, RangeUse, last_values_of
from .base import Entry, Exported, check_calib_method

INPUT, OUTPUT = "image", "logits"  # ExecuTorch methods take and return positional tensors; names for the manifest


def executorch_versions() -> dict[str, str]:
    """Versions of the packages that produced (and run) a `.pte`, for the manifest."""
    out = {}
    for package in ("executorch", "torch", "torchao"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------------------------
# Graph surgery on affine-baked modules


def _affine_pairs(module: nn.Module):
    """(parent, conv name, affine name, conv FQN) of every conv + ChannelAffine pair `bake(..., bn="affine")` made."""
    return conv_pairs(module, ChannelAffine)


def _affine_of(aff: ChannelAffine) -> tuple[Tensor, Tensor]:
    return aff.scale.detach().reshape(-1), aff.shift.detach().reshape(-1)


def _folded_bias(conv: nn.Conv2d, scale: Tensor, shift: Tensor) -> Tensor:
    return shift if conv.bias is None else shift + scale * conv.bias.detach()


def _with_depthwise_affine(module: nn.Module, fold: set[str] = frozenset()) -> nn.Module:
    """fp32 sharing: ChannelAffine → depthwise 1×1 conv (static weight = scale, bias = shift), except after the
    convs named in `fold`, which get the BN folded in (their weights then differ per resolution)."""
    module, _ = _folded(module, only=fold)
    for parent, _, aff_name, _ in list(_affine_pairs(module)):
        scale, shift = _affine_of(parent._modules[aff_name])
        c = scale.numel()
        dw = nn.Conv2d(c, c, 1, groups=c, bias=True)
        with torch.no_grad():
            dw.weight.copy_(scale.view(c, 1, 1, 1))
            dw.bias.copy_(shift)
        parent._modules[aff_name] = dw
    return module.eval()


def _folded(module: nn.Module, only: set[str] | None = None) -> tuple[nn.Module, dict[str, tuple[Tensor, Tensor]]]:
    """ChannelAffine folded into its conv (weight · scale, bias · scale + shift), for every pair or only the convs
    named in `only`. Also returns, per folded conv FQN, the unfolded weight and the BN scale (what the int8
    rewrite needs)."""
    module = copy.deepcopy(module)
    unfolded = {}
    for parent, conv_name, aff_name, fqn in list(_affine_pairs(module)):
        if only is not None and fqn not in only:
            continue
        conv: nn.Conv2d = parent._modules[conv_name]
        scale, shift = _affine_of(parent._modules[aff_name])
        unfolded[fqn] = (conv.weight.detach().clone(), scale.clone())
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                           conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
        with torch.no_grad():
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            folded.bias.copy_(_folded_bias(conv, scale, shift))
        parent._modules[conv_name] = folded
        parent._modules[aff_name] = nn.Identity()
    return module.eval(), unfolded


def fp32_plan(module: nn.Module, resolution: int, methods: int, size_budget: float) -> SharingPlan:
    """Which convs of an affine-baked `module` (at `resolution`, the largest) an fp32 file with `methods`
    resolutions folds BN into (`resflex.convert.bake.plan_sharing`); the rest share their weights and get the
    depthwise affine, one extra pass over their output per inference."""
    return sharing_plan(module, resolution, [fqn for *_, fqn in _affine_pairs(module)], methods, size_budget)


_DQ_PER_CHANNEL = "quantized_decomposed.dequantize_per_channel.default"


def _conv_fqn(node: torch.fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


@torch.no_grad()
def _share_int8_weights(converted: torch.fx.GraphModule, unfolded: Mapping[str, tuple[Tensor, Tensor]]) -> int:
    """Replace each BN-folded conv's int8 weight and per-channel scales by the quantized *unfolded* weight, with
    the BN scale moved into the weight scales (see the module docstring). Returns how many channels needed a
    sign flip of the int8 values (those are the only bytes that can differ between resolutions)."""
    eps = torch.finfo(torch.float32).eps
    tiny = torch.finfo(torch.float32).tiny
    flipped, done = 0, set()
    for node in converted.graph.nodes:
        if node.target is not torch.ops.aten.conv2d.default:
            continue
        fqn = _conv_fqn(node)
        dq = node.args[1]
        if fqn not in unfolded or not isinstance(dq, torch.fx.Node) or str(dq.target) != _DQ_PER_CHANNEL:
            continue
        w_node, scale_node, zp_node, axis, qmin, qmax = dq.args[:6]
        if axis != 0 or not all(n.op == "get_attr" for n in (w_node, scale_node, zp_node)):
            continue
        weight, bn_scale = unfolded[fqn]
        old_q, old_scale = getattr(converted, w_node.target), getattr(converted, scale_node.target)
        amax = weight.abs().amax(dim=tuple(range(1, weight.dim())))
        s_w = torch.clamp(amax / ((qmax - qmin) / 2), min=eps)  # the per-channel symmetric observer's scale
        q = torch.clamp(torch.round(weight / s_w.view(-1, 1, 1, 1)), qmin, qmax)
        sign = torch.where(bn_scale < 0, -1.0, 1.0)
        flipped += int((sign < 0).sum())
        new_q = (q * sign.view(-1, 1, 1, 1)).to(old_q.dtype)
        new_scale = torch.clamp(s_w * bn_scale.abs(), min=tiny).to(old_scale.dtype)
        setattr(converted, w_node.target, new_q)
        setattr(converted, scale_node.target, new_scale)
        setattr(converted, zp_node.target, torch.zeros_like(getattr(converted, zp_node.target)))
        done.add(fqn)
    missing = set(unfolded) - done
    if missing:  # still correct (BN-folded weights), just not shared: say so instead of failing the export
        warnings.warn(f"int8 weight sharing: no per-channel quantized conv found for {sorted(missing)}; "
                      "their weights are stored per resolution", stacklevel=2)
    return flipped


def _signs(unfolded: Mapping[str, tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    return {fqn: bn_scale < 0 for fqn, (_, bn_scale) in unfolded.items()}


# ---------------------------------------------------------------------------------------------------------------
# Export


def _example(resolution: int) -> tuple[Tensor]:
    return (torch.zeros(1, 3, resolution, resolution),)


CALIB_BATCH = 32  # images per calibration forward pass
# Activation observers of PT2E static int8 (`--calib-method`); the first is the default. "histogram" is
# XNNPACKQuantizer's own choice (HistogramObserver: the range minimising the L2 quantization error over a histogram
# of every calibration activation), "minmax" the full observed range, "moving_average" an exponential moving average
# of each calibration batch's min and max (MovingAverageMinMaxObserver, constant 0.01 per batch of `CALIB_BATCH`).
CALIB_METHODS = ("histogram", "minmax", "moving_average")


def _activation_config(method: str):
    """XNNPACK's symmetric per-channel int8 config with the activation observer of `method`."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver

    observers = {"histogram": HistogramObserver, "minmax": MinMaxObserver,
                 "moving_average": MovingAverageMinMaxObserver}
    if method not in observers:
        raise ValueError(f"unknown ExecuTorch calibration method {method!r}; expected one of: "
                         f"{', '.join(CALIB_METHODS)}")
    config = get_symmetric_quantization_config(is_per_channel=True)
    act = dataclasses.replace(config.input_activation,
                              observer_or_fake_quant_ctr=observers[method].with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _float_logits(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Quantize the linear layer that computes the logits dynamically (XNNPACK's qd8 × qc8w fully-connected: int8
    input quantized at run time, the same per-channel int8 weight, float output) instead of statically, so the
    program returns float logits: rounded to 256 static levels they tie where the float ones differ by less than a
    step (the ONNX backend's `_float_logits`, same reason). Runs before the global static annotation, which then
    leaves that node alone; a model whose logits come from another op is left as it is."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import OP_TO_ANNOTATOR

    output = next(n for n in model.graph.nodes if n.op == "output")
    last = output.args[0][0] if isinstance(output.args[0], (tuple, list)) else output.args[0]
    if isinstance(last, torch.fx.Node) and last.target == torch.ops.aten.linear.default:
        dynamic = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
        OP_TO_ANNOTATOR["linear"](model, dynamic, lambda n: n is last)
    return model


def _quantized(module: nn.Module, resolution: int, calib: Tensor, method: str = CALIB_METHODS[0],
               ranges: Mapping[str, tuple[float, float]] | None = None, use: list | None = None
               ) -> torch.fx.GraphModule:
    """PT2E static int8 (XNNPACK, per-channel weights), activation ranges from the observer of `method`
    (`CALIB_METHODS`), except at the points `ranges` (QAT's, {point: (lo, hi)}) covers; `use` gets a `RangeUse`.
    The graph is captured with a dynamic batch dimension so that
    calibration runs `CALIB_BATCH` images per forward pass (the observers see every calibration image, in far fewer
    calls than one image at a time); the converted graph is exported again at batch 1 for lowering."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if calib is None or len(calib) == 0:
        raise ValueError(f"int8 export at {resolution}px needs calibration images")
    if tuple(calib.shape[1:]) != (3, resolution, resolution):
        raise ValueError(f"calibration images for {resolution}px have shape {tuple(calib.shape)}; "
                         f"expected (N, 3, {resolution}, {resolution})")

    class Quantizer(XNNPACKQuantizer):
        # The graphs reaching here have no batch_norm left (BN is folded or a ChannelAffine), so skip the
        # conv-bn patterns: matching them re-exports a dozen pattern graphs on every prepare (seconds each time).
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if "_bn" not in p.name]

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return super().annotate(_float_logits(model))

    quantizer = Quantizer().set_global(_activation_config(method))
    example = (torch.zeros(2, 3, resolution, resolution),)
    batch = torch.export.Dim("batch", min=1, max=max(CALIB_BATCH, 2))
    captured = torch.export.export(module, example, dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(captured, quantizer)
    fixed = _observer_ranges(prepared, ranges or {})
    with torch.no_grad():
        if len(fixed) < len(_activation_observers(prepared)):  # some points need the images
            for x in calib.float().split(CALIB_BATCH):
                prepared(x)
    for name, (lo, hi) in fixed.items():
        _set_fixed_range(prepared, name, lo, hi)
    if use is not None:
        use.append(RangeUse(len(fixed), len(_activation_observers(prepared)) - len(fixed)))
    return convert_pt2e(prepared)


def _activation_observers(prepared: torch.fx.GraphModule) -> dict[str, list[torch.fx.Node]]:
    """{observer module name: the nodes it observes} for the static activation observers PT2E inserted (not
    weights, not the logits layer's dynamic input quantization, which needs no range)."""
    from torchao.quantization.pt2e import ObserverBase

    out: dict[str, list[torch.fx.Node]] = {}
    for node in prepared.graph.nodes:
        observer = getattr(prepared, node.target) if node.op == "call_module" else None
        if isinstance(observer, ObserverBase) and not getattr(observer, "is_dynamic", False):
            src = node.args[0]
            if isinstance(src, torch.fx.Node) and src.op != "get_attr":
                out.setdefault(node.target, []).append(src)
    return out


def _observer_ranges(prepared: torch.fx.GraphModule, ranges: Mapping[str, tuple[float, float]]
                     ) -> dict[str, tuple[float, float]]:
    """{observer name: QAT (lo, hi)} for every activation observer whose observed value is a QAT point (the
    model input, or the last node computed inside the point's module: `resflex.convert.qat_ranges`)."""
    if not ranges:
        return {}
    observers = _activation_observers(prepared)
    values = [(n.name, {fqn for fqn, _ in (n.meta.get("nn_module_stack") or {}).values()})
              for n in prepared.graph.nodes if n.op == "call_function"]
    point_of = last_values_of(values, ranges)
    point_of.update({n.name: INPUT_POINT for n in prepared.graph.nodes if n.op == "placeholder"})
    out = {}
    for name, nodes in observers.items():
        found = [ranges[point_of[n.name]] for n in nodes if point_of.get(n.name) in ranges]
        if found:  # an observer shared by several values (PT2E's shared specs) takes their union
            out[name] = (min(lo for lo, _ in found), max(hi for _, hi in found))
    return out


def _set_fixed_range(prepared: torch.fx.GraphModule, name: str, lo: float, hi: float) -> None:
    """Replace observer `name` by a MinMaxObserver of the same dtype and range holding (lo, hi): its qparams are
    QAT's (scale (hi − lo) / 255 with 0 included, zero point qmin − round(lo / scale))."""
    from torchao.quantization.pt2e import MinMaxObserver

    old = getattr(prepared, name)
    new = MinMaxObserver(dtype=old.dtype, qscheme=old.qscheme, quant_min=old.quant_min, quant_max=old.quant_max,
                         eps=float(old.eps))
    new.min_val, new.max_val = torch.tensor(float(lo)), torch.tensor(float(hi))
    setattr(prepared, name, new)


def _without_provenance(programs: Mapping[str, torch.export.ExportedProgram]) -> None:
    """Drop each node's `from_node` provenance record (debugging metadata, not part of the program): every pass of
    the lowering deep-copies the record it finds on a node into the nodes it makes, so records that already went
    through export, quantization and export again make lowering the int8 methods markedly slower. The program,
    its constants and outputs are unchanged (only debug handle numbering differs)."""
    for program in programs.values():
        for module in program.graph_module.modules():
            if isinstance(module, torch.fx.GraphModule):
                for node in module.graph.nodes:
                    node.meta.pop("from_node", None)


# Named constants (`.pte` named data): each blob starts at a multiple of SEGMENT_ALIGNMENT (ExecuTorch's default
# 128; XNNPACK asks 16 of its constants, `CONSTANT_TENSOR_ALIGNMENT`) and is keyed by the first KEY_HEX_CHARS hex
# digits of its SHA-256 instead of all 64 (still content-addressed: NamedDataStore raises "Duplicate key ... with
# different data" on a collision, within a method and when the methods' stores are merged).
SEGMENT_ALIGNMENT = 16
KEY_HEX_CHARS = 16


class _ShortSha256:
    """`hashlib.sha256` whose `hexdigest()` is cut to KEY_HEX_CHARS (the content keys XNNPACK gives constants)."""

    def __init__(self, data: bytes = b""):
        self._hash = hashlib.sha256(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:KEY_HEX_CHARS]


@contextlib.contextmanager
def _compact_xnnpack_constants():
    """While lowering: (1) shorter content keys (`_ShortSha256`, swapped into XNNPACK's node visitor, which names
    every constant and per-channel scale `hashlib.sha256(bytes).hexdigest()`); (2) each int8 conv/linear's
    per-channel *bias scale* serialized as its weight-scale tensor, so both are one blob (equal bytes, one key).
    XNNPACK never reads a bias scale (`create_convolution_operator` / fully-connected take the input scale, the
    filter's channel scales and the raw int32 bias; `xnn_validate_channelwise_quantized_tensor` only checks the
    bias scale is positive and normal, as weight scales are); the int32 bias values are still quantized with the
    true scale, input scale × weight scale. There is no supported hook for either, hence this scoped patch
    (restored on exit; the export runs in one thread)."""
    from executorch.backends.xnnpack.operators import node_visitor
    from executorch.backends.xnnpack.operators.quant_params import QuantParams

    original_from_bias = QuantParams.__dict__["from_bias"]

    def from_bias(cls, bias, weight_quantizer, input_quantizer):
        params = original_from_bias.__func__(cls, bias, weight_quantizer, input_quantizer)
        if params is not None and params.per_channel and not params.per_channel_group:
            exact = copy.copy(params)  # quantizes the int32 bias with the true scale
            params.quantize_tensor = exact.quantize_tensor
            params.scale = weight_quantizer.scale  # what is serialized: the weight scale's bytes
        return params

    original_hashlib = node_visitor.hashlib
    QuantParams.from_bias = classmethod(from_bias)
    node_visitor.hashlib = type("ShortKeys", (), {"sha256": _ShortSha256})
    try:
        yield
    finally:
        QuantParams.from_bias = original_from_bias
        node_visitor.hashlib = original_hashlib


# ExportPass hooks through which a pass rewrites ops *while* it retraces. A pass overriding none of them makes all
# its changes in its own `call` by graph surgery and ends with `super().call(...)`, a retrace that only refreshes the
# nodes' metadata (every node through FakeTensor: about 0.25-0.75 s per MobileNetV2 method and pass).
_RETRACE_HOOKS = ("call_operator", "call_submodule", "call_getitem", "call_sym", "call_cond", "call_while",
                  "call_map", "call_scan", "call_delegate", "placeholder", "output")
# Node metadata a retrace recomputes (or that is debugging only); every other entry is compared.
_RETRACED_META = frozenset({"val", "tensor_meta", "stack_trace", "nn_module_stack", "source_fn_stack", "from_node",
                            "torch_fn", "seq_nr", "debug_handle"})


def _graph_state(graph_module: torch.fx.GraphModule, program: torch.export.ExportedProgram) -> tuple:
    """Everything a pass's graph surgery can change: each node's op, target, name, arguments and non-retraced
    metadata, and the shapes and dtypes of the program's weights and constants."""
    nodes = tuple((n.op, str(n.target), n.name, repr(n.args), repr(n.kwargs),
                   repr(sorted(((k, v) for k, v in n.meta.items() if k not in _RETRACED_META), key=lambda kv: kv[0])))
                  for n in graph_module.graph.nodes)
    tensors = tuple((k, tuple(v.shape), v.dtype) for table in (program.state_dict, program.constants)
                    for k, v in table.items() if isinstance(v, Tensor))
    return nodes, tensors


@contextlib.contextmanager
def _without_idle_retraces():
    """While lowering: an XNNPACK pass whose graph surgery changed nothing skips its closing retrace (issue 23
    item 6). XNNPACK runs 17 passes over every method; most find nothing to rewrite in a CNN (no upsample, SDPA,
    concat, batch norm, PReLU, conv1d, ...) yet each retraces the whole graph. Such a pass (it overrides no
    `_RETRACE_HOOKS`) gets the program's `_graph_state` before it runs; if the state is unchanged when it calls
    `ExportPass.call`, the graph module is returned as it is, which is what the retrace would rebuild. A pass that
    rewrites ops through the hooks always retraces. The `.pte` is byte-identical (tests). Scoped patch of
    `ExportPass.call` and of the `_transform` the XNNPACK pass manager calls, restored on exit."""
    from executorch.backends.xnnpack import _passes as xnnpack_passes
    from executorch.exir.pass_base import ExportPass, PassResult

    own_call = "call" in ExportPass.__dict__  # else inherited from torch's base class
    original_call, original_transform = ExportPass.call, xnnpack_passes._transform

    def transform(program, *passes, **kwargs):
        if len(passes) == 1 and isinstance(passes[0], ExportPass) and all(
                getattr(type(passes[0]), hook) is getattr(ExportPass, hook) for hook in _RETRACE_HOOKS):
            passes[0]._resflex_before = (program, _graph_state(program.graph_module, program))
        return original_transform(program, *passes, **kwargs)

    def call(self, graph_module):
        program, before = self.__dict__.pop("_resflex_before", (None, None))
        if before is not None and _graph_state(graph_module, program) == before:
            return PassResult(graph_module, False)
        return original_call(self, graph_module)

    ExportPass.call, xnnpack_passes._transform = call, transform
    try:
        yield
    finally:
        xnnpack_passes._transform = original_transform
        if own_call:
            ExportPass.call = original_call
        else:
            del ExportPass.call


@contextlib.contextmanager
def _deferred_recompiles():
    """While exporting: `GraphModule.recompile` — the Python source and `compile()` of a graph's `forward`, which
    torch.fx reruns after every graph edit and every pass-manager check — only marks the module; its code is
    generated when it is needed (the module is called, its `code` or `str` read, it is pickled) and, for every
    module still marked, once on exit (issue 23 item 6). Most of ~1,200 recompiles per MobileNetV2 export are of
    graphs edited again before anything runs them: CPU −23 % fp32, −16 % int8 (bench/executorch_lower_bench.py),
    byte-identical `.pte` (tests). torch's own `_LazyGraphModule` does this for the graphs `make_fx` builds; this
    scoped patch of `GraphModule.recompile`, `code` and `__str__` extends it to every graph module, restored on
    exit. `__reduce__` / `__reduce_package__` use the generated code's globals, so they recompile at once."""
    from torch.fx import GraphModule
    from torch.fx.graph import _PyTreeCodeGen

    original_recompile, original_code, original_str = GraphModule.recompile, GraphModule.code, GraphModule.__str__
    pending: weakref.WeakSet = weakref.WeakSet()
    eager_callers = {GraphModule.__reduce__.__code__, GraphModule.__reduce_package__.__code__}

    def refresh(gm):
        if gm in pending:
            pending.discard(gm)
            original_recompile(gm)

    def lazy_forward(self, *args, **kwargs):
        refresh(self)  # installs the generated forward on the module's own class
        return type(self).forward(self, *args, **kwargs)

    def recompile(self):
        if sys._getframe(1).f_code in eager_callers:
            pending.discard(self)
            return original_recompile(self)
        if isinstance(self._graph._codegen, _PyTreeCodeGen):  # what the real recompile sets before generating
            self._in_spec = self._graph._codegen.pytree_info.in_spec
            self._out_spec = self._graph._codegen.pytree_info.out_spec
        pending.add(self)
        type(self).forward = lazy_forward  # each GraphModule instance has a class of its own

    def code(self):
        refresh(self)
        return original_code.fget(self)

    def to_str(self):
        refresh(self)
        return original_str(self)

    GraphModule.recompile, GraphModule.code, GraphModule.__str__ = recompile, property(code), to_str
    try:
        yield
    finally:
        GraphModule.recompile, GraphModule.code, GraphModule.__str__ = original_recompile, original_code, original_str
        for gm in list(pending):
            original_recompile(gm)


def _edge_and_lower(programs: Mapping[str, torch.export.ExportedProgram]):
    """The programs in edge dialect with XNNPACK delegates, decomposed once per method: `to_edge` keeping the ops
    XNNPACK asks to keep (`ops_to_not_decompose`), then `to_backend`. `to_edge_transform_and_lower` gets the same
    graphs (byte-identical `.pte`) with three decomposition retraces per method, not one, because XNNPACK declares
    `check_op_support` (issue 23 item 6: lowering −20 % CPU). A kept op that XNNPACK then leaves outside its
    delegate (its own check refuses it, e.g. a max-pool with stride > kernel) must be decomposed after all: that
    case is lowered again by `to_edge_transform_and_lower`."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge, to_edge_transform_and_lower
    from executorch.exir.program._program import (
        _remove_invalid_ops_for_not_decompose,
        _sanity_check_graph_for_non_decomp_ops,
    )

    asked = {op for ep in programs.values() for op in XnnpackPartitioner().ops_to_not_decompose(ep)[0]}
    keep = _remove_invalid_ops_for_not_decompose(sorted(asked, key=str))  # as the standard path filters them
    edge = to_edge(dict(programs), compile_config=EdgeCompileConfig(preserve_ops=keep))
    edge = edge.to_backend(XnnpackPartitioner())
    try:
        for method in programs:
            _sanity_check_graph_for_non_decomp_ops(method, edge.exported_program(method), keep, None,
                                                   generate_error=True)
    except RuntimeError:  # a kept op left undelegated
        return to_edge_transform_and_lower(dict(programs), partitioner=[XnnpackPartitioner()])
    return edge


def _lower(programs: Mapping[str, torch.export.ExportedProgram], alias: tuple[str, str]):
    """XNNPACK lowering (`_edge_and_lower`), then `.to_executorch()` (constants compacted: see
    `_compact_xnnpack_constants`, SEGMENT_ALIGNMENT); `alias = (name, of)` adds method `name` as a copy of the
    already lowered method `of` (same delegate bytes, stored once) instead of lowering it again."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeProgramManager, ExecutorchBackendConfig, to_edge_transform_and_lower

    name, of = alias
    _without_provenance(programs)
    with _compact_xnnpack_constants(), _without_idle_retraces():
        edge = _edge_and_lower(programs)
        try:
            lowered = {method: edge.exported_program(method) for method in programs}
            lowered[name] = copy.deepcopy(lowered[of])
            edge = EdgeProgramManager(lowered, compile_config=edge.compile_config)
        except (AttributeError, TypeError):  # EdgeProgramManager's constructor changed: lower the alias like the rest
            edge = to_edge_transform_and_lower({**programs, name: programs[of]}, partitioner=[XnnpackPartitioner()])
    return edge.to_executorch(ExecutorchBackendConfig(segment_alignment=SEGMENT_ALIGNMENT))


class ExecuTorchBackend:
    name = "executorch"
    precisions = ("fp32", "int8")
    bn_style = "affine"  # conv weights untouched by BN, so every method can reference the same bytes
    own_process = False  # exported here, or in a `BackgroundExport` child

    calib_methods = CALIB_METHODS  # int8 activation observers; the first is the default
    sharing = "size"  # "speed": fp32 with BN folded per resolution; "auto": per layer (the int8 graph is the folded one)
    size_budget = DEFAULT_SIZE_BUDGET  # "auto": the fp32 file's size ÷ its floor (`fp32_plan`)
    takes_act_ranges = True  # int8: QAT's activation ranges replace the observers of the points they cover
    act_ranges = None  # {resolution: {QAT point: (lo, hi)}} (`convert --calib-from qat`), or None: images only

    def __init__(self, share_weights: bool = True, calib_method: str | None = None, sharing: str = "size",
                 size_budget: float = DEFAULT_SIZE_BUDGET, act_ranges=None):
        """`share_weights=False` folds BN per resolution everywhere (fastest graphs, K× the bytes). `sharing`
        (fp32): "size" shares every conv, "speed" folds every conv, "auto" folds the convs whose depthwise affine
        costs the most time per weight byte while the file stays within `size_budget` × its floor (`fp32_plan`).
        `calib_method`: int8 activation observer (`CALIB_METHODS`, default the first)."""
        self.share_weights = share_weights
        self.size_budget = check_size_budget(size_budget)
        self.sharing = sharing
        self.calib_method = check_calib_method(self.name, calib_method, self.calib_methods)
        self.act_ranges = act_ranges

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        if precision not in self.precisions:
            raise ValueError(f"ExecuTorch precision {precision!r}; expected one of: {', '.join(self.precisions)}")
        if not baked:
            raise ValueError("nothing to export: no baked resolutions")
        keys = spatial_keys(baked)  # resolutions (Resizable Networks: × stage-scale configurations), largest first
        resolutions = [Spatial.of(k) for k in keys]
        programs, sign_patterns, use = {}, [], []
        plan = self.fp32_plan(baked) if precision == "fp32" else None
        fold_fp32 = plan is None or not plan.shared
        fold = set(plan.folded) if plan is not None else set()
        with _deferred_recompiles():
            for key, sp in zip(keys, resolutions):
                module, r = baked[key].eval(), sp.resolution
                if precision == "fp32":
                    graph = _folded(module)[0] if fold_fp32 else _with_depthwise_affine(module, fold)
                else:
                    folded, unfolded = _folded(module)
                    graph = _quantized(folded, r, calib.get(key) if calib is not None else None,
                                       getattr(self, "calib_method", CALIB_METHODS[0]),
                                       (self.act_ranges or {}).get(r), use)
                    if self.share_weights:
                        _share_int8_weights(graph, unfolded)
                        sign_patterns.append(_signs(unfolded))
                programs[f"forward_{sp.tag}"] = torch.export.export(graph, _example(r))
            program = _lower(programs, alias=("forward", f"forward_{resolutions[0].tag}"))
        out_dir.mkdir(parents=True, exist_ok=True)
        file = f"model_{precision}.pte"
        tmp = out_dir / f".{file}.tmp"
        with open(tmp, "wb") as f:
            program.write_to_file(f)
        tmp.replace(out_dir / file)

        entries = tuple(Entry(sp.resolution, f"forward_{sp.tag}", INPUT, OUTPUT, (1, 3, sp.resolution, sp.resolution),
                              sp.stage_scales) for sp in resolutions)
        notes = (f"XNNPACK; methods {', '.join(f'forward_{sp.tag}' for sp in resolutions)}; "
                 f"forward = forward_{resolutions[0].tag}")
        if not self.share_weights:
            notes += "; BN folded per resolution (weights not shared)"
        elif fold_fp32 and precision == "fp32":
            notes += f"; --sharing {self.sharing}: BN folded per resolution (fp32 weights not shared)"
        elif precision == "fp32":
            notes += (f"; --sharing {self.sharing}: {len(plan.shared)} of {len(plan.shared) + len(plan.folded)} convs "
                      f"share their weights (per-resolution BN as a depthwise 1x1 conv), {len(plan.folded)} have BN "
                      f"folded per resolution (estimated {plan.size_ratio:.3f}× the floor)")
        else:
            differing = _differing_channels(sign_patterns)
            notes += ("; int8 conv weights quantized once, per-resolution BN in the per-channel weight scales"
                      + (f"; {differing} channel(s) change BN sign across resolutions (their layer is stored per "
                         "resolution)" if differing else ""))
        return Exported(self.name, precision, (file,), "NCHW", entries, runs_on_host=True, notes=notes,
                        folded_layers=None if plan is None else plan.folded,
                        range_use=sum(use, RangeUse()) if self.act_ranges and use else None)

    def fp32_plan(self, baked: Mapping[int, nn.Module]) -> SharingPlan | None:
        """The fp32 sharing plan for `baked` (None: BN folded into every conv, `sharing="speed"` or unshared)."""
        if not self.share_weights or self.sharing == "speed":
            return None
        keys = spatial_keys(baked)
        budget = self.size_budget if self.sharing == "auto" else 1.0
        return fp32_plan(baked[keys[0]].eval(), Spatial.of(keys[0]).resolution, len(keys), budget)

    def runner(self, exported: Exported, out_dir: Path) -> ExecuTorchRuntime:
        return ExecuTorchRuntime(Path(out_dir) / exported.files[0])


def _differing_channels(patterns: list[dict[str, Tensor]]) -> int:
    if len(patterns) < 2:
        return 0
    ref = patterns[0]
    differ = {fqn: torch.zeros_like(neg) for fqn, neg in ref.items()}
    for p in patterns[1:]:
        for fqn, neg in p.items():
            differ[fqn] |= neg != ref[fqn]
    return int(sum(int(d.sum()) for d in differ.values()))


def pte_named_data(path: Path) -> dict[str, int]:
    """Bytes of every named constant in a `.pte` (key → size). XNNPACK keys constants by the SHA-256 of their
    bytes, so a constant listed once here is stored once however many methods use it."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    named = deserialize_pte_binary(Path(path).read_bytes()).named_data
    if named is None:
        return {}
    return {key: len(named.buffers[entry.buffer_index]) for key, entry in named.pte_data.items()}
