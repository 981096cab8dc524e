"""Evaluation: top-1 per test resolution, and the train-resolution × test-resolution matrix (the papers'
Table 1 layout: one row per model, one column per test resolution)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint
from .data import EvalTransform, SyntheticImages, build_dataset, check_class_names, make_loader
from .layers import DEFAULT_BN_MODE, BNMode, ScaleCode, calibration_table, check_resolutions, parse_enum, \
    recalibrate_bn, unseen_between
from .models import MultiResolutionNet


def eval_loader(model: MultiResolutionNet, data: str, split: str, resolution: int, batch_size: int, *,
                workers: int = 0, seed: int = 0, length: int | None = None,
                class_names: Sequence[str] | None = None):
    """Eval-transformed images of a split at `resolution` (shuffled for "train", where they calibrate), checked
    against the model's classes; every rank reads all of it."""
    # the ratio that makes EvalTransform resize to exactly the model's `Preprocessing.resize_size` (its rounding)
    transform = EvalTransform(resolution, resolution / model.preprocessing.resize_size(resolution))
    dataset = build_dataset(data, split, transform, num_classes=model.config.num_classes, seed=seed, length=length)
    if class_names is not None:
        check_class_names(dataset.classes, class_names, f"{data}/{split}")
    return make_loader(dataset, batch_size, shuffle=split == "train", workers=workers, seed=seed, distributed=False)


def first_images(loader, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches from `loader` until `count` images (an ImageFolder ignores a length cap)."""
    left = count
    for images, target, _ in loader:
        if left <= 0:
            return
        yield images[:left], target[:left]
        left -= len(target)


@torch.no_grad()
def evaluate(
    model: MultiResolutionNet,
    data: str,
    resolutions: Sequence[int],
    bn_mode: BNMode | str = DEFAULT_BN_MODE,
    scale_code: ScaleCode | str = ScaleCode.IDEAL,
    *,
    batch_size: int = 128,
    workers: int = 0,
    seed: int = 0,
    length: int | None = None,
    class_names: Sequence[str] | None = None,
    calib_samples: int = 1024,
) -> dict[int, float]:
    """Top-1 accuracy of `model` on the validation split of `data` at each resolution.

    Resolutions the model was not trained at use `bn_mode`; with "recalibrate", BN statistics are first
    recomputed on up to `calib_samples` training images at that resolution.
    """
    bn_mode = parse_enum(BNMode, bn_mode, "BN mode")
    resolutions = list(dict.fromkeys(resolutions))  # a repeated resolution is measured (and shown) once
    if length is not None and length < 1:
        raise ValueError(f"val samples: expected at least 1, got {length}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results = {}
    for r in resolutions:
        if bn_mode is BNMode.RECALIBRATE and r not in model.config.resolutions:
            _recalibrate_on_training_images(model, data, r, calib_samples, batch_size, workers, seed, class_names)
        loader = eval_loader(model, data, "val", r, batch_size, workers=workers, seed=seed, length=length,
                             class_names=class_names)
        correct = total = 0
        with model.at_resolution(r, bn_mode, scale_code):
            for images, target, _ in loader:
                if len(target) == 0:
                    continue
                logits = model(model.preprocessing.normalize(images.to(device)))
                correct += (logits.argmax(1).cpu() == target).sum().item()
                total += len(target)
        if total == 0:  # 0 % of nothing is not an accuracy
            raise ValueError(f"{data}: no readable validation images at {r} px (val split empty, --val-samples 0 or "
                             "every image unreadable); nothing to evaluate")
        results[r] = correct / total
    model.train(was_training)
    return results


def _recalibrate_on_training_images(model, data: str, resolution: int, images: int, batch_size: int, workers: int,
                                    seed: int, class_names) -> int:
    """`recalibrate_bn` at `resolution` on up to `images` eval-transformed training images; returns how many."""
    device = next(model.parameters()).device
    loader = eval_loader(model, data, "train", resolution, batch_size, workers=workers, seed=seed, length=images,
                         class_names=class_names)
    return recalibrate_bn(model, (model.preprocessing.normalize(x.to(device))
                                  for x, _ in first_images(loader, images)), resolution)


@torch.no_grad()
def calibrate_unseen(model: MultiResolutionNet, data: str, images: int, *, batch_size: int = 128, workers: int = 0,
                     seed: int = 0, class_names: Sequence[str] | None = None, progress: bool = False) -> dict | None:
    """BN statistics recalibrated on up to `images` training images (eval crops) at each untrained resolution
    between the smallest and largest training one (`unseen_between`), as the checkpoint's `calibration_table` —
    what the default BN mode `auto` serves there — or None (nothing to calibrate, or a resizable model: its stage
    factors change what each BN sees)."""
    unseen = unseen_between(model.config.resolutions)
    if images < 2 or not unseen or getattr(model, "num_stages", 0):
        return None
    used = 0
    for r in tqdm(unseen, desc="BN statistics at untrained resolutions", unit="res", disable=not progress,
                  leave=False):
        used = _recalibrate_on_training_images(model, data, r, images, batch_size, workers, seed, class_names)
    model.set_resolution(max(model.config.resolutions))
    return calibration_table(model, used)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """`resflex eval`: top-1 of one or more checkpoints at each test resolution (one row per checkpoint)."""

    checkpoints: tuple[str, ...]
    data: str = "synthetic"
    resolutions: tuple[int, ...] | None = None  # default: every checkpoint's training resolutions
    bn_mode: str = DEFAULT_BN_MODE.value  # rule for resolutions a checkpoint was not trained at
    scale_code: str = ScaleCode.IDEAL.value  # SAN at unseen resolutions
    stage_scales: tuple[float, ...] | None = None  # resizable: the configuration to evaluate (default: full)
    batch_size: int = 128
    workers: int = 2
    val_samples: int | None = None  # synthetic: images generated; fashion-mnist: the first N (an ImageFolder: all)
    calib_samples: int = 1024  # training images for bn_mode "recalibrate"
    seed: int = 0  # synthetic data seed (the training run's)

    def __post_init__(self):
        parse_enum(BNMode, self.bn_mode, "BN mode")
        parse_enum(ScaleCode, self.scale_code, "scale code")
        if self.resolutions:
            check_resolutions(self.resolutions)  # positive, no duplicates (a repeated column would show nothing new)
        repeated = sorted({p for p in self.checkpoints if self.checkpoints.count(p) > 1})
        if repeated:
            raise ValueError(f"checkpoint(s) given twice: {', '.join(repeated)}")


@dataclasses.dataclass(frozen=True)
class EvalResult:
    rows: dict[str, dict[int, float]]  # row name → resolution → top-1 fraction
    resolutions: tuple[int, ...]  # the columns
    trained: dict[str, tuple[int, ...]]  # row name → its training resolutions

    def format(self) -> str:
        return format_matrix(self.rows, self.resolutions, self.trained)


def evaluate_checkpoints(config: EvalConfig) -> EvalResult:
    """Load every checkpoint, check the data suits it, and evaluate it at every resolution: one row each, named
    after its run folder and method (the path where two rows would share a name)."""
    models = {path: load_checkpoint(path) for path in config.checkpoints}
    if config.stage_scales is not None:
        for path, (model, _) in models.items():
            try:
                model.set_config(model.resolution, config.stage_scales)
            except ValueError as e:
                raise ValueError(f"--stage-scales for {path}: {e}") from None
    for path, (_, payload) in models.items():
        require_data(payload, config.data, path, "--data", "val/ (and train/, for --bn recalibrate)")
    resolutions = tuple(config.resolutions or sorted({r for m, _ in models.values() for r in m.config.resolutions},
                                                     reverse=True))
    rows, trained = {}, {}
    short = {path: f"{Path(path).parent.name or path} ({model.config.method.value})"
             for path, (model, _) in models.items()}
    for path, (model, payload) in models.items():
        name = short[path] if list(short.values()).count(short[path]) == 1 else \
            f"{path} ({model.config.method.value})"  # two runs of one folder name and method: one row each
        rows[name] = evaluate(model, config.data, resolutions, config.bn_mode, config.scale_code,
                              batch_size=config.batch_size, workers=config.workers, seed=config.seed,
                              length=config.val_samples, class_names=payload["class_names"],
                              calib_samples=config.calib_samples)
        trained[name] = model.config.resolutions
    return EvalResult(rows, resolutions, trained)


def require_data(payload: dict, data: str, path: str, flag: str, what: str) -> None:
    """A checkpoint not trained on the built-in synthetic set needs its own data: say which option to pass."""
    if data != "synthetic":
        return
    names = list(payload["class_names"])
    if 2 <= len(names) <= 10 and names == SyntheticImages("val", len(names), length=0).classes:
        return
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    raise ValueError(f"{path} was not trained on the built-in synthetic data ({len(names)} classes: {shown}); "
                     f"pass {flag} FOLDER, an ImageFolder root whose {what} hold(s) its class folders")


def format_matrix(rows: dict[str, dict[int, float]], resolutions: Sequence[int],
                  trained: dict[str, Sequence[int]] | None = None) -> str:
    """A markdown table: one row per model, one column per test resolution; `*` marks training resolutions."""
    trained = trained or {}
    name_w = max([len("model")] + [len(n) for n in rows])
    head = "| " + "model".ljust(name_w) + " | " + " | ".join(f"{r:>6}" for r in resolutions) + " |"
    rule = "|" + "-" * (name_w + 2) + "|" + "|".join("-" * 8 for _ in resolutions) + "|"
    lines = [head, rule]
    for name, accs in rows.items():
        cells = [f"{100 * accs[r]:5.1f}" + ("*" if r in trained.get(name, ()) else " ") if r in accs else "     - "
                 for r in resolutions]
        lines.append("| " + name.ljust(name_w) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)
