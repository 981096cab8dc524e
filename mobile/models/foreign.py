"""Your own network: `switchable(module, ...)` makes any `nn.Module` with `nn.BatchNorm2d` layers a resflex
multi-resolution model, and `FILE.py:FACTORY` / `package.module:FACTORY` arch specs build one from user code.

The user's module is wrapped, not rewritten: `SwitchableNet.net` is a copy of it in which every `nn.BatchNorm2d`
became a `SwitchableBatchNorm2d` (or, after a stage resize, a `ScaleAwareBatchNorm2d`) whose private BNs all start
as that BN, and, for method "resizable", `StageResize` layers were inserted into `nn.Sequential` containers. State-dict
keys are the module's own under `net.`, with `.bn.{i}.` (or `.per_scale.{s}.bn.{i}.`) where a BN was.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.abc
import importlib.util
import json
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from ..layers import ResolutionAware, ScaleAwareBatchNorm2d, StageResize, SwitchableBatchNorm2d, parse_enum
from .base import PAPER_RESOLUTIONS, Method, ModelConfig, MultiResolutionNet, Preprocessing

ALLOW_CHANGED_ENV = "RESFLEX_ALLOW_CHANGED_ARCH"  # "1": load a checkpoint even if its factory file changed
ARCH_MODULES_ENV = "RESFLEX_ARCH_MODULES"  # module name → [path, sha256] of imported factory files (see _ArchFinder)
ARCH_MODULE_PREFIX = "resflex_arch_"
PYTHON_PREFIX = "python:"  # arch of a model made by `switchable()` in Python (not rebuildable from a spec)
SAN_REFUSED = ("method 'san' is not available for your own network: SAN generates every convolution's kernel from a "
               "scale code with a meta-learner, so each Conv2d would have to be rebuilt as a MetaConv2d and the "
               "pretrained kernel replaced — not sound for an arbitrary module (convolutions called functionally, "
               "shared or subclassed). Use method 'rsnet' or 'resizable'")
NO_BN = ("has no nn.BatchNorm2d layer: there is nothing to switch. RS-Nets keep the convolutions shared and give each "
         "resolution its own BatchNorm statistics and affine parameters (private BN); a network without BatchNorm2d "
         "cannot learn per-resolution statistics")

_PYTHON_MODELS: dict[str, SwitchableNet] = {}  # arch → a pristine copy, so checkpoints of Python-API models load


class ArchSourceError(ValueError):
    """An arch spec whose code is missing, changed, fails or returns something other than an nn.Module."""


class SwitchableNet(MultiResolutionNet):
    """A user's network made switchable by `switchable()`; `forward` is the network's own."""

    def __init__(self, config: ModelConfig, net: nn.Module, preprocessing: Preprocessing | None = None):
        super().__init__(config, preprocessing)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def switchable(model: nn.Module, resolutions: Sequence[int] = PAPER_RESOLUTIONS, method: Method | str = Method.RSNET,
               num_classes: int | None = None, preprocessing: Preprocessing | None = None,
               stage_modules: Sequence[str] | None = None, scales: Sequence[float] | None = None,
               arch: str | None = None) -> SwitchableNet:
    """A multi-resolution copy of `model` (which stays unchanged) that behaves like a `create_model` model.

    Every `nn.BatchNorm2d` becomes a switchable BN whose private copies start from its parameters and running
    statistics, so pretrained weights carry over. `num_classes` (default: read from the output) must match the
    logits `model` returns ([N, classes]). `method`: "rsnet", "single" (no surgery: the I-Net baseline) or
    "resizable"; "san" is refused (see `SAN_REFUSED`).

    Resizable: a `StageResize` goes right before each *stage start*. Detected by one probe forward per training
    resolution (eval mode, no gradients): among the children of `nn.Sequential` containers that run as a chain
    (the root module's own children count only when they are Sequentials themselves), a stage starts at the first
    child, in call order, that keeps its input's spatial size, holds a Conv2d, and sees a map smaller than every
    earlier stage's (and than the input). The stride of each stage must give its map side as ceil(r / stride) at every
    training resolution. Or give `stage_modules`: names of such Sequential children to resize before. Every BN that
    runs after a resize is scale-aware for that stage.

    Refused, naming the module: no BatchNorm2d, a BN module called more than once per forward (one set of private
    statistics cannot serve two places), batch norm done with `F.batch_norm` outside a BN module, BNs without affine
    parameters or running statistics, a model that is already switchable. `arch` names the model in its config
    (prefixed `python:`; default `python:<module>.<class>`); a checkpoint of it loads again in any process that built it with `switchable()`."""
    name = arch or f"{type(model).__module__}.{type(model).__qualname__}"
    return _switchable(model, resolutions, method, num_classes, preprocessing, stage_modules, scales,
                       name if name.startswith(PYTHON_PREFIX) else PYTHON_PREFIX + name, "")


def _switchable(model, resolutions, method, num_classes, preprocessing, stage_modules, scales, arch: str,
                arch_sha256: str) -> SwitchableNet:
    method = parse_enum(Method, method, "method")
    what = _describe(model, arch)
    if method is Method.SAN:
        raise ValueError(f"{what}: {SAN_REFUSED}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: expected an nn.Module, got {type(model).__name__}")
    if isinstance(model, MultiResolutionNet) or any(isinstance(m, ResolutionAware) for m in model.modules()):
        raise ValueError(f"{what} is already switchable (it holds resflex resolution-aware layers)")
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        raise ValueError(f"{what} {NO_BN}")
    for name, bn in bns:
        if not (bn.affine and bn.track_running_stats):
            raise ValueError(f"{what}: BatchNorm2d {name!r} has affine={bn.affine}, track_running_stats="
                             f"{bn.track_running_stats}; private BNs need both (learnable γ/β and running statistics)")
    if stage_modules is not None and method is not Method.RESIZABLE:
        raise ValueError(f"{what}: stage_modules are for method 'resizable' only (method is {method.value!r})")
    net = copy.deepcopy(model)
    top = max(resolutions) if resolutions else 0
    probe = _probe(net, sorted(set(resolutions), reverse=True) if method is Method.RESIZABLE else [top], what)
    logits = probe.outputs[top]
    if num_classes is None:
        num_classes = logits.shape[1]
    elif logits.shape[1] != num_classes:
        raise ValueError(f"{what}: returns {logits.shape[1]} logits per image, expected num_classes={num_classes}")
    stages = _stages(net, probe, stage_modules, what) if method is Method.RESIZABLE else []
    config = ModelConfig(arch, method, tuple(resolutions), num_classes=int(num_classes), scales=tuple(scales or ()),
                         stage_modules=tuple(name for name, _ in stages), arch_sha256=arch_sha256)
    if method is not Method.SINGLE:
        _replace_bns(net, config, probe, stages)
    result = SwitchableNet(config, net, preprocessing)
    result.train(model.training)
    _check_unchanged(result, probe, top, what)
    if not is_arch_spec(arch):
        _PYTHON_MODELS[arch] = copy.deepcopy(result)
    return result


def _describe(model, arch: str) -> str:
    return f"model {type(model).__name__}" if arch.startswith(PYTHON_PREFIX) else f"--arch {arch}"


class _Probe:
    """What one forward per resolution showed: module calls in order, BN call counts, raw batch norms, outputs."""

    def __init__(self):
        self.order: dict[str, int] = {}  # module name → index of its (first) call
        self.sides: dict[str, dict[int, tuple[int, int]]] = {}  # name → resolution → (input side, output side)
        self.calls: dict[str, int] = {}  # calls per module in the last forward
        self.outputs: dict[int, Tensor] = {}  # resolution → logits
        self.inputs: dict[int, Tensor] = {}


class _RawBatchNorm(TorchFunctionMode):
    """Records every batch norm computed outside a `_BatchNorm` module (`stack` holds the running modules)."""

    FUNCTIONS = (F.batch_norm, torch.batch_norm, torch.native_batch_norm)

    def __init__(self, stack: list):
        super().__init__()
        self.stack, self.found = stack, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FUNCTIONS and not (self.stack and isinstance(self.stack[-1][1], _BatchNorm)):
            self.found.append((self.stack[-1][0] if self.stack else "", _user_frame()))
        return func(*args, **(kwargs or {}))


def _user_frame() -> str:
    """file:line of the innermost caller outside torch and this file."""
    skip = (os.path.dirname(torch.__file__), __file__)
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.startswith(skip):
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "?"


def _side(x) -> int | None:
    return x.shape[-1] if isinstance(x, Tensor) and x.ndim == 4 else None


@torch.no_grad()
def _probe(net: nn.Module, resolutions: list[int], what: str) -> _Probe:
    probe, stack, hooks = _Probe(), [], []
    modules = dict(net.named_modules())

    def pre(name, module):
        def hook(m, args):
            stack.append((name, m))
            probe.calls[name] = probe.calls.get(name, 0) + 1
            probe.order.setdefault(name, len(probe.order))
            probe.sides.setdefault(name, {})[current] = (_side(args[0]) if args else None, None)
        return hook

    def post(name):
        def hook(m, args, out):
            stack.pop()
            probe.sides[name][current] = (probe.sides[name][current][0], _side(out))
        return hook

    for name, m in modules.items():
        hooks += [m.register_forward_pre_hook(pre(name, m)), m.register_forward_hook(post(name))]
    was_training = net.training
    net.eval()
    mode = _RawBatchNorm(stack)
    try:
        for current in resolutions:
            probe.calls.clear()
            probe.inputs[current] = torch.randn(1, 3, current, current, generator=torch.Generator().manual_seed(0))
            try:
                with mode:
                    out = net(probe.inputs[current].to(_device(net)))
            except Exception as e:
                raise ValueError(f"{what}: a forward of a 1×3×{current}×{current} image failed: "
                                 f"{type(e).__name__}: {e}") from None
            if not isinstance(out, Tensor) or out.ndim != 2:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(f"{what}: forward returns {shape}; resflex needs logits of shape [N, classes]")
            probe.outputs[current] = out.detach().float().cpu()
            if mode.found:
                where, frame = mode.found[0]
                raise ValueError(f"{what}: batch norm computed with F.batch_norm outside a BatchNorm2d module (in "
                                 f"{where or 'the top-level forward'}, at {frame}): resflex cannot give it private "
                                 "per-resolution statistics; use an nn.BatchNorm2d module there")
            twice = [n for n, m in modules.items() if isinstance(m, nn.BatchNorm2d) and probe.calls.get(n, 0) > 1]
            if twice:
                raise ValueError(f"{what}: BatchNorm2d {twice[0]!r} is called {probe.calls[twice[0]]} times in one "
                                 "forward; its running statistics mix those places, and a switched copy would too. "
                                 "Give each place its own BatchNorm2d")
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return probe


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters(), torch.empty(0)).device


def _chain_children(net: nn.Module, probe: _Probe) -> dict[str, tuple[nn.Sequential, str]]:
    """name → (parent Sequential, key) of every child of a Sequential that runs as a chain, reached from the root
    through Sequentials only (each called exactly once)."""
    found = {}

    def visit(prefix: str, seq: nn.Module):
        for key, child in seq._modules.items():
            name = f"{prefix}{key}"
            if isinstance(seq, nn.Sequential):
                found[name] = (seq, key)
            if isinstance(child, nn.Sequential) and probe.calls.get(name) == 1:
                visit(f"{name}.", child)

    visit("", net)
    return found


def _stages(net: nn.Module, probe: _Probe, stage_modules, what: str) -> list[tuple[str, int]]:
    """(module name, stride) of every stage start, in call order (see `switchable`)."""
    chain = _chain_children(net, probe)
    top = max(probe.outputs)
    if stage_modules is not None:
        names = list(stage_modules)
        for name in names:
            if name not in chain:
                raise ValueError(f"{what}: stage module {name!r} is not a child of an nn.Sequential that runs as a chain "
                                 f"(resizes can go before: {', '.join(list(chain)[:8]) or 'none'})")
            if name not in probe.order:
                raise ValueError(f"{what}: stage module {name!r} is never called in forward")
        names.sort(key=probe.order.__getitem__)
    else:
        names, last = [], top
        for name in sorted((n for n in chain if n in probe.order), key=probe.order.__getitem__):
            side_in, side_out = probe.sides[name][top]
            module = net.get_submodule(name)
            if side_in is not None and side_in == side_out and side_in < last and \
                    any(isinstance(m, nn.Conv2d) for m in module.modules()):
                names.append(name)
                last = side_in
        if not names:
            raise ValueError(f"{what}: no stage boundary found (no Sequential child at a reduced map size holding a "
                             "Conv2d); pass stage_modules, or use method 'rsnet'")
    stages = []
    for name in names:
        side = probe.sides[name][top][0]
        if side is None:
            raise ValueError(f"{what}: stage module {name!r} does not take a 4-D feature map")
        stride = round(top / side)
        wrong = [f"{probe.sides[name][r][0]} px at {r} px (ceil({r}/{stride}) = {math.ceil(r / stride)})"
                 for r in probe.outputs if probe.sides[name][r][0] != math.ceil(r / stride)]
        if stride < 1 or wrong:
            raise ValueError(f"{what}: stage at {name!r} has map side {'; '.join(wrong) or side}: stage resizes need a "
                             "map side of ceil(resolution / stride) at every training resolution (padding 'same'); "
                             "choose other stage_modules or use method 'rsnet'")
        stages.append((name, stride))
    return stages


def _replace_bns(net: nn.Module, config: ModelConfig, probe: _Probe, stages: list[tuple[str, int]]) -> None:
    """BNs → switchable / scale-aware copies; stage resizes inserted before each stage start."""
    starts = [probe.order[name] for name, _ in stages]
    new = {}
    for name, bn in list(net.named_modules()):
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        stage = sum(probe.order.get(name, -1) > s for s in starts) - 1
        if stage < 0:
            layer = SwitchableBatchNorm2d(bn.num_features, config.resolutions, bn.eps, bn.momentum)
            copies = list(layer.bn)
        else:
            layer = ScaleAwareBatchNorm2d(bn.num_features, config.resolutions, config.scales, stage, bn.eps,
                                          bn.momentum)
            copies = [c for per in layer.per_scale for c in per.bn]
        for c in copies:
            c.load_state_dict(bn.state_dict())
        new[id(bn)] = layer.to(bn.weight.device)
    for module in net.modules():  # every place a BN is registered (one BN may be registered under two names)
        for key, child in list(module._modules.items()):
            if id(child) in new:
                module._modules[key] = new[id(child)]
    chain = _chain_children(net, probe)
    for stage, (name, stride) in enumerate(stages):
        seq, key = chain[name]
        items = list(seq._modules.items())
        at = [k for k, _ in items].index(key)
        resize = StageResize(config.resolutions, config.scales, stage, stride)
        seq._modules.clear()
        seq._modules.update([*items[:at], (f"stage_resize{stage}", resize), *items[at:]])


@torch.no_grad()
def _check_unchanged(model: SwitchableNet, probe: _Probe, resolution: int, what: str) -> None:
    """At a training resolution (full configuration) the switchable model must compute what the original did."""
    was_training = model.training
    model.eval()
    try:
        with model.at_config(resolution, model.full_config or None):
            out = model(probe.inputs[resolution].to(_device(model))).float().cpu()
        if model.num_stages:  # every stage at its smallest factor: resizes must fit the network's shapes
            smallest = min(model.config.resolutions)
            with model.at_config(smallest, (min(model.config.scales),) * model.num_stages):
                model(torch.zeros(1, 3, smallest, smallest, device=_device(model)))
    except Exception as e:
        raise ValueError(f"{what}: the switchable model fails where the original worked ({type(e).__name__}: {e}); "
                         "stage resizes must not sit inside a residual branch — pass other stage_modules") from None
    finally:
        model.train(was_training)
    if not torch.allclose(out, probe.outputs[resolution], rtol=1e-4, atol=1e-5):
        raise ValueError(f"{what}: the switchable model computes something else than the original at {resolution} px "
                         "(max difference {:.3g}); is a BatchNorm2d used in a way resflex cannot see?".format(
                             (out - probe.outputs[resolution]).abs().max().item()))


# --------------------------------------------------------------------------- arch specs: FILE.py:FACTORY


def is_arch_spec(arch: str) -> bool:
    """'path/to/net.py:factory' or 'package.module:factory' (not a registered name, not a `python:` model)."""
    return isinstance(arch, str) and ":" in arch and not arch.startswith(PYTHON_PREFIX)


def _split(spec: str) -> tuple[str, str]:
    target, _, factory = spec.rpartition(":")
    if not target or not factory.isidentifier():
        raise ArchSourceError(f"--arch {spec}: expected FILE.py:FACTORY or package.module:FACTORY (FACTORY a Python "
                              "name)")
    return target, factory


def _is_file_spec(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def normalize_spec(spec: str) -> str:
    """The spec with a file's path made absolute (checkpoints load from any working directory); ArchSourceError
    naming the spec for a malformed one or a file / module that does not exist. Imports nothing from the file."""
    target, factory = _split(spec)
    path = _module_file(spec, target)
    return f"{path.resolve()}:{factory}" if _is_file_spec(target) else spec


def _allow_changed() -> bool:
    return os.environ.get(ALLOW_CHANGED_ENV, "") == "1"


def _module_file(spec: str, target: str) -> Path:
    if _is_file_spec(target):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ArchSourceError(f"--arch {spec}: no file {path}")
        return path
    if not all(part.isidentifier() for part in target.split(".")):
        raise ArchSourceError(f"--arch {spec}: {target!r} is neither a .py file nor a dotted module name")
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as e:
        raise ArchSourceError(f"--arch {spec}: cannot find module {target!r} ({e})") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise ArchSourceError(f"--arch {spec}: no module {target!r} on the Python path")
    return Path(found.origin)


class _ArchFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a factory file as module `resflex_arch_<sha256 prefix>` — in this process and in its children (convert's
    background exports unpickle the user's classes), which inherit the name → (path, sha256) table in
    RESFLEX_ARCH_MODULES. The bytes executed are the bytes hashed; a file changed since is an ImportError."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(ARCH_MODULE_PREFIX):
            return None
        entry = json.loads(os.environ.get(ARCH_MODULES_ENV) or "{}").get(fullname)
        if entry is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=entry[0])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        path, sha = json.loads(os.environ[ARCH_MODULES_ENV])[module.__name__]
        data = Path(path).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ImportError(f"{path} changed while it was being loaded (sha256 is no longer {sha})")
        module.__file__ = path
        exec(compile(data, path, "exec"), module.__dict__)


if not any(isinstance(f, _ArchFinder) for f in sys.meta_path):
    sys.meta_path.append(_ArchFinder())


def load_factory(spec: str, expected_sha256: str = ""):
    """(factory, sha256 of its file). With `expected_sha256`, a file whose bytes changed is refused before it is
    imported (both values named) unless RESFLEX_ALLOW_CHANGED_ARCH=1."""
    target, name = _split(spec)
    path = _module_file(spec, target)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha != expected_sha256 and not _allow_changed():
        raise ArchSourceError(f"--arch {spec}: {path} changed since the checkpoint was written (sha256 {sha} now, "
                              f"{expected_sha256} in the checkpoint); it was not imported. Restore the file, or set "
                              f"{ALLOW_CHANGED_ENV}=1 to load it anyway")
    try:
        if _is_file_spec(target):
            name_in_sys = f"{ARCH_MODULE_PREFIX}{sha[:16]}"
            known = json.loads(os.environ.get(ARCH_MODULES_ENV) or "{}")
            os.environ[ARCH_MODULES_ENV] = json.dumps({**known, name_in_sys: [str(path.resolve()), sha]})
            module = importlib.import_module(name_in_sys)  # via _ArchFinder, which checks the sha256 again
        else:
            module = importlib.import_module(target)
    except Exception as e:
        raise ArchSourceError(f"--arch {spec}: importing {path} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ArchSourceError(f"--arch {spec}: {path} defines no function {name!r}")
    return factory, sha


def from_spec(spec: str, method: Method | str = Method.RSNET, resolutions: Sequence[int] = PAPER_RESOLUTIONS,
              num_classes: int = 1000, scales: Sequence[float] | None = None,
              stage_modules: Sequence[str] | None = None, expected_sha256: str = "") -> SwitchableNet:
    """`switchable(factory(num_classes=...), ...)` for an arch spec; errors name the spec."""
    spec = normalize_spec(spec)
    factory, sha = load_factory(spec, expected_sha256)
    try:
        net = factory(num_classes=num_classes)
    except Exception as e:
        raise ArchSourceError(f"--arch {spec}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ArchSourceError(f"--arch {spec}: the factory returned a {type(net).__name__}, expected an nn.Module")
    return _switchable(net, resolutions, method, num_classes, None, stage_modules, scales, spec, sha)


def from_config(config: ModelConfig) -> SwitchableNet:
    """Rebuild a model of a foreign arch from its config (fresh weights): an arch spec, or a `switchable()` model
    built earlier in this process."""
    if config.arch in _PYTHON_MODELS:
        model = copy.deepcopy(_PYTHON_MODELS[config.arch])
        if model.config != config:
            raise ValueError(f"arch {config.arch}: built in this process with {model.config}, not {config}")
        return model
    if not is_arch_spec(config.arch):
        raise ValueError(f"arch {config.arch!r} was made by switchable() in Python; call switchable() on the same "
                         "network in this process first (or train it with --arch FILE.py:FACTORY)")
    return from_spec(config.arch, config.method, config.resolutions, config.num_classes, config.scales or None,
                     config.stage_modules if config.method is Method.RESIZABLE else None, config.arch_sha256)
