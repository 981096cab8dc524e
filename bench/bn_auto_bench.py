"""BN mode `auto` against `nearest` at the untrained resolutions of trained checkpoints (issue 25 item 4).

Each checkpoint's statistics are recomputed as `train` computes them by default now (`calibrate_unseen` on
`TrainConfig.bn_calibration_images` training images of the run's seed), so checkpoints trained before the default
changed are measured with it. Prints top-1 (%) per checkpoint and the mean over checkpoints (e.g. seeds):

    python bench/bn_auto_bench.py DATA 27,26,25 CKPT [CKPT ...] [--val 1000]
"""

from __future__ import annotations

import argparse
import statistics

from resflex.mobile.checkpoint import load_checkpoint
from resflex.mobile.data import build_dataset
from resflex.mobile.evaluate import calibrate_unseen, evaluate
from resflex.mobile.layers import SwitchableBatchNorm2d
from resflex.mobile.train import TrainConfig

MODES = ("nearest", "auto")


def measure(path: str, data: str, resolutions: list[int], val: int) -> dict[str, list[float]]:
    model, payload = load_checkpoint(path)
    run = payload["train_state"]["train_config"]
    train_set = build_dataset(data, "train", num_classes=run["num_classes"], seed=run["seed"],
                              length=run["train_samples"])
    for m in model.modules():
        if isinstance(m, SwitchableBatchNorm2d):
            m.calibrated.clear()
    images = min(TrainConfig().bn_calibration_images, len(train_set))
    calibrate_unseen(model, data, images, batch_size=128, seed=run["seed"], class_names=payload["class_names"])
    return {mode: [100 * a for a in evaluate(model, data, resolutions, mode, batch_size=256, length=val,
                                             class_names=payload["class_names"]).values()] for mode in MODES}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("resolutions", type=lambda t: [int(x) for x in t.split(",")])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--val", type=int, default=1000, help="validation images per resolution")
    args = p.parse_args(argv)
    head = "| | " + " | ".join(map(str, args.resolutions)) + " | mean |"
    rule = "|---|" + "---:|" * (len(args.resolutions) + 1)
    row = lambda name, xs, f="{:.1f}": f"| {name} | " + " | ".join(f.format(x) for x in xs) \
        + f" | {f.format(statistics.fmean(xs))} |"  # noqa: E731
    runs = []
    for path in args.checkpoints:
        runs.append(measure(path, args.data, args.resolutions, args.val))
        print(f"\n{path}\n\n{head}\n{rule}\n" + "\n".join(row(f"`{m}`", runs[-1][m]) for m in MODES), flush=True)
    mean = {m: [statistics.fmean(col) for col in zip(*(r[m] for r in runs))] for m in MODES}
    worst = [min(a - b for a, b in zip(r["auto"], r["nearest"])) for r in runs]
    print(f"\nMean over the {len(runs)} checkpoints\n\n{head}\n{rule}\n"
          + "\n".join(row(f"`{m}`", mean[m]) for m in MODES) + "\n"
          + row("`auto` − `nearest`", [a - b for a, b in zip(mean["auto"], mean["nearest"])], "{:+.1f}")
          + f"\n\nworst single checkpoint, `auto` − `nearest` at one resolution: {min(worst):+.1f} pt")


if __name__ == "__main__":
    main()
