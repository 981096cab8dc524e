"""`convert`: checkpoint → bundle (manifest.json, lut.json, one artifact per backend × precision holding
every resolution), each artifact verified in its own runtime against the baked torch module.

Resizable checkpoints: every spatial configuration (resolution × one factor per stage) is one more entry of every
artifact, sharing its weights — the configurations of a `resflex search` `configs.json` (`configs`), or else the
full configuration at each training resolution. Entries, parity rows and LUT points carry `stage_scales`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import platform
import time
import traceback
import warnings
import weakref
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from resflex.mobile import __version__
from resflex.mobile.bundle import schema
from resflex.mobile.checkpoint import load_checkpoint, qat_ranges
from resflex.mobile.evaluate import eval_loader, first_images
from resflex.mobile.layers import DEFAULT_BN_MODE, BNMode, ScaleCode, check_resolutions, parse_enum, recalibrate_bn
from resflex.mobile.macs import count_macs, count_params
from resflex.mobile.search import check_configs_for, read_configs

from .backends.base import Exported
from .background import Background
from .qat_ranges import CALIB_FROM, checked_ranges
from .bake import DEFAULT_SIZE_BUDGET, bake, check_size_budget
from .runtimes import Spatial
from resflex.mobile.bundle.io import LUT_FILE, MANIFEST, sha256_of, size_of, staging_dir, write_zip
from .quiet import converting, native_stderr_filtered

# name → "module:Class"; imported only when used, so a missing optional runtime affects only its backend.
BACKENDS = {
    "executorch": "resflex.convert.backends.executorch:ExecuTorchBackend",
    "coreml": "resflex.convert.backends.coreml:CoreMLBackend",
    "tflite": "resflex.convert.backends.tflite:TFLiteBackend",
    "onnx": "resflex.convert.backends.onnx:OnnxBackend",
}
PRECISIONS = ("fp32", "fp16", "int8", "int4")  # int4: Core ML only (weight-only, iOS 18)
FP32_TOLERANCE = 1e-4  # max |artifact − torch| relative to max |torch logits|
INT8_MIN_AGREEMENT, INT8_MAX_DROP = 0.99, 0.01


def load_backend(name: str, **options):
    """An exporter (`resflex.convert.backends.base.Exporter`) by backend name, built with `options`."""
    return load_backend_class(name)(**options)


def load_backend_class(name: str) -> type:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        raise RuntimeError(f"backend {name!r} needs a package that is not installed ({e.name or e}); install the "
                           "converters with: pip install -e '.[convert]'") from None


def precisions_for(backend, requested) -> list[str]:
    """The requested precisions a backend supports; "fp32" means fp16 on a backend without fp32 (Core ML)."""
    out = []
    for p in requested:
        p = p if p in backend.precisions or p != "fp32" else "fp16"
        if p in backend.precisions and p not in out:
            out.append(p)
    return out


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    checkpoint: str
    out: str
    backends: tuple[str, ...] = tuple(BACKENDS)
    precisions: tuple[str, ...] = ("fp32", "int8")
    resolutions: tuple[int, ...] | None = None  # default: the checkpoint's training resolutions
    configs: str | None = None  # resizable only: a `resflex search` configs.json (or its folder) to convert
    bn_mode: str | None = None  # rule for resolutions the checkpoint was not trained at
    scale_code: str = "ideal"
    data: str = "synthetic"  # calibration (train split) and parity/accuracy (val split) data
    calib_samples: int = 256
    # int8 activation calibration: None (each backend's default), a method every backend offers ("minmax"), or
    # per backend "executorch=histogram,onnx=percentile" (others keep their default); `calib_methods` lists them
    calib_method: str | None = None
    # int8 activation ranges (`qat_ranges.CALIB_FROM`): "qat" = those `train --qat` learned (ExecuTorch, ONNX; the
    # other backends cannot take ranges and calibrate on images), "images", "auto" = qat when the checkpoint has them
    calib_from: str = "auto"
    sharing: str = "size"  # "size": weights stored once; "speed": BN folded per resolution; "auto": per layer
    size_budget: float | None = None  # "auto" only: fp32 artifact size ÷ its floor (None: `DEFAULT_SIZE_BUDGET`)
    val_samples: int = 500
    seed: int = 0
    keep_going: bool = False
    zip: bool = False
    overwrite: bool = False
    progress: bool = True
    verbose: bool = False  # show the converters' own warnings, logs and progress bars (filtered by default)

    def __post_init__(self):
        for b in self.backends:
            if b not in BACKENDS:
                raise ValueError(f"unknown backend {b!r}; expected one of: {', '.join(BACKENDS)}")
        for p in self.precisions:
            if p not in PRECISIONS:
                raise ValueError(f"unknown precision {p!r}; expected one of: {', '.join(PRECISIONS)}")
        if "int4" in self.precisions and "coreml" not in self.backends:
            raise ValueError("precision int4: only the coreml backend stores 4-bit weights (ExecuTorch's XNNPACK, "
                             "LiteRT and ONNX Runtime run 4-bit weights in linear/matmul layers only, not in "
                             "convolutions); add coreml to --backends")
        if self.bn_mode is not None:
            parse_enum(BNMode, self.bn_mode, "BN mode")
        parse_enum(ScaleCode, self.scale_code, "scale code")
        parse_enum(schema.Sharing, self.sharing, "--sharing")
        if self.calib_from not in CALIB_FROM:
            raise ValueError(f"--calib-from {self.calib_from!r}; expected one of: {', '.join(CALIB_FROM)}")
        if self.size_budget is not None:
            if self.sharing != schema.Sharing.AUTO.value:
                raise ValueError(f"--size-budget {self.size_budget!r} applies to --sharing auto only (got --sharing "
                                 f"{self.sharing})")
            check_size_budget(self.size_budget)
        if self.resolutions is not None:
            check_resolutions(self.resolutions)


@dataclasses.dataclass
class ConvertResult:
    bundle: Path
    manifest: schema.Manifest
    lut: schema.LUT
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.manifest.failures


def split_images(model, data, split, resolution, samples, seed, class_names):
    """`samples` images of a split at `resolution`, normalised NCHW, with their labels."""
    loader = eval_loader(model, data, split, resolution, 64, seed=seed, length=samples, class_names=class_names)
    xs, ys = zip(*first_images(loader, samples))
    return model.preprocessing.normalize(torch.cat(xs)), torch.cat(ys)


def _scales(entry) -> list[float] | None:
    return list(entry.stage_scales) or None


class _ReferenceLogits:
    """The torch modules' logits on parity batches, for one `convert` call: every backend and precision of a BN style
    shares the baked modules, so each module's logits on a batch are computed once per call, not once per artifact.
    One per call, so conversions never share it; an entry goes with its module (weak keys: Core ML's int4 copies)."""

    def __init__(self):
        # module → {id(batch): (batch, logits)}
        self._by_module: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        per_module = self._by_module.setdefault(module, {})
        if id(x) not in per_module:  # the batch is kept beside its logits, so its id is not reused meanwhile
            with torch.no_grad():
                per_module[id(x)] = (x, module(x).numpy())
        return per_module[id(x)][1]


def _parity(runner, entry, module, x: torch.Tensor, y: torch.Tensor, precision: str,
            evaluator: schema.Evaluator, references: _ReferenceLogits | None = None) -> schema.Parity:
    """An entry's parity row; `references`: the conversion's cache of torch logits (None: computed here)."""
    ref = (_ReferenceLogits() if references is None else references)(module, x)
    out = runner.run(entry, x.numpy())  # the runtime runs the batch one image at a time, as exported
    err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12))
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    acc_art, acc_ref = float((out.argmax(1) == y.numpy()).mean()), float((ref.argmax(1) == y.numpy()).mean())
    slack = 1e-9  # a drop of exactly 1 pt (1 image in 100) is 0.78 - 0.77 = 0.010000000000000009 in floats
    passed = err <= FP32_TOLERANCE if precision == "fp32" else (
        agree >= INT8_MIN_AGREEMENT - slack and acc_ref - acc_art <= INT8_MAX_DROP + slack)
    return schema.Parity(entry.resolution, len(x), err, agree, acc_art, acc_ref, passed, _scales(entry), evaluator)


def _float64_hint(baked, val, bad) -> str:
    """For fp32 parity failures: how far the torch model itself is from a float64 run of it at the worst entry — a
    gap near the artifact's error means the model is ill-conditioned, not the export wrong."""
    worst = max(bad, key=lambda p: p.max_rel_error)
    module = next((m for s, m in baked.items() if s.resolution == worst.resolution), None)
    if module is None:
        return ""
    x = val[worst.resolution][0]
    with torch.no_grad():
        ref = copy.deepcopy(module).double()(x.double())
        gap = float((module(x).double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    return (f"; at {worst.resolution}px the torch model itself is {gap:.2e} from its float64 run"
            + (" — about the artifact's error, so the model is ill-conditioned in float32 rather than the export wrong"
               if gap * 10 >= worst.max_rel_error else ""))


def convert(config: ConvertConfig) -> ConvertResult:
    """Convert a checkpoint into a bundle directory at `config.out` (atomically). Third-party warnings, logs and
    progress bars are filtered unless `config.verbose` (`resflex.convert.quiet`)."""
    with converting(config.verbose):
        return _convert(config)


def _convert(config: ConvertConfig) -> ConvertResult:
    t_start = time.perf_counter()
    model, payload = load_checkpoint(config.checkpoint)
    spatials, bn_mode = _serving(model, config)  # what each entry serves, largest first
    resolutions = tuple(sorted({s.resolution for s in spatials}, reverse=True))
    backends = load_backends(config, _act_ranges(config, payload, resolutions))  # fail early on a missing tool
    class_names = payload["class_names"]
    say = (lambda msg: tqdm.write(msg)) if config.progress else (lambda msg: None)

    say(f"preparing calibration ({config.calib_samples}) and validation ({config.val_samples}) images")
    calib, calib_used = _calibration_images(model, config, spatials, class_names)
    unseen_bn = _unseen_bn(model, config, spatials, bn_mode, calib_used, payload)
    val = {r: split_images(model, config.data, "val", r, config.val_samples, config.seed, class_names) for r in resolutions}

    @functools.cache
    def baked_for(style: str) -> dict[Spatial, torch.nn.Module]:
        """Baked modules per BN style, made once and shared by every backend and precision that use the style."""
        return {s: bake(_recalibrated(model, s, bn_mode, calib), s.resolution, bn_mode, config.scale_code, style,
                        s.stage_scales or None) for s in spatials}

    macs = {s: count_macs(baked_for("fold")[s], torch.zeros(1, 3, s.resolution, s.resolution)) for s in spatials}
    params = count_params(baked_for("fold")[spatials[0]])
    artifacts, failures, points = [], [], []
    references = _ReferenceLogits()  # this conversion's torch logits per baked module and parity batch
    exports = [(be, p) for be in backends for p in precisions_for(be, config.precisions)]

    with staging_dir(Path(config.out), config.overwrite, "resflex convert") as stage, ExitStack() as exits:
        background = Background()
        background.start(exports, baked_for, calib, stage, config.verbose, exits, say)
        exports.sort(key=lambda export: (export[0].name, export[1]) in background)  # this process's own first
        bar = tqdm(exports, desc="convert", unit="artifact", disable=not config.progress)
        for be, precision in bar:
            bar.set_postfix_str(f"{be.name} {precision}")
            away = (be.name, precision) in background
            try:
                baked = baked_for(be.bn_style)
                with native_stderr_filtered():
                    exported, seconds = (background.exported(be.name, precision, time.perf_counter()) if away
                                         else _export_here(be, baked, precision, calib, stage / be.name))
                    checking = time.perf_counter(), time.process_time()
                    infos = [_artifact_info(be, ex, stage, baked, val, precision, seconds, references)
                             for ex in (exported, *exported.companions)]  # companions: TFLite int8's CPU-only one
                    checked = time.perf_counter() - checking[0], time.process_time() - checking[1]
                infos = [dataclasses.replace(info, calibration=_calibration(be, precision, calib_used, exported),
                                             sharing=schema.Sharing(config.sharing),
                                             folded_layers=None if exported.folded_layers is None
                                             else list(exported.folded_layers)) for info in infos]
            except Exception as e:  # one backend failing must not lose the others
                failures.append(schema.Failure(be.name, precision, f"{type(e).__name__}: {e}"))
                say(f"FAILED {be.name} {precision}: {e}\n{traceback.format_exc(limit=3)}")
                continue
            for info in infos:
                artifacts.append(info)
                failures += _parity_failures(info, baked, val)
                points += _operating_points(info, macs, params, config, val)
                say(_summary(info, seconds, away) + f"; checked in {checked[0]:.1f} s ({checked[1]:.1f} s CPU)")
        bar.close()
        manifest = _manifest(model, config, resolutions, class_names, artifacts, failures, unseen_bn)
        table = schema.LUT(points)
        schema.write_json(manifest, stage / MANIFEST)
        schema.write_json(table, stage / LUT_FILE)
    bundle = Path(config.out)
    if config.zip:
        write_zip(bundle, bundle.with_suffix(".zip"))
    seconds = time.perf_counter() - t_start
    say(f"bundle written to {bundle} in {seconds:.1f} s" + (f" with {len(failures)} failure(s)" if failures else ""))
    return ConvertResult(bundle, manifest, table, seconds)


def load_backends(config: ConvertConfig, act_ranges=None) -> list:
    """The exporters of `config.backends`, each built with its int8 calibration method and `config.sharing` (and
    `config.size_budget` where the backend plans its fp32 sharing: has a `size_budget`)."""
    classes = [load_backend_class(name) for name in config.backends]
    methods = calib_methods(config.calib_method, classes)
    budget = DEFAULT_SIZE_BUDGET if config.size_budget is None else config.size_budget
    return [cls(calib_method=methods[cls], sharing=config.sharing,
                **({"size_budget": budget} if hasattr(cls, "size_budget") else {}),
                **({"act_ranges": act_ranges} if act_ranges and getattr(cls, "takes_act_ranges", False) else {}))
            for cls in classes]


def _act_ranges(config: ConvertConfig, payload: dict, resolutions) -> dict | None:
    """QAT's activation ranges per resolution for the int8 quantizers (`config.calib_from`), or None (images)."""
    if config.calib_from == "images" or "int8" not in config.precisions:
        return None
    ranges = qat_ranges(payload, config.checkpoint)  # a malformed, NaN or inverted range: CheckpointError
    if config.calib_from == "qat":
        others = [b for b in config.backends if not getattr(load_backend_class(b), "takes_act_ranges", False)]
        if others:
            warnings.warn(f"--calib-from qat: {', '.join(others)} take no activation ranges: TFLite int8 is "
                          "calibrated on the images (the TF converter reads ranges from a representative dataset "
                          "only), Core ML int8 quantizes weights only (W8A8: calibrated on the images); the manifest "
                          "records calibration.source per artifact", stacklevel=4)
        return checked_ranges(ranges, resolutions, config.checkpoint)
    return ranges if ranges and all(ranges.get(r) for r in resolutions) else None


def _serving(model, config: ConvertConfig) -> tuple[list[Spatial], str]:
    """What the entries serve (largest first) and the BN rule for resolutions the checkpoint was not trained at."""
    spatials = _spatials(model, config)
    trained = model.config.resolutions
    unseen = sorted({s.resolution for s in spatials if s.resolution not in trained}, reverse=True)
    if unseen and config.bn_mode is None:
        raise ValueError(f"resolutions {unseen} are not in the checkpoint (trained at {list(trained)}); pass --bn "
                         f"{'|'.join(m.value for m in BNMode)} to serve them")
    return spatials, config.bn_mode or DEFAULT_BN_MODE.value


def _unseen_bn(model, config: ConvertConfig, spatials, bn_mode: str, images: int,
               payload: dict) -> schema.UnseenBN | None:
    """The manifest's record of the BN rule for untrained resolutions (None: all trained). `--bn recalibrate` needs
    at least 2 calibration images per resolution (a variance of one image is not a statistic); `auto` records the
    images `train` recalibrated on when the checkpoint has statistics for one of them."""
    unseen = sorted({s.resolution for s in spatials if s.resolution not in model.config.resolutions}, reverse=True)
    if not unseen:
        return None
    if bn_mode == BNMode.AUTO.value:
        table = payload.get("bn_calibration") or {}
        stored = any(r in table.get("statistics", {}) for r in unseen)
        return schema.UnseenBN(bn_mode, unseen, table["images"] if stored else None)
    if bn_mode != BNMode.RECALIBRATE.value:
        return schema.UnseenBN(bn_mode, unseen)
    if images < 2:
        raise ValueError(f"--bn recalibrate: --calib-data {config.data!r} gave {images} training image(s) at "
                         f"{unseen[0]} px; expected at least 2 (raise --calib-samples, or give more images in train/)")
    return schema.UnseenBN(bn_mode, unseen, images)


def _recalibrated(model, spatial: Spatial, bn_mode: str, calib):
    """`model`, its BN statistics at an untrained `spatial` recomputed on that entry's calibration images first
    when `bn_mode` is recalibrate (per entry: a resizable configuration changes what its BNs see)."""
    if bn_mode == BNMode.RECALIBRATE.value and spatial.resolution not in model.config.resolutions:
        model.set_config(spatial.resolution, spatial.stage_scales or None)
        recalibrate_bn(model, calib[spatial].split(64), spatial.resolution)
    return model


def _calibration_images(model, config: ConvertConfig, spatials, class_names) -> tuple[dict, int]:
    """The backends' calibration batches (one per entry, shared by the entries of a resolution) and the number of
    images each holds (warned about when fewer than asked and int8 is converted)."""
    by_resolution = {r: split_images(model, config.data, "train", r, config.calib_samples, config.seed, class_names)[0]
                     for r in sorted({s.resolution for s in spatials}, reverse=True)}
    used = min(len(x) for x in by_resolution.values())
    if used < config.calib_samples and "int8" in config.precisions:
        warnings.warn(f"calibration set {config.data!r} has {used} images, fewer than the {config.calib_samples} "
                      f"asked (--calib-samples); int8 is calibrated on {used} per resolution", stacklevel=3)  # at `convert`
    return {s: by_resolution[s.resolution] for s in spatials}, used


def _export_here(be, baked, precision: str, calib, out_dir: Path) -> tuple[Exported, float]:
    t0 = time.perf_counter()
    exported = be.export(baked, precision, calib, out_dir)
    return exported, time.perf_counter() - t0


def _parity_failures(info: schema.ArtifactInfo, baked, val) -> list[schema.Failure]:
    """One failure naming every entry whose parity is below target (none when all pass)."""
    bad = [p for p in info.parity if not p.passed]
    if not bad:
        return []
    precision = info.precision.value
    return [schema.Failure(info.backend.value, precision, "parity below target at " + ", ".join(
        f"{p.resolution}px{_tag(p)} (rel. error {p.max_rel_error:.2e}, agreement {p.top1_agreement:.3f}, "
        f"top-1 {p.top1_artifact:.3f} vs {p.top1_torch:.3f})" for p in bad)
        + (_float64_hint(baked, val, bad) if precision == "fp32" else ""))]


def _summary(info: schema.ArtifactInfo, seconds: float, away: bool) -> str:
    """One progress line: size, entries, conversion time and the parity check of an artifact."""
    bad = [p for p in info.parity if not p.passed]
    worst = min(info.parity, key=lambda p: (p.passed, -p.max_rel_error), default=None)
    check = ("not run on host" if not info.parity else
             ("" if info.runs_on_host else "not run on host, MIL reference evaluator: ")
             + f"parity {'ok' if not bad else 'BELOW TARGET'} at {len(info.parity)} entries"
             + (f" (worst rel. error {worst.max_rel_error:.1e}, agreement {worst.top1_agreement:.3f})"
                if worst else ""))
    only = f" on {', '.join(info.compute_units)} only" if info.compute_units else ""
    return (f"{info.backend.value} {info.precision.value}{only}: {info.bytes / 1e6:.2f} MB, "
            f"{len(info.entries)} entries, "
            f"converted in {seconds:.1f} s{' in a separate process' if away else ''}, {check}")


def _manifest(model, config: ConvertConfig, resolutions, class_names, artifacts, failures,
              unseen_bn: schema.UnseenBN | None) -> schema.Manifest:
    pre = model.preprocessing
    return schema.Manifest(
        model=schema.ModelInfo(model.config.arch, model.config.method.value, model.config.width,
                               model.config.num_classes, list(model.config.resolutions), list(class_names),
                               sha256_of(Path(config.checkpoint))),
        resolutions=list(resolutions),
        inputs=[schema.InputSpec(r, pre.resize_size(r), r, list(pre.mean), list(pre.std)) for r in resolutions],
        artifacts=artifacts, failures=failures,
        created_with={"resflex": __version__, "torch": torch.__version__, "python": platform.python_version()},
        unseen_bn=unseen_bn,
    )


def _artifact_info(be, exported: Exported, stage: Path, baked, val, precision, seconds,
                   references: _ReferenceLogits) -> schema.ArtifactInfo:
    folder = stage / be.name
    main = folder / exported.files[0]
    files = [folder / f for f in exported.files]
    parity = []
    runner = be.runner(exported, folder) if exported.runs_on_host else None
    on_host = runner is not None
    evaluator = schema.Evaluator.RUNTIME
    if runner is None and hasattr(be, "reference_runner"):  # Core ML off macOS: its MIL reference evaluator
        runner, evaluator = be.reference_runner(exported, folder), schema.Evaluator.MIL_REFERENCE
    if runner is not None:
        reference = getattr(be, "parity_reference", lambda module, _: module)
        parity = [_parity(runner, e, reference(baked[e.spatial], precision), *val[e.resolution], precision, evaluator,
                          references) for e in exported.entries]
    rel = lambda p: p.relative_to(stage).as_posix()  # noqa: E731
    return schema.ArtifactInfo(
        backend=schema.Backend(be.name), precision=schema.Precision(precision), file=rel(main),
        sha256=sha256_of(main), bytes=sum(size_of(f) for f in files), layout=schema.Layout(exported.layout),
        entries=[schema.EntryInfo(e.resolution, e.name, e.input_name, e.output_name, list(e.input_shape), _scales(e))
                 for e in exported.entries],
        runs_on_host=on_host, parity=parity,
        extra_files=[schema.FileRef(rel(f), sha256_of(f), size_of(f)) for f in files[1:]],
        notes=exported.notes, convert_seconds=round(seconds, 2),
        compute_units=None if exported.compute_units is None else list(exported.compute_units))


def calib_methods(spec: str | None, backends) -> dict:
    """{backend object: its int8 calibration method} from `ConvertConfig.calib_method` (None → each backend's
    default, the first of its `calib_methods`). Unknown methods or backends raise ValueError listing the allowed."""
    chosen = {be: be.calib_methods[0] for be in backends}
    if spec is None or not spec.strip():
        return chosen
    by_name = {be.name: be for be in backends}
    offered = "; ".join(f"{be.name}: {', '.join(be.calib_methods)}" for be in backends)
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if len(items) == 1 and "=" not in items[0]:  # one method for every backend
        missing = [be.name for be in backends if items[0] not in be.calib_methods]
        if missing:
            raise ValueError(f"--calib-method {items[0]!r} is not offered by {', '.join(missing)} (offered: "
                             f"{offered}); name it per backend, e.g. --calib-method "
                             f"{next(iter(by_name))}={backends[0].calib_methods[0]}")
        return {be: items[0] for be in backends}
    for item in items:
        name, sep, method = (x.strip() for x in item.partition("="))
        if not sep:
            raise ValueError(f"--calib-method {spec!r}: {item!r} is not BACKEND=METHOD (give one method for every "
                             "backend, or BACKEND=METHOD pairs separated by commas)")
        if name not in by_name:
            raise ValueError(f"--calib-method {spec!r}: backend {name!r} is not being converted (converting: "
                             f"{', '.join(by_name)})")
        if method not in by_name[name].calib_methods:
            raise ValueError(f"--calib-method {spec!r}: {name} offers {', '.join(by_name[name].calib_methods)}, "
                             f"not {method!r}")
        chosen[by_name[name]] = method
    return chosen


def _calibration(be, precision: str, samples: int, exported: Exported | None = None) -> schema.Calibration | None:
    """The manifest's record of an int8 artifact's activation calibration (None: float, or weight-only int8)."""
    if precision != "int8" or not getattr(be, "calibrates_activations", True):
        return None
    used = min(samples, getattr(be, "calib_samples", samples))  # Core ML W8A8 calibrates on its first calib_samples
    use = getattr(exported, "range_use", None)
    return schema.Calibration(getattr(be, "calib_method", be.calib_methods[0]), used,
                              **({} if use is None else {"source": "qat", "points_from_qat": use.from_qat,
                                                         "points_from_images": use.from_images}))


def _operating_points(info: schema.ArtifactInfo, macs, params, config, val) -> list[schema.OperatingPoint]:
    parity = {(p.resolution, *(p.stage_scales or ())): p for p in info.parity}
    points = []
    for e in info.entries:
        spatial = Spatial(e.resolution, tuple(e.stage_scales or ()))
        p = parity.get((e.resolution, *spatial.stage_scales))
        for unit in info.compute_units or schema.COMPUTE_UNITS[info.backend]:
            points.append(schema.OperatingPoint(
                resolution=e.resolution, backend=info.backend, precision=info.precision, compute_unit=unit,
                artifact=info.file, entry=e.name, macs=macs[spatial], params=params, artifact_bytes=info.bytes,
                artifact_resolutions=len(info.entries),
                top1=p.top1_artifact if p else None,
                top1_data=schema.DataIdentity(config.data, "val", p.samples) if p else None,
                stage_scales=e.stage_scales))
    return points


def _tag(p: schema.Parity) -> str:
    return f" stage scales {','.join(f'{s:g}' for s in p.stage_scales)}" if p.stage_scales else ""


def _spatials(model, config: ConvertConfig) -> list[Spatial]:
    """What the bundle's entries serve, largest first: resolutions; for a resizable checkpoint the configurations of
    `config.configs`, else its full configuration at each resolution."""
    if config.configs is not None:
        if not model.num_stages:
            raise ValueError(f"--configs {config.configs}: method {model.config.method.value!r} has no stage scales "
                             "(only a checkpoint trained with --method resizable has configurations)")
        if config.resolutions is not None:
            raise ValueError(f"--resolutions {list(config.resolutions)} with --configs: the configurations name their "
                             "resolutions; give one or the other")
        doc = read_configs(config.configs)
        pairs = check_configs_for(doc, model, sha256_of(Path(config.checkpoint)), str(config.configs))
        return sorted((Spatial(r, s) for r, s in pairs), reverse=True)
    resolutions = tuple(config.resolutions or model.config.resolutions)
    return sorted((Spatial(r, model.full_config) for r in resolutions), reverse=True)
