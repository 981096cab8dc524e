"""Evaluation: top-1 per test resolution, and the train-resolution × test-resolution matrix (the papers'
Table 1 layout: one row per model, one column per test resolution)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .data import EvalTransform, build_dataset, check_class_names, make_loader
from .layers import BNMode, ScaleCode, parse_enum, recalibrate_bn
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
    bn_mode: BNMode | str = BNMode.INTERPOLATE,
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
            calib = eval_loader(model, data, "train", r, batch_size, workers=workers, seed=seed, length=calib_samples,
                                class_names=class_names)
            recalibrate_bn(model, (model.preprocessing.normalize(x.to(device))
                                   for x, _ in first_images(calib, calib_samples)), r)
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
