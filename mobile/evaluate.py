"""Evaluation: top-1 per test resolution, and the train-resolution × test-resolution matrix (the papers'
Table 1 layout: one row per model, one column per test resolution)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .data import EvalTransform, build_dataset, make_loader
from .layers import BNMode, ScaleCode, parse_enum, recalibrate_bn
from .models import MultiResolutionNet


def _loader(model, data, split, resolution, batch_size, workers, num_classes, seed, length, class_names):
    transform = EvalTransform(resolution, model.preprocessing.crop_ratio)
    dataset = build_dataset(data, split, transform, num_classes=num_classes, seed=seed, length=length)
    if class_names is not None and list(dataset.classes) != list(class_names):
        raise ValueError(f"{data}/{split}: class folders {list(dataset.classes)} differ from the model's classes "
                         f"{list(class_names)}")
    return make_loader(dataset, batch_size, shuffle=False, workers=workers, distributed=False)  # rank 0 reads it all


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
    num_classes: int = 10,
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
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results = {}
    for r in resolutions:
        if bn_mode is BNMode.RECALIBRATE and r not in model.config.resolutions:
            calib = _loader(model, data, "train", r, batch_size, workers, num_classes, seed, calib_samples, class_names)
            recalibrate_bn(model, (model.preprocessing.normalize(x.to(device)) for x, _, _ in calib), r)
        loader = _loader(model, data, "val", r, batch_size, workers, num_classes, seed, length, class_names)
        correct = total = 0
        with model.at_resolution(r, bn_mode, scale_code):
            for images, target, _ in loader:
                if len(target) == 0:
                    continue
                logits = model(model.preprocessing.normalize(images.to(device)))
                correct += (logits.argmax(1).cpu() == target).sum().item()
                total += len(target)
        results[r] = correct / max(total, 1)
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
