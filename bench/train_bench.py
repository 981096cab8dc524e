"""Benchmark: switchable networks (RS-Net with MRED, SAN with its default loss) vs individually trained
I-Nets (same epochs each), plus the cost of one multi-resolution training step.

    python bench/train_bench.py                    # built-in synthetic data; prints markdown tables
    python bench/train_bench.py --data digits --resolutions 32,28,24,20,16 --test-resolutions 32,30,...,16
    python bench/train_bench.py --data PATH        # any ImageFolder with train/ and val/
    python bench/train_bench.py --seeds 0,1,2 --models rsnet,single   # the claims over seeds (mean, min–max)

`--data digits` writes scikit-learn's real 8×8 handwritten digits, upscaled to 32 px, as an ImageFolder under
runs/data/digits (no download). The recipe (stem stride, crop range) is `resflex train`'s default for the sizes.

Tables:
1. top-1 (%) per test resolution (the papers' Table 1 layout): every I-Net at every test resolution, the
   RS-Net and SAN with BN `nearest`, `upper`, `interpolate`, `auto` and `recalibrate` at the in-between resolutions
   (issue 25 item 4: `--models rsnet --skip-training --test-resolutions` the unseen ones compares the rules).
2. wall time of one multi-resolution step vs the sum of the single-resolution steps (same batch, medians; NHWC as
   `resflex train` runs by default, and the RS-Net step in NCHW for comparison).
3. with several --seeds: top-1 at the training resolutions per seed, their mean and range, and the papers' claims
   on the means (RS-Net ≥ I-Net − 0.5 pt at each training resolution, SAN within 1 pt of RS-Net), each
   difference with its standard error over seeds (paired by seed), and the training cost: one switchable run's
   training wall time ÷ the sum of the I-Net runs' (epoch times from metrics.jsonl, validation excluded). With the
   same --epochs for all (no --epochs-multi) this is the equal-budget table of issue 25:

    python bench/train_bench.py --data fashion-mnist --resolutions 28,24,20,16 --train-samples 5000 \
        --val-samples 2000 --no-flip --seeds 0,1,2 --models rsnet,single --epochs 3 --step-repeats 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from results import recorded  # bench/results.py
from resflex.mobile.checkpoint import load_checkpoint, read_checkpoint
from resflex.cli.main import parse_resolutions
from resflex.mobile.evaluate import evaluate, format_matrix
from resflex.mobile.losses import create_loss
from resflex.mobile.models import create_model
from resflex.mobile.data import write_digits
from resflex.mobile.train import MultiResolutionStep, TrainConfig, resize_batch, train


MODELS = ("rsnet", "rsnet_late", "rsnet_ce", "san", "resizable", "single")  # rsnet: MRED from the first step (the
# paper's loss, --no-distill-after-warmup); rsnet_late: train's default, MRED with its KD term after the warm-up;
# rsnet_ce: CE only (--no-distill)
PAPER, DEFAULT = "RS-Net (MRED)", "RS-Net (MRED, KD after warm-up)"  # row names of rsnet and rsnet_late


def parse_models(text: str) -> tuple[str, ...]:
    """'rsnet,single' → ("rsnet", "single"), with an argparse error naming anything else."""
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)} not among {', '.join(MODELS)}")
    return models


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic", help="synthetic | digits | fashion-mnist | an ImageFolder root")
    p.add_argument("--epochs-multi", type=int, default=None, help="epochs of the switchable networks (default --epochs)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips (e.g. digits)")
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--width", type=float, default=0.35)
    p.add_argument("--resolutions", type=parse_resolutions, default=(64, 56, 48, 40, 32))
    p.add_argument("--test-resolutions", type=parse_resolutions, default=(64, 60, 56, 52, 48, 44, 40, 36, 32))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default: resflex train's (0.02 ÷ losses summed per step)")
    p.add_argument("--train-samples", type=int, default=4000)
    p.add_argument("--val-samples", type=int, default=1000)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--step-repeats", type=int, default=15,
                   help="timed repeats per step kind (medians reported); 0 leaves the step-time table out")
    p.add_argument("--seeds", type=lambda t: tuple(int(x) for x in t.split(",")), default=(0,),
                   help="training seeds (data order, augmentation, synthetic training images, initial weights); "
                        "the full matrix is shown for the first, the claims over all")
    p.add_argument("--models", type=parse_models, default=MODELS,
                   help="which of rsnet (MRED), rsnet_late (MRED, its KD term after the warm-up: train's default), "
                        "rsnet_ce (CE only), san, resizable, single (the I-Nets) to train, comma-separated")
    p.add_argument("--out", default="runs/train_bench")
    p.add_argument("--skip-training", action="store_true",
                   help="reuse finished checkpoints already in --out (an interrupted run is trained again)")
    p.add_argument("--steps-only", action="store_true", help="only the step-time table")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    p.add_argument("--section", default=None,
                   help="RESULTS.md section name (default: train_bench[_DATA][_seeds])")
    return p.parse_args(argv)


def train_all(args, seed: int = 0) -> dict[str, Path]:
    """Train RS-Net, SAN and one I-Net per resolution (those in --models) with identical settings and one seed;
    returns checkpoint paths (seed 0 directly under --out, others under --out/seedN)."""
    # name → (method, resolutions, distill (None: train's default), distill_after_warmup, run folder)
    models, runs = args.models, {}
    if "rsnet" in models:
        runs[PAPER] = ("rsnet", args.resolutions, True, False, "rsnet")
    if "rsnet_late" in models:  # MRED's L_kd (RS-Nets Eq. 10) off during the warm-up
        runs[DEFAULT] = ("rsnet", args.resolutions, True, True, "rsnet_late")
    if "rsnet_ce" in models:  # the same network and recipe, L_cls only (RS-Nets Eq. 2 without Eq. 6 and 10)
        runs["RS-Net (CE only)"] = ("rsnet", args.resolutions, False, False, "rsnet_ce")
    if "san" in models:
        runs["SAN"] = ("san", args.resolutions, None, False, "san")
    if "resizable" in models:  # its full configuration at each input resolution
        runs["Resizable"] = ("resizable", args.resolutions, None, False, "resizable")
    if "single" in models:
        runs.update({f"I-Net {r}": ("single", (r,), None, False, "inet") for r in args.resolutions})
    root = Path(args.out) if seed == 0 else Path(args.out) / f"seed{seed}"
    # The input-size recipe of the switchable networks (from their largest resolution) for every run: an I-Net is
    # the same network (stem stride, crops) trained at one resolution, as in the papers' comparison.
    recipe = TrainConfig(resolutions=args.resolutions)
    paths = {}
    for name, (method, res, distill, after_warmup, folder) in runs.items():
        out = root / folder / "-".join(map(str, res))
        config = TrainConfig(data=args.data, arch=args.arch, method=method, resolutions=res, width=args.width,
                             epochs=args.epochs if method == "single" else (args.epochs_multi or args.epochs),
                             flip=args.flip, stem_stride=recipe.stem_stride, min_crop=recipe.min_crop, distill=distill,
                             distill_after_warmup=after_warmup,
                             batch_size=args.batch_size, lr=args.lr,
                             train_samples=args.train_samples, val_samples=args.val_samples, workers=args.workers,
                             seed=seed, out=str(out), overwrite=True, progress=False, device="cpu")
        if not (args.skip_training and finished(config)):
            t0 = time.perf_counter()
            print(f"training {name} at {list(res)}, seed {seed} ...", flush=True)
            train(config)
            print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
        paths[name] = config.checkpoint_path
    return paths


def finished(config: TrainConfig) -> bool:
    """Whether `config`'s run folder holds a checkpoint of all its epochs (not one of an interrupted run)."""
    if not config.checkpoint_path.is_file():
        return False
    return (read_checkpoint(config.checkpoint_path).get("train_state") or {}).get("epoch") == config.epochs


def accuracy_table(args, paths: dict[str, Path]) -> str:
    rows, trained = {}, {}
    for name, path in paths.items():
        model, payload = load_checkpoint(path)
        unseen = set(args.test_resolutions) - set(model.config.resolutions)
        modes = ("nearest", "upper", "interpolate", "auto", "recalibrate") if unseen and model.config.method.value != "single" \
            else ("nearest",)  # every rule is the trained BN at a training resolution
        for mode in modes:
            row = name if len(modes) == 1 else f"{name}, BN {mode}"
            rows[row] = evaluate(model, args.data, args.test_resolutions, mode, batch_size=256,
                                 workers=args.workers, length=args.val_samples, class_names=payload["class_names"])
            trained[row] = model.config.resolutions
    (Path(args.out) / "accuracy.json").write_text(
        json.dumps({n: {str(r): a for r, a in acc.items()} for n, acc in rows.items()}, indent=2))
    return format_matrix(rows, args.test_resolutions, trained)


def seed_table(args, paths_per_seed: dict[int, dict[str, Path]]) -> str:
    """Top-1 at the training resolutions (nearest BN) per model and seed, the mean and range over seeds, and the
    papers' claims judged on the means: RS-Net ≥ I-Net − 0.5 pt (RS-Nets Table 2), SAN within 1 pt of RS-Net."""
    acc: dict[str, dict[int, list[float]]] = {}  # model → resolution → one top-1 per seed
    walls: dict[str, list[float]] = {}  # model → training wall seconds per seed (I-Nets: the sum of the I-Nets)
    for seed, paths in paths_per_seed.items():
        for name, path in paths.items():
            model, payload = load_checkpoint(path)
            key = "I-Nets" if name.startswith("I-Net") else name
            wall = training_wall(path)
            walls.setdefault(key, [0.0] * len(paths_per_seed))[list(paths_per_seed).index(seed)] += wall
            res = model.config.resolutions
            top1 = evaluate(model, args.data, res, "nearest", batch_size=256, workers=args.workers,
                            length=args.val_samples, class_names=payload["class_names"])
            for r in res:
                acc.setdefault(key, {}).setdefault(r, []).append(100 * top1[r])
    res = args.resolutions
    seeds = ", ".join(map(str, paths_per_seed))
    lines = [f"| model | {' | '.join(f'{r} px' for r in res)} | mean over resolutions |",
             "|---|" + "---|" * (len(res) + 1)]
    for key, per_res in acc.items():
        for i, seed in enumerate(paths_per_seed):
            lines.append(f"| {key}, seed {seed} | " + " | ".join(f"{per_res[r][i]:.1f}" for r in res)
                         + f" | {statistics.fmean(per_res[r][i] for r in res):.1f} |")
        lines.append(f"| **{key}, mean (min–max) over seeds {seeds}** | " + " | ".join(
            f"**{statistics.fmean(per_res[r]):.1f}** ({min(per_res[r]):.1f}–{max(per_res[r]):.1f})" for r in res)
            + f" | **{statistics.fmean(statistics.fmean(per_res[r]) for r in res):.1f}** |")
    mean = {k: {r: statistics.fmean(v[r]) for r in res} for k, v in acc.items()}

    def claim(label, a, b, ok):
        if a not in mean or b not in mean:
            return []
        diffs = [mean[a][r] - mean[b][r] for r in res]
        errors = [standard_error([x - y for x, y in zip(acc[a][r], acc[b][r])]) for r in res]
        overall = [statistics.fmean(per_seed) for per_seed in zip(*(
            [x - y for x, y in zip(acc[a][r], acc[b][r])] for r in res))]  # per seed: mean over resolutions
        return [f"| {label} | " + " | ".join(f"{d:+.1f} ± {e:.1f} {'✓' if ok(d) else '✗'}" for d, e in
                                           zip(diffs, errors))
                + f" | {statistics.fmean(overall):+.1f} ± {standard_error(overall):.1f} |"]  # goal on it: ≥ 0
    lines += claim("RS-Net − I-Net ± s.e. (goal ≥ −0.5 pt)", PAPER, "I-Nets", lambda d: d >= -0.5)
    lines += claim("RS-Net (CE only) − I-Net ± s.e. (goal ≥ −0.5 pt)", "RS-Net (CE only)", "I-Nets",
                   lambda d: d >= -0.5)
    lines += claim(f"RS-Net (CE only) − {PAPER} ± s.e.", "RS-Net (CE only)", PAPER, lambda d: d >= 0)
    lines += claim(f"{DEFAULT} − {PAPER} ± s.e.", DEFAULT, PAPER, lambda d: d >= 0)
    lines += claim(f"{DEFAULT} − I-Net ± s.e. (goal ≥ −0.5 pt)", DEFAULT, "I-Nets", lambda d: d >= -0.5)
    rsnet = DEFAULT if DEFAULT in mean else PAPER  # what SAN and Resizable are compared with
    lines += claim(f"SAN − {rsnet} ± s.e. (goal within 1 pt)", "SAN", rsnet, lambda d: abs(d) <= 1.0)
    lines += claim(f"Resizable − {rsnet} ± s.e. (goal within 1 pt)", "Resizable", rsnet, lambda d: abs(d) <= 1.0)
    if "I-Nets" in walls:
        lines += ["", "| training cost (wall of one run ÷ sum of the I-Net runs, per seed) | mean |", "|---|---:|"]
        for key, w in walls.items():
            if key != "I-Nets":
                ratios = [x / y for x, y in zip(w, walls["I-Nets"])]
                lines.append(f"| {key}: " + ", ".join(f"{r:.2f}" for r in ratios)
                             + f" (I-Nets {statistics.fmean(walls['I-Nets']):.0f} s) | **{statistics.fmean(ratios):.2f}×** |")
    return "\n".join(lines)


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of `values` (0 with fewer than two)."""
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0


def training_wall(checkpoint: Path) -> float:
    """Seconds the run spent training (its epochs' `epoch_time_s` in metrics.jsonl beside the checkpoint)."""
    metrics = checkpoint.with_name("metrics.jsonl")
    return sum(json.loads(line)["epoch_time_s"] for line in metrics.read_text().splitlines() if line.strip())


def sgd_iteration(step, params, images, target, resolution: int):
    """One training iteration as a callable, for timing: `step` (a MultiResolutionStep or ResizableStep) on the
    batch resized to `resolution`, backward, one SGD step over `params`."""
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def run():
        loss, _, _ = step(resize_batch(images, resolution), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def interleaved_times(kinds: dict, repeats: int) -> dict[str, list[float]]:
    """kinds: {name: [callables run back to back]} → {name: wall seconds per repeat}, after one warm-up of each;
    the kinds are interleaved, so machine noise hits every kind alike."""
    times = {k: [] for k in kinds}
    for run in (f for fs in kinds.values() for f in fs):
        run()  # warm-up
    for _ in range(repeats):
        for k, fns in kinds.items():
            t0 = time.perf_counter()
            for fn in fns:
                fn()
            times[k].append(time.perf_counter() - t0)
    return times


def time_steps(args) -> str:
    """Median wall time of one optimizer step: multi-resolution (one model, all resolutions) vs the sum of
    single-resolution I-Net steps on the same batch, measured interleaved in one process."""
    torch.manual_seed(0)
    top = max(args.resolutions)
    images = torch.randn(args.batch_size, 3, top, top)
    target = torch.randint(0, 10, (args.batch_size,))

    def make_step(method, res, distill, channels_last=True):  # resflex train's default memory format: NHWC
        model = create_model(args.arch, method, res, args.width, num_classes=10).train()
        x = images
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        step = MultiResolutionStep(model, create_loss(method, len(res), distill))
        return sgd_iteration(step, step.parameters(), x, target, max(res))

    kinds = {
        "multi-resolution, CE only (RS-Net w/o MRED)": [make_step("rsnet", args.resolutions, False)],
        "multi-resolution, MRED (RS-Net)": [make_step("rsnet", args.resolutions, True)],
        "multi-resolution, MRED (RS-Net), NCHW (--no-channels-last)": [
            make_step("rsnet", args.resolutions, True, channels_last=False)],
        "multi-resolution, scale distill. (SAN)": [make_step("san", args.resolutions, True)],
        "sum of single-resolution steps (I-Nets)": [make_step("single", (r,), False) for r in args.resolutions],
    }
    times = interleaved_times(kinds, args.step_repeats)
    base = statistics.median(times["sum of single-resolution steps (I-Nets)"])
    lines = ["| step | median ms | min ms | ratio vs sum of I-Net steps |", "|---|---:|---:|---:|"]
    for k, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {k} | {1000 * med:.1f} | {1000 * min(ts):.1f} | {med / base:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    name = "train_bench" if args.data == "synthetic" else f"train_bench_{Path(args.data).name}"
    with recorded(args.section or name + ("_seeds" if len(args.seeds) > 1 else ""), args.record):
        return _run(args)


def _run(args) -> None:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.data == "digits":
        args.data = str(write_digits(Path("runs/data/digits"), size=32))
    print(f"# train_bench: {args.arch} width {args.width}, resolutions {list(args.resolutions)}, {args.epochs} epochs, "
          f"data {args.data} ({args.train_samples}/{args.val_samples} images if synthetic), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    if args.step_repeats > 0:
        print("## Step time (batch %d, %d repeats)\n" % (args.batch_size, args.step_repeats))
        print(time_steps(args), "\n", flush=True)
    if args.steps_only:
        return
    paths = {seed: train_all(args, seed) for seed in args.seeds}
    first = args.seeds[0]
    print(f"\n## Top-1 (%) on {args.data} val (at most {args.val_samples} images), seed {first}; "
          "* = training resolution\n")
    print(accuracy_table(args, paths[first]))
    if len(args.seeds) > 1 or ("single" in args.models and len(args.models) > 1):  # one seed: s.e. 0
        budget = "equal budget, " if (args.epochs_multi or args.epochs) == args.epochs else ""
        print(f"\n## Top-1 (%) at the training resolutions over seeds (nearest BN; {budget}{args.epochs} epochs"
              f"{'' if budget else f', switchable {args.epochs_multi}'}), and the papers' claims\n")
        print(seed_table(args, paths))


if __name__ == "__main__":
    main()
