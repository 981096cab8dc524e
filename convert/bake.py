"""Bake: a switchable model at one resolution → a plain eval-mode torch module with no resolution logic.

Every `SwitchableBatchNorm2d` becomes that resolution's BN (trained, nearest, interpolated or recalibrated,
as `bn_mode` says) and every SAN `MetaConv2d` becomes an `nn.Conv2d` whose kernel the meta-learner generated
once. How the BN is then expressed is the `bn` style — the choice that decides whether backends can share
conv weights across resolutions:

- `keep`:   `nn.BatchNorm2d` (eval), which converters usually fold into the conv;
- `fold`:   folded into the preceding conv now (conv weights then differ per resolution);
- `affine`: an explicit per-channel `x * scale + shift` after an untouched conv, so the conv weights stay
            byte-identical across resolutions and a backend can store them once.

A (Conv2d, BN) pair is found inside an `nn.Sequential` (the conv right before the BN) or, in a network that keeps
them as attributes (`self.bn1(self.conv1(x))`), by dataflow (`_pair_by_dataflow`): such a pair is rewritten into the
Sequential layout first, so every backend's graph surgery sees one layout. A BN it cannot prove paired stays a
BatchNorm2d — correct, but converters fold it per resolution, which costs that conv's bytes once per resolution.

Resizable Networks: `stage_scales` (one trained factor per stage; default the full configuration) picks the
configuration. Every `ScaleAwareBatchNorm2d` becomes the BN of (resolution, its stage's factor), and every
`StageResize` becomes a `FixedResize` — one bilinear `F.interpolate` to a fixed size (§3.1's G, with the size
known at bake time) — or an `nn.Identity` where the map already has that size. Module names stay those of the
model, so the conv weights are the same tensors in every configuration (shared like resolutions).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from resflex.mobile.bundle.schema import DEFAULT_SIZE_BUDGET
from resflex.mobile.layers import (
    DEFAULT_BN_MODE,
    BNMode,
    MetaConv2d,
    ScaleAwareBatchNorm2d,
    ScaleCode,
    StageResize,
    SwitchableBatchNorm2d,
    check_stage_scales,
    parse_enum,
)
from resflex.mobile.models import MultiResolutionNet


class BNStyle(str, enum.Enum):
    KEEP = "keep"
    FOLD = "fold"
    AFFINE = "affine"


class ChannelAffine(nn.Module):
    """Eval-mode BatchNorm as y = x · scale + shift per channel (scale = γ/√(σ²+ε), shift = β − μ·scale)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("scale", scale.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("shift", (bn.bias - bn.running_mean * scale).detach().view(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class FixedResize(nn.Module):
    """A stage resize baked at one size: bilinear (align_corners=False) to `size` × `size` px — one static resize op
    in every exporter (ExecuTorch, ONNX `Resize`, TFLite `RESIZE_BILINEAR` via onnx2tf, Core ML)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _plain_bn(layer: SwitchableBatchNorm2d, resolution: int, mode: BNMode) -> nn.BatchNorm2d:
    weight, bias, mean, var = layer.parameters_at(resolution, mode)
    bn = nn.BatchNorm2d(layer.num_features, eps=layer.eps)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return bn.eval()


def _plain_conv(layer: MetaConv2d, resolution: int, code: ScaleCode) -> nn.Conv2d:
    layer.switch(resolution, layer.bn_mode, code)
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     groups=layer.groups, bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(layer.weight_at(layer.code_resolution()))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def _replace(module: nn.Module, convert) -> None:
    """Replace children in place by `convert(child)` (None keeps the child and recurses into it)."""
    for name, child in module.named_children():
        new = convert(child)
        if new is None:
            _replace(child, convert)
        else:
            setattr(module, name, new)


def conv_pairs(module: nn.Module, follower: type, prefix: str = ""):
    """Yield (parent, conv name, follower name, conv FQN) for every Conv2d directly followed by a `follower` module
    inside a Sequential: the layout every BN style and every backend's graph surgery works on (`_pair_by_dataflow`
    brings attribute pairs into it)."""
    for name, child in module.named_children():
        yield from conv_pairs(child, follower, f"{prefix}{name}.")
    if isinstance(module, nn.Sequential):
        items = list(module._modules.items())
        for (conv_name, a), (name, b) in zip(items, items[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, follower):
                yield module, conv_name, name, prefix + conv_name


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """What one (conv, BN) pair costs a multi-resolution fp32 artifact either way: folded per resolution, its
    `weight_elements` are stored once per extra resolution; shared (BN as a per-channel op after the conv), every
    inference makes one extra pass over its `output_elements` (at the largest resolution)."""

    name: str  # the conv's fully qualified module name
    weight_elements: int
    output_elements: int

    @property
    def fold_value(self) -> float:
        """Time saved per byte spent by folding: output elements per weight element."""
        return self.output_elements / self.weight_elements


@dataclasses.dataclass(frozen=True)
class SharingPlan:
    """Which convs an fp32 artifact with `methods` resolutions folds BN into per resolution (`folded`: exactly the
    layers whose `fold_value` is one of `fold_values`); the others store their weights once."""

    folded: tuple[str, ...]
    shared: tuple[str, ...]
    fold_values: tuple[float, ...]  # a backend that sees only the converted graph folds the convs with these values
    floor_bytes: int  # the estimated artifact size with every conv shared
    extra_bytes: int  # what folding `folded` adds to it

    @property
    def size_ratio(self) -> float:
        return (self.floor_bytes + self.extra_bytes) / self.floor_bytes


def check_size_budget(size_budget) -> float:
    """A `--size-budget` as a float ≥ 1 (the artifact's size ÷ its floor, the size with every weight shared)."""
    try:
        value = float(size_budget)
    except (TypeError, ValueError):
        raise ValueError(f"--size-budget {size_budget!r}: expected a number ≥ 1 (artifact size ÷ the size with every "
                         f"weight shared, e.g. {DEFAULT_SIZE_BUDGET})") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--size-budget {size_budget!r}: expected a finite number ≥ 1 (artifact size ÷ the size with "
                         f"every weight shared, e.g. {DEFAULT_SIZE_BUDGET}; --sharing speed folds every layer)")
    if value < 1:
        raise ValueError(f"--size-budget {value:g} cannot be met: the smallest achievable size is the floor, 1.0 × "
                         "(every weight shared, --sharing size)")
    return value


@torch.no_grad()
def layer_costs(module: nn.Module, resolution: int, names) -> list[LayerCost]:
    """`LayerCost` of the convs named in `names` (FQNs), from one forward of `module` at `resolution`."""
    names, out, hooks = list(names), {}, []
    for name in names:
        hooks.append(module.get_submodule(name).register_forward_hook(
            lambda _m, _i, y, name=name: out.__setitem__(name, y.numel())))
    try:
        module(torch.zeros(1, 3, resolution, resolution))
    finally:
        for h in hooks:
            h.remove()
    return [LayerCost(n, module.get_submodule(n).weight.numel(), out.get(n, 0)) for n in names]


def sharing_plan(module: nn.Module, resolution: int, names, methods: int, size_budget: float) -> SharingPlan:
    """`plan_sharing` for the (conv, BN) pairs whose convs are named in `names`, `module` baked at the largest
    resolution. Floor: the module's float tensors once plus, per extra resolution, each pair's BN scale and shift."""
    costs = layer_costs(module, resolution, names)
    per_method = sum(8 * module.get_submodule(c.name).out_channels for c in costs)
    state = sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())
    return plan_sharing(costs, methods, size_budget, 4 * state + (methods - 1) * per_method)


def plan_sharing(costs: list[LayerCost], methods: int, size_budget: float, floor_bytes: int) -> SharingPlan:
    """Fold the layers with the most output per weight element first (the extra pass a shared layer costs grows
    with its output; the bytes folding costs grow with its weights), each `(methods − 1) × 4 × weight_elements`
    fp32 bytes, skipping what no longer fits, while the artifact stays within `size_budget` × `floor_bytes`.
    Layers of equal `fold_value` go together, so the plan is a set of values (a backend that sees only the
    converted graph can apply it). One method: everything folded (nothing to share)."""
    size_budget = check_size_budget(size_budget)
    allowance = (size_budget - 1.0) * floor_bytes
    groups = collections.defaultdict(list)
    for cost in costs:
        groups[cost.fold_value].append(cost)
    values, spent = [], 0
    for value in sorted(groups, reverse=True):
        extra = max(methods - 1, 0) * 4 * sum(c.weight_elements for c in groups[value])
        if spent + extra <= allowance or methods <= 1:
            values.append(value)
            spent += extra
    chosen = set(values)
    return SharingPlan(tuple(c.name for c in costs if c.fold_value in chosen),
                       tuple(c.name for c in costs if c.fold_value not in chosen), tuple(values), int(floor_bytes),
                       int(spent))


def _fold_pairs(module: nn.Module, style: BNStyle) -> None:
    """Turn every (Conv2d, BatchNorm2d) pair of `conv_pairs` into the requested style."""
    for parent, conv_name, bn_name, _ in list(conv_pairs(module, nn.BatchNorm2d)):
        conv, bn = parent._modules[conv_name], parent._modules[bn_name]
        if style is BNStyle.FOLD:
            parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
            parent._modules[bn_name] = nn.Identity()
        else:
            parent._modules[bn_name] = ChannelAffine(bn)


def _graph_calls(module: nn.Module, x: Tensor):
    """(graph, owner) of one trace of `module`: `owner(node)` names the module whose forward made `node` and says
    whether the node is that module's conv / batch-norm op. torch.fx first (milliseconds); torch.export (runs the
    model, follows shape-dependent Python) when fx cannot trace; None when neither can."""
    try:
        graph = torch.fx.symbolic_trace(module).graph
        return graph, lambda node: node.target if node.op == "call_module" else None
    except Exception:
        pass
    try:
        graph = torch.export.export(module, (x,), strict=False).graph
    except Exception:
        return None

    def owner(node):
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        name = getattr(node.target, "__name__", "")
        return list(stack.values())[-1][0] if stack and ("conv" in name or "batch_norm" in name) else None
    return graph, owner


def _conv_bn_pairs(module: nn.Module, x: Tensor) -> list[tuple[str, str]]:
    """(conv name, BN name) of each plain Conv2d whose output goes to a plain BatchNorm2d and nowhere else, each
    called once per forward and reachable under one name only (so a Sequential(conv, BN) in the conv's place and an
    Identity in the BN's computes the same)."""
    traced = _graph_calls(module, x)
    if traced is None:
        return []
    graph, owner = traced
    modules = dict(module.named_modules())
    names = collections.Counter(id(m) for _, m in module.named_modules(remove_duplicate=False))
    calls = collections.defaultdict(list)  # module name → its conv / batch-norm nodes
    for node in graph.nodes:
        name = owner(node)
        if name in modules:
            calls[name].append(node)
    pairs = []
    for bn_name, bn_nodes in calls.items():
        bn = modules[bn_name]
        if type(bn) is not nn.BatchNorm2d or len(bn_nodes) != 1 or not bn_nodes[0].args:
            continue
        source = bn_nodes[0].args[0]
        conv_name = owner(source) if isinstance(source, torch.fx.Node) else None
        if conv_name in modules and type(modules[conv_name]) is nn.Conv2d and calls[conv_name] == [source] \
                and len(source.users) == 1 and names[id(bn)] == 1 and names[id(modules[conv_name])] == 1:
            pairs.append((conv_name, bn_name))
    return pairs


@torch.no_grad()
def _pair_by_dataflow(module: nn.Module, resolution: int) -> int:
    """Rewrite each pair `_conv_bn_pairs` finds into the layout `_fold_pairs` handles (conv → Sequential(conv,
    BN), BN → Identity), kept only where a forward at `resolution` still gives the same logits (it would not if
    forward read the conv's attributes, say): all pairs at once, else one by one. Returns how many were kept."""
    if not any(type(m) is nn.BatchNorm2d for m in module.modules()):
        return 0
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    pairs = _conv_bn_pairs(module, x)
    if not pairs:
        return 0
    want = module(x)

    def rewrite(chosen) -> bool:
        undo = []
        for conv_name, bn_name in chosen:
            conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
            for name, new in ((conv_name, nn.Sequential(conv, bn)), (bn_name, nn.Identity())):
                parent, _, key = name.rpartition(".")
                holder = module.get_submodule(parent)
                undo.append((holder, key, holder._modules[key]))
                holder._modules[key] = new
        try:
            if torch.allclose(module(x), want, rtol=1e-4, atol=1e-5):
                return True
        except Exception:
            pass
        for holder, key, old in reversed(undo):
            holder._modules[key] = old
        return False

    if rewrite(pairs):
        return len(pairs)
    return sum(rewrite([pair]) for pair in pairs) if len(pairs) > 1 else 0


@torch.no_grad()
def bake(
    model: MultiResolutionNet,
    resolution: int,
    bn_mode: BNMode | str = DEFAULT_BN_MODE,
    scale_code: ScaleCode | str = ScaleCode.IDEAL,
    bn: BNStyle | str = BNStyle.KEEP,
    stage_scales=None,
) -> nn.Module:
    """A plain eval-mode copy of `model` that computes exactly what `model` computes at `resolution` (and, for a
    resizable model, at the spatial configuration `stage_scales`; default its full configuration)."""
    bn_mode = parse_enum(BNMode, bn_mode, "BN mode")
    scale_code = parse_enum(ScaleCode, scale_code, "scale code")
    bn = parse_enum(BNStyle, bn, "BN style")
    stages = getattr(model, "num_stages", 0)
    if stages:
        stage_scales = check_stage_scales(model.full_config if stage_scales is None else stage_scales,
                                          model.config.scales, stages, f"{model.config.arch} ({stages} stages)")
    elif stage_scales:
        raise ValueError(f"stage_scales {list(stage_scales)}: method {model.config.method.value!r} has no stage "
                         "scales (only method 'resizable' has)")
    if resolution not in model.config.resolutions and bn_mode is BNMode.RECALIBRATE:
        if not any(resolution in m.calibrated for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)):
            raise ValueError(f"bake at {resolution}: BN mode 'recalibrate' needs recalibrate_bn(model, ..., "
                             f"{resolution}) first")
    if resolution not in model.config.resolutions:
        model.probe_map_sizes(resolution)  # BN interpolation weighs by each layer's map size
    baked = copy.deepcopy(model).eval()
    sizes = _resize_sizes(baked, resolution, stage_scales) if stages else {}

    def convert(child: nn.Module):
        if isinstance(child, StageResize):
            size, incoming = sizes[id(child)]
            return nn.Identity() if incoming == size else FixedResize(size)
        if isinstance(child, ScaleAwareBatchNorm2d):
            return _plain_bn(child.at_scale(stage_scales[child.stage]), resolution, bn_mode)
        if isinstance(child, SwitchableBatchNorm2d):
            return _plain_bn(child, resolution, bn_mode)
        if isinstance(child, MetaConv2d):
            return _plain_conv(child, resolution, scale_code)
        return None

    _replace(baked, convert)
    baked.eval()
    if bn is not BNStyle.KEEP:
        _fold_pairs(baked, bn)
        if _pair_by_dataflow(baked, resolution):
            _fold_pairs(baked, bn)
    baked._state = (resolution, bn_mode, scale_code)
    if stages:
        baked._stage_scales = stage_scales
    return baked.requires_grad_(False)


def _resize_sizes(model: nn.Module, resolution: int, stage_scales) -> dict[int, tuple[int, int]]:
    """id(StageResize) → (target side, incoming side) in one forward at (resolution, stage_scales)."""
    sizes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, StageResize):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: sizes.__setitem__(id(mod), (mod.target_size(), args[0].shape[-1]))))
    try:
        with model.at_config(resolution, stage_scales):
            model(torch.zeros(1, 3, resolution, resolution))
    finally:
        for h in hooks:
            h.remove()
    return sizes
