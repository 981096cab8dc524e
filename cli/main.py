"""The `resflex` command (the top layer: it may import every package). Each subcommand only builds a config and
calls a library function."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import sys
from pathlib import Path

from resflex.mobile.layers import BNMode, ScaleCode


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show every option's default, also for options without a help text."""

    def _format_action(self, action):
        if action.help is None and action.option_strings and action.default not in (None, argparse.SUPPRESS):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


def _comma_list(text: str, kind, items: str, example: str, one: str) -> tuple:
    """'a,b,c' → a tuple of `kind`, with an argparse error naming `example` for anything else."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {items} like {example}, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one {one}")
    return values


def parse_resolutions(text: str) -> tuple[int, ...]:
    """'64,56,48' → (64, 56, 48), with an argparse error for anything else."""
    return _comma_list(text, int, "integers", "224,192,160", "resolution")


def parse_scales(text: str) -> tuple[float, ...]:
    """'1,0.75,0.5' → (1.0, 0.75, 0.5), with an argparse error for anything else (ranges are checked later)."""
    return _comma_list(text, float, "factors", "1,0.75,0.5", "factor")


def _int_at_least(lo: int):
    """An argparse type: an integer ≥ lo."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {lo}, got {value}")
        return value
    parse.__name__ = f"integer ≥ {lo}"
    return parse


def _output_file(path: str | Path, flag: str) -> Path:
    """Check an output file's path before any work: not a folder, and its folder exists."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {path}: the folder {path.parent} does not exist (create it first)")
    return path


def _add_train(sub) -> None:
    from resflex.mobile.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train one network at several input resolutions")
    p.add_argument("--data", default=d.data, help="'synthetic' or an ImageFolder root with train/ and val/")
    p.add_argument("--arch", default=d.arch, help="registered model name (see `resflex models`), or your own network: "
                   "FILE.py:FACTORY or package.module:FACTORY, FACTORY(num_classes=N) returning an nn.Module with "
                   "BatchNorm2d layers (the checkpoint records the spec and the file's sha256; loading refuses a "
                   "changed file unless RESFLEX_ALLOW_CHANGED_ARCH=1)")
    p.add_argument("--method", default=d.method, help="rsnet | san | single | resizable (Resizable Networks: per-stage "
                   "feature scales with scale-aware BN, combinable with several --resolutions)")
    p.add_argument("--resolutions", type=parse_resolutions, default=d.resolutions, help="training resolutions")
    p.add_argument("--width", type=float, default=d.width, help="width multiplier")
    p.add_argument("--meta-hidden", type=int, default=d.meta_hidden, help="SAN meta-learner: 0 linear, 8 or 16 MLP")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=None,
                   help="SGD learning rate; none = 0.02 ÷ the number of losses summed per step (1 for single, one per "
                        "resolution for rsnet/san, resolutions × scales for resizable)")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear LR warm-up, then cosine")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--stem-stride", type=int, default=None, choices=(1, 2),
                   help="stride of the first convolution; none = 1 (small-input stem) when the largest resolution "
                        "is below 64 px, else 2 (the papers' networks)")
    p.add_argument("--min-crop", type=float, default=None,
                   help="RandomResizedCrop's smallest area fraction; none = 0.35 below 64 px, else 0.08 (ImageNet)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=d.flip,
                   help="random horizontal flips (turn off where mirroring changes the class, e.g. text)")
    p.add_argument("--scales", type=parse_scales, default=None,
                   help="resizable only: the trained stage scale factors in (0, 1]; none = 1,0.75,0.5")
    p.add_argument("--switch-at-epoch", type=int, default=None, metavar="N",
                   help="resizable only (Resizable-Aug): from epoch N (0-based) on, train only --target-config")
    p.add_argument("--target-config", default=None, metavar="R:S1,S2,...",
                   help="resizable only: the target network, a training resolution and one trained factor per stage")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None,
                   help="MRED (rsnet), scale distillation (san) or, for resizable, distillation from the full "
                        "configuration; default on for rsnet, off for san (opt-in, as the official code's --kd) and "
                        "resizable (as the paper)")
    p.add_argument("--distill-after-warmup", action=argparse.BooleanOptionalAction, default=None,
                   help="rsnet's MRED: its KD term only from the end of --warmup-epochs on (teachers are near chance "
                        "before); default on for rsnet with MRED (--no-distill-after-warmup: from the first step, as "
                        "the paper): +4.1 pt at 3 epochs on the digits, -0.1 at 12 on the digits and on Fashion-MNIST "
                        "(bench/RESULTS.md, recipe_distill, train_bench_fashion_equal_12ep)")
    p.add_argument("--full-config-each-step", action=argparse.BooleanOptionalAction, default=None,
                   help="resizable only: each step also trains the full configuration at every resolution beside the "
                        "fair set; default on (off, as the paper's Algorithm 1: 45.0 vs 66.5 %% on the digits at 3 "
                        "epochs, 3 seeds; bench/RESULTS.md, resizable_recipe)")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=d.sync_bn, help="GPU DDP only")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=d.amp, help="GPU only")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=d.channels_last,
                   help="NHWC weights and batches (faster training steps on CPU and GPU)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--num-classes", type=int, default=d.num_classes, help="synthetic data only")
    p.add_argument("--train-samples", type=int, default=d.train_samples,
                   help="synthetic: images generated; fashion-mnist: the first N (an ImageFolder uses all)")
    p.add_argument("--val-samples", type=int, default=d.val_samples,
                   help="synthetic: images generated; fashion-mnist: the first N (an ImageFolder uses all)")
    p.add_argument("--max-steps-per-epoch", type=int, default=d.max_steps_per_epoch)
    p.add_argument("--out", default=d.out, help="run folder: checkpoint.pt and metrics.jsonl")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=d.resume,
                   help="continue the run in --out exactly where its last checkpoint left it")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=d.overwrite,
                   help="start over even if --out holds a checkpoint")
    p.add_argument("--workers", type=int, default=d.workers, help="data loader worker processes")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=d.progress)
    p.add_argument("--init", default=d.init, metavar="WEIGHTS",
                   help="start from single-resolution weights: a torchvision ResNet/MobileNetV2 or timm MobileNetV3/"
                        "EfficientNet-Lite0/MobileNetV4/RegNetX state dict, or a resflex "
                        "checkpoint (convs and classifier copied, every private BN starts as the single BN)")
    p.add_argument("--finetune", default=d.finetune, metavar="CKPT",
                   help="resizable only (§3.3): start from this resizable checkpoint and train only --target-config "
                        "for --epochs; the model options (--arch, --method, --resolutions, --width, --scales, "
                        "--num-classes) are taken from CKPT")
    p.add_argument("--qat", action=argparse.BooleanOptionalAction, default=d.qat,
                   help="quantization-aware training: shared weights fake-quantized per channel (int8, symmetric), "
                        "activation ranges per resolution; with --init CKPT it fine-tunes trained float weights "
                        "(default lr a tenth of the usual). The checkpoint stays float; convert quantizes it")
    p.add_argument("--bn-calibration-images", type=_int_at_least(0), default=d.bn_calibration_images, metavar="N",
                   help="after the last epoch, recalibrate BN statistics on N training images at every untrained "
                        "resolution between the training ones (each pixel where they span <= 64 px, else every 8th) "
                        "and keep them in the checkpoint: what --bn auto (the default) serves there; 0: none")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from resflex.mobile.train import TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    if args.finetune:  # the model is the checkpoint's: options left at their defaults take its values
        from resflex.mobile.train import finetune_settings

        defaults = TrainConfig()
        for k, v in finetune_settings(args.finetune).items():
            given = values.get(k)
            if given not in (getattr(defaults, k), None) and given != v:
                raise ValueError(f"--{k.replace('_', '-')} {given!r} differs from the --finetune checkpoint's {v!r}; "
                                 "leave it out (fine-tuning keeps the checkpoint's model)")
            values[k] = v
    config = TrainConfig(**values)
    train(config)
    print(f"checkpoint: {config.checkpoint_path}\nmetrics:    {config.metrics_path}")
    return 0


def _add_import(sub) -> None:
    from resflex.mobile.importer import FORMATS

    p = sub.add_parser("import", help="official RS-Nets / SAN checkpoint → resflex checkpoint (same logits)")
    p.add_argument("checkpoint", help="checkpoint written by yikaiw/RS-Nets (non-quantization) or d-li14/SAN")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt is written there (atomically)")
    p.add_argument("--format", default="auto", help=f"{' | '.join(FORMATS)} (auto: read from the keys)")
    p.add_argument("--sizes", type=parse_resolutions, default=None,
                   help="the training --sizes, in training order, one per BN copy; None: the papers' 224,192,160,128,96")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--classes", default=None, metavar="FILE", help="class names, one per line, in label order")
    names.add_argument("--data", default=None, metavar="FOLDER",
                       help="ImageFolder root whose train/ (or val/) class folders name the classes")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace OUT/checkpoint.pt if it exists")
    p.set_defaults(run=_run_import)


def _run_import(args) -> int:
    from resflex.mobile.importer import ImportConfig, import_checkpoint

    result = import_checkpoint(ImportConfig(checkpoint=args.checkpoint, out=args.out, format=args.format,
                                            sizes=args.sizes, classes=args.classes, data=args.data,
                                            overwrite=args.overwrite))
    cfg, meta = result.model.config, result.metadata
    print(f"imported {meta['repository']} {meta['arch']} → resflex {cfg.arch} ({cfg.method.value}), width {cfg.width:g}, "
          f"{cfg.num_classes} classes, sizes {','.join(map(str, cfg.resolutions))}")
    if "alpha_softmax" in meta:
        print("alpha (softmax): " + " ".join(f"{a:.4f}" for a in meta["alpha_softmax"]))
    if not (args.classes or args.data):
        names = result.class_names
        print(f"classes: numbered {names[0]}…{names[-1]} (no --classes/--data); evaluating on an ImageFolder needs "
              f"class folders named so")
    print(f"preprocessing: RGB in [0, 1] (no mean/std), resize shorter side to int(S/0.875), centre-crop S\n"
          f"checkpoint: {result.path}")
    return 0


def _require_data(payload: dict, data: str, path: str, flag: str, what: str) -> None:
    """`resflex.mobile.evaluate.require_data`, imported only by the commands that read data."""
    from resflex.mobile.evaluate import require_data

    require_data(payload, data, path, flag, what)


def _add_eval(sub) -> None:
    from resflex.mobile.evaluate import EvalConfig

    d = EvalConfig(checkpoints=())
    p = sub.add_parser("eval", help="top-1 per test resolution for one or more checkpoints (Table 1 layout)")
    p.add_argument("checkpoints", nargs="+", help="checkpoint files; one table row each")
    p.add_argument("--data", default=d.data, help="'synthetic' or an ImageFolder root with train/ and val/")
    p.add_argument("--resolutions", type=parse_resolutions, default=d.resolutions,
                   help="test resolutions (default: every checkpoint's training resolutions)")
    p.add_argument("--bn", default=d.bn_mode, help=f"unseen resolutions: {', '.join(m.value for m in BNMode)}")
    p.add_argument("--scale-code", default=d.scale_code,
                   help=f"SAN at unseen resolutions: {', '.join(m.value for m in ScaleCode)}")
    p.add_argument("--stage-scales", type=parse_scales, default=None, metavar="S1,S2,...",
                   help="resizable checkpoints: the spatial configuration to evaluate, one trained factor per stage "
                        "(default: the full configuration)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=d.batch_size)
    p.add_argument("--workers", type=_int_at_least(0), default=d.workers)
    p.add_argument("--val-samples", type=_int_at_least(1), default=d.val_samples,
                   help="synthetic: images generated; fashion-mnist: the first N (an ImageFolder uses all)")
    p.add_argument("--calib-samples", type=_int_at_least(1), default=d.calib_samples,
                   help="training images for --bn recalibrate")
    p.add_argument("--seed", type=int, default=d.seed, help="synthetic data seed (use the training run's)")
    p.add_argument("--json", type=Path, default=None, help="also write the matrix as JSON here")
    p.add_argument("--adapt", default=None, metavar="LEARNER",
                   help="resizable checkpoint: evaluate Resizable-Adapt with this learner.pt (from `resflex adapt`) "
                        "against the best static configuration at the same or lower mean MACs")
    p.add_argument("--max-macs", type=_macs, default=None, metavar="M",
                   help="with --adapt: only configurations of at most M MACs may be chosen (e.g. 2.5M; default: "
                        "the learner's budget)")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    from resflex.mobile.evaluate import EvalConfig, evaluate_checkpoints

    if args.adapt is not None or args.max_macs is not None:
        return _run_eval_adapt(args)
    config = EvalConfig(
        checkpoints=tuple(args.checkpoints), data=args.data, resolutions=args.resolutions, bn_mode=args.bn,
        scale_code=args.scale_code, stage_scales=args.stage_scales, batch_size=args.batch_size, workers=args.workers,
        val_samples=args.val_samples, calib_samples=args.calib_samples, seed=args.seed)
    if args.json:
        _output_file(args.json, "--json")
    result = evaluate_checkpoints(config)
    print(f"top-1 (%) on {config.data} val; * = training resolution; unseen resolutions: BN {config.bn_mode}"
          + (f"; stage scales {','.join(f'{s:g}' for s in config.stage_scales)}" if config.stage_scales else ""))
    print(result.format())
    if args.json:
        args.json.write_text(json.dumps({n: {str(r): a for r, a in acc.items()} for n, acc in result.rows.items()},
                                        indent=2))
    return 0


def _macs(text: str) -> int:
    """An argparse type: a MACs count like 2500000, 2.5M, 300k."""
    from resflex.mobile.adapt import parse_macs

    try:
        return parse_macs(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _run_eval_adapt(args) -> int:
    from resflex.mobile.adapt import evaluate_adapt, format_report, load_learner
    from resflex.mobile.checkpoint import load_checkpoint

    if args.adapt is None:
        raise ValueError("--max-macs is the budget of Resizable-Adapt; give the learner with --adapt LEARNER")
    if len(args.checkpoints) != 1:
        raise ValueError(f"--adapt evaluates one checkpoint (the one its learner was trained on), got "
                         f"{len(args.checkpoints)}")
    if args.stage_scales is not None or args.resolutions is not None:
        raise ValueError("--adapt chooses the configuration per image; leave out --stage-scales and --resolutions")
    if args.json:
        _output_file(args.json, "--json")
    path = args.checkpoints[0]
    model, payload = load_checkpoint(path)
    _require_data(payload, args.data, path, "--data", "val/")
    learner, meta = load_learner(args.adapt, model, path)
    report = evaluate_adapt(model, learner, meta, args.data, args.max_macs, val_samples=args.val_samples,
                            batch_size=args.batch_size, workers=args.workers, seed=args.seed,
                            class_names=payload["class_names"], progress=True)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0


def _add_adapt(sub) -> None:
    from resflex.mobile.adapt import AdaptConfig

    d = AdaptConfig(checkpoint="", out="-", max_macs=1)
    p = sub.add_parser("adapt", help="train a Resizable-Adapt ResizeLearner: per image, the cheapest configuration "
                                     "under a MACs budget")
    p.add_argument("checkpoint", help="a resizable checkpoint (`resflex train --method resizable`)")
    p.add_argument("--max-macs", type=_macs, required=True, metavar="M",
                   help="only configurations of at most M MACs are candidates (e.g. 2.5M, 300k)")
    p.add_argument("--configs", default=None, metavar="SPEC",
                   help="candidates: a configs.json of `resflex search` (or its folder) or R:S1,S2,...;R:S1,...; "
                        "none = every configuration of the checkpoint (at most 256)")
    p.add_argument("--out", required=True, help="folder: learner.pt and adapt.json (the validation report)")
    p.add_argument("--data", default=d.data, help="'synthetic' or an ImageFolder root with train/ and val/")
    p.add_argument("--samples", type=_int_at_least(1), default=d.samples, help="training images the learner learns on")
    p.add_argument("--val-samples", type=_int_at_least(1), default=d.val_samples,
                   help="validation images of the report (default: the whole split)")
    p.add_argument("--epochs", type=_int_at_least(1), default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--hidden", type=_int_at_least(1), default=d.hidden, help="channels of the learner's conv layers")
    p.add_argument("--batch-size", type=_int_at_least(1), default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed, help="sample and synthetic data seed")
    p.add_argument("--workers", type=_int_at_least(0), default=d.workers)
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(run=_run_adapt)


def _run_adapt(args) -> int:
    from resflex.mobile.adapt import AdaptConfig, format_report, train_adapt
    from resflex.mobile.checkpoint import read_checkpoint

    _require_data(read_checkpoint(args.checkpoint), args.data, args.checkpoint, "--data", "train/ and val/")
    result = train_adapt(AdaptConfig(
        checkpoint=args.checkpoint, out=args.out, max_macs=args.max_macs, configs=args.configs, data=args.data,
        samples=args.samples, val_samples=args.val_samples, epochs=args.epochs, lr=args.lr, hidden=args.hidden,
        batch_size=args.batch_size, seed=args.seed, workers=args.workers, overwrite=args.overwrite,
        progress=args.progress))
    print(format_report(result.report))
    print(f"learner: {result.out / 'learner.pt'}\nreport:  {result.out / 'adapt.json'}")
    return 0


def _add_convert(sub) -> None:
    from resflex.mobile.bundle.schema import DEFAULT_SIZE_BUDGET, Sharing

    p = sub.add_parser("convert", help="checkpoint → mobile bundle (ExecuTorch, Core ML, TFLite, ONNX)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="bundle directory (written atomically)")
    p.add_argument("--backends", default="executorch,coreml,tflite,onnx", help="comma-separated")
    p.add_argument("--precision", default="fp32,int8", help="comma-separated: fp32, fp16, int8")
    p.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="default: the checkpoint's training resolutions; others need --bn")
    p.add_argument("--configs", default=None, metavar="FILE|DIR",
                   help="resizable checkpoints: the configs.json of `resflex search` (or its folder); each "
                        "configuration becomes an entry of every artifact (default: the full configuration at each "
                        "training resolution)")
    p.add_argument("--bn", default=None, help=f"rule for untrained resolutions: {', '.join(m.value for m in BNMode)} "
                   "(auto: the statistics `train` recalibrated, kept in the checkpoint, else interpolate; "
                   "recalibrate: BN statistics from the --calib-data training images; recorded in the manifest)")
    p.add_argument("--scale-code", default=ScaleCode.IDEAL.value, help="SAN at untrained resolutions: ideal | proxy")
    p.add_argument("--calib-data", default="synthetic", help="'synthetic' or an ImageFolder root (train/ calibrates,"
                   " val/ measures accuracy on the artifacts)")
    p.add_argument("--calib-samples", type=_int_at_least(1), default=256)
    p.add_argument("--calib-method", default=None, metavar="METHOD|BACKEND=METHOD,...",
                   help="int8 activation calibration: one method for every backend, or per backend (default: each "
                        "backend's own): executorch histogram|minmax|moving_average, onnx "
                        "minmax|percentile, tflite minmax, coreml minmax (W8A8 only)")
    p.add_argument("--calib-from", choices=("auto", "qat", "images"), default="auto",
                   help="int8 activation ranges: qat = the ranges `train --qat` learned, where the quantizer has "
                        "that point (ExecuTorch, ONNX; the other points, and TFLite, calibrate on the images; Core ML "
                        "int8 is weight-only); images = calibrate every point on --calib-data; auto = qat when the "
                        "checkpoint holds QAT ranges, else images. The manifest records which, per artifact")
    p.add_argument("--sharing", choices=[s.value for s in Sharing], default="size",
                   help="size: every artifact stores its weights once (per-resolution BN as an extra per-channel op "
                        "in ExecuTorch and TFLite fp32); speed: those fp32 artifacts fold BN per resolution instead "
                        "(the folded single-resolution speed, about K× the fp32 bytes); auto: per layer, BN folded "
                        "where that saves the most time per byte, within --size-budget. int8, ONNX and Core ML are "
                        "the same in every mode")
    p.add_argument("--size-budget", type=float, default=None, metavar="RATIO",
                   help=f"--sharing auto: fp32 artifact size ÷ its floor (every weight shared), ≥ 1 (default "
                        f"{DEFAULT_SIZE_BUDGET})")
    p.add_argument("--val-samples", type=_int_at_least(1), default=500)
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed (use the training run's)")
    p.add_argument("--keep-going", action=argparse.BooleanOptionalAction, default=False,
                   help="exit 0 even if a backend failed (the failure is recorded in the manifest)")
    p.add_argument("--zip", action=argparse.BooleanOptionalAction, default=False, help="also write OUT.zip")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--verbose", action=argparse.BooleanOptionalAction, default=False,
                   help="show the converters' own warnings, logs and progress bars")
    p.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from resflex.mobile.bundle.io import check_out
    from resflex.convert.pipeline import ConvertConfig, convert
    from resflex.mobile.checkpoint import read_checkpoint

    check_out(Path(args.out))  # '.', a path through a file, … : said now, not after loading the model
    if args.calib_data == "synthetic":
        _require_data(read_checkpoint(args.checkpoint), args.calib_data, args.checkpoint, "--calib-data",
                      "train/ (calibration) and val/ (accuracy)")
    config = ConvertConfig(
        checkpoint=args.checkpoint, out=args.out, backends=tuple(args.backends.split(",")),
        precisions=tuple(args.precision.split(",")), resolutions=args.resolutions, configs=args.configs,
        bn_mode=args.bn,
        scale_code=args.scale_code, data=args.calib_data, calib_samples=args.calib_samples,
        calib_method=args.calib_method, calib_from=args.calib_from, sharing=args.sharing, size_budget=args.size_budget,
        val_samples=args.val_samples, seed=args.seed, keep_going=args.keep_going, zip=args.zip,
        overwrite=args.overwrite, progress=args.progress, verbose=args.verbose)
    result = convert(config)
    for f in result.manifest.failures:
        print(f"failure: {f.backend} {f.precision}: {f.error}", file=sys.stderr)
    print(f"bundle: {result.bundle} ({len(result.manifest.artifacts)} artifacts, {len(result.lut.operating_points)} "
          f"operating points, {result.seconds:.1f} s)")
    return 0 if result.ok or args.keep_going else 1


def _add_search(sub) -> None:
    from resflex.mobile.search import SearchConfig

    d = SearchConfig("", "")
    p = sub.add_parser("search", help="resizable checkpoint: accuracy, MACs and latency of its spatial configurations; "
                                      "the Pareto front as configs.json (for convert --configs)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="folder (written atomically): configs.json, search.csv, front.png")
    p.add_argument("--data", default=d.data, help="'synthetic' or an ImageFolder root (val/ measures top-1)")
    p.add_argument("--samples", type=_int_at_least(1), default=d.samples, help="validation images per configuration")
    p.add_argument("--max-configs", type=_int_at_least(1), default=d.max_configs,
                   help="measure every configuration up to this many, else a seeded sample of this many")
    p.add_argument("--seed", type=int, default=d.seed, help="synthetic data seed (use the training run's) and sample seed")
    p.add_argument("--bundle", default=None, help="a bundle (or its lut.json) with a device's latency model: predicted "
                                                  "latency, and the front over latency instead of MACs")
    p.add_argument("--device", default=None, help="device id in that lut.json (default: its only device)")
    p.add_argument("--runtime", default=None, help="the latency model's runtime (default: the best-fitted one)")
    p.add_argument("--precision", default=None, help="the latency model's precision (default: the best-fitted one)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=d.batch_size)
    p.add_argument("--workers", type=_int_at_least(0), default=d.workers)
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(run=_run_search)


def _run_search(args) -> int:
    from resflex.mobile.bundle.io import check_out
    from resflex.mobile.checkpoint import read_checkpoint
    from resflex.mobile.search import SearchConfig, search

    check_out(Path(args.out))
    _require_data(read_checkpoint(args.checkpoint), args.data, args.checkpoint, "--data", "val/")
    config = SearchConfig(
        checkpoint=args.checkpoint, out=args.out, data=args.data, samples=args.samples, max_configs=args.max_configs,
        seed=args.seed, bundle=args.bundle, device=args.device, runtime=args.runtime, precision=args.precision,
        batch_size=args.batch_size, workers=args.workers, overwrite=args.overwrite, progress=args.progress)
    result = search(config)
    cost = result.configs.cost
    print(f"{'resolution':>10}  {'stage scales':<20} {'top-1':>6}  {'MMACs':>8}" + ("  latency ms" if cost != "macs" else ""))
    for p in result.front:
        print(f"{p.resolution:>10}  {','.join(f'{s:g}' for s in p.stage_scales):<20} {100 * p.top1:6.1f}  "
              f"{p.macs / 1e6:8.3f}" + (f"  {p.latency_ms:10.3f}" if p.latency_ms is not None else ""))
    print(f"front: {len(result.front)} of {len(result.evaluated)} configurations "
          f"({result.configs.space} in the space); {result.out}/configs.json")
    return 0


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print a bundle's manifest and lookup table")
    p.add_argument("bundle")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True, help="check the artifacts' checksums")
    p.set_defaults(run=_run_inspect)


def _run_inspect(args) -> int:
    from resflex.mobile.bundle.io import Bundle
    from resflex.convert.describe import format_bundle

    bundle = Bundle.open(args.bundle, verify=args.verify)
    print(format_bundle(bundle.manifest, bundle.lut))
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="plots and a markdown summary of a bundle's lookup table")
    p.add_argument("bundle")
    p.add_argument("--out", required=True, help="report folder (written atomically): report.md and the plots")
    p.add_argument("--device", default=None, help="device id in lut.json; omitted: every device")
    p.add_argument("--reference", default=None,
                   help='JSON list of reference models, [{"label": ..., "macs": ..., "top1": 0..1}], e.g. I-Nets')
    p.add_argument("--format", default="png,svg", help="comma-separated image formats: png, svg, pdf")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace a non-empty --out")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check the artifacts' checksums")
    p.set_defaults(run=_run_report)


def _run_report(args) -> int:
    from resflex.profiling.report import ReportConfig, write_report

    config = ReportConfig(bundle=args.bundle, out=args.out, device=args.device, reference=args.reference,
                          formats=tuple(f.strip() for f in args.format.split(",") if f.strip()),
                          overwrite=args.overwrite, verify=args.verify)
    files = write_report(config)
    print(f"report: {Path(args.out) / 'report.md'} ({len(files) - 1} images)")
    return 0


def _add_profile(sub) -> None:
    from resflex.profiling.profile import DEFAULT_RUNTIMES, ProfileConfig

    d = ProfileConfig(bundle="")
    p = sub.add_parser("profile", help="time a bundle's operating points on a device; results go into its lut.json")
    p.add_argument("bundle")
    p.add_argument("--device", default=d.device, help="host | adb:SERIAL (an Android phone, see `adb devices`)")
    p.add_argument("--device-id", default=None, help="key of the device entry in lut.json (default: host, or the "
                   "phone's id)")
    p.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES),
                   help="comma-separated: executorch, tflite, onnxruntime, coreml (macOS only)")
    p.add_argument("--threads", type=_parse_threads, default=",".join(map(str, d.threads)),
                   help="comma-separated thread counts")
    p.add_argument("--runs", type=int, default=d.runs, help="timed runs per operating point")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed runs before them")
    p.add_argument("--switch-cost", action=argparse.BooleanOptionalAction, default=d.switch_cost,
                   help="time switching resolution inside the bundle vs loading another model file (host)")
    p.add_argument("--gemm-peak", action=argparse.BooleanOptionalAction, default=d.gemm_peak,
                   help="measure the host's fp32 GEMM peak (large matmul)")
    p.add_argument("--executor-runner", default=None, help="adb: ExecuTorch executor_runner built for the phone")
    p.add_argument("--benchmark-model", default=None, help="adb: LiteRT benchmark_model built for the phone")
    p.add_argument("--adb", default=d.adb, help="adb executable")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=d.progress)
    p.add_argument("--import", dest="import_file", metavar="FILE", default=None,
                   help="measure nothing: merge a phone's device_profile.json (the demo apps' benchmark) into lut.json")
    p.set_defaults(run=_run_profile)


def _parse_threads(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2, got {text!r}") from None


def _run_profile(args) -> int:
    from resflex.profiling.profile import ProfileConfig, format_profile, import_profile, last_profiled, profile

    if args.import_file is not None:
        table, device_id = import_profile(args.bundle, args.import_file)
        print(format_profile(table, device_id))
        return 0
    config = ProfileConfig(
        bundle=args.bundle, device=args.device, device_id=args.device_id,
        runtimes=tuple(r.strip() for r in args.runtimes.split(",") if r.strip()), threads=args.threads,
        runs=args.runs, warmup=args.warmup, switch_cost=args.switch_cost, gemm_peak=args.gemm_peak,
        executor_runner=args.executor_runner, benchmark_model=args.benchmark_model, adb=args.adb,
        progress=args.progress)
    table = profile(config)
    print(format_profile(table, config.device_id or last_profiled(table)))
    return 0


def _add_macs(sub) -> None:
    p = sub.add_parser("macs", help="multiply-accumulates and parameters of a checkpoint per resolution")
    p.add_argument("checkpoint")
    p.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="default: the checkpoint's training resolutions")
    p.add_argument("--by-layer", action=argparse.BooleanOptionalAction, default=False,
                   help="also a per-layer breakdown at each resolution")
    p.set_defaults(run=_run_macs)


def _run_macs(args) -> int:
    from resflex.profiling.checkpoint_macs import MacsConfig, checkpoint_macs, format_macs

    print(format_macs(checkpoint_macs(MacsConfig(args.checkpoint, args.resolutions, args.by_layer))))
    return 0


def _add_select(sub) -> None:
    from resflex.cli.select import SelectConfig
    from resflex.mobile.selector import DeviceState

    d, s = SelectConfig(bundle=""), DeviceState()
    p = sub.add_parser("select", help="one runtime decision: which operating point for this device state")
    p.add_argument("bundle", help="bundle directory (reads lut.json and optional selector_policy.json)")
    p.add_argument("--device", default=d.device, help="device id in the LUT (unknown: latency from MACs)")
    p.add_argument("--battery", type=float, default=s.battery, help="battery fraction 0..1")
    p.add_argument("--charging", action=argparse.BooleanOptionalAction, default=s.charging)
    p.add_argument("--power-save", action=argparse.BooleanOptionalAction, default=s.power_save)
    p.add_argument("--thermal", type=float, default=s.thermal, help="thermal state on --thermal-scale")
    p.add_argument("--thermal-scale", default=s.thermal_scale, help="normalized (0-3) | android (0-6) | ios (0-3)")
    p.add_argument("--cpu-load", type=float, default=s.cpu_load, help="fraction 0..1 of the CPU busy elsewhere")
    p.add_argument("--budget-ms", type=float, default=None, help="latency budget (default: the policy's, 33 ms)")
    p.add_argument("--min-top1", type=float, default=None, help="minimum top-1 fraction (default: the policy's)")
    p.add_argument("--policy", default=None, help="JSON file of policy fields overriding the bundle's policy")
    p.add_argument("--json", action=argparse.BooleanOptionalAction, default=False, help="print the decision as JSON")
    p.set_defaults(run=_run_select)


def _run_select(args) -> int:
    from resflex.cli.select import SelectConfig, format_decision, select_once

    selector, decision = select_once(SelectConfig(
        bundle=args.bundle, device=args.device, battery=args.battery, charging=args.charging,
        power_save=args.power_save, thermal=args.thermal, thermal_scale=args.thermal_scale, cpu_load=args.cpu_load,
        budget_ms=args.budget_ms, min_top1=args.min_top1, policy_file=args.policy))
    print(json.dumps(decision.to_dict(), indent=2) if args.json else format_decision(selector, decision))
    return 0


def _add_simulate(sub) -> None:
    from resflex.mobile.simulate import DEFAULT_SCENARIOS, POINT_SETS, SCENARIOS, SimulateConfig

    d = SimulateConfig(bundle="")
    p = sub.add_parser("simulate", help="replay phone scenarios (heat, load, battery) under fixed and resflex policies")
    p.add_argument("bundle", help="bundle directory (reads lut.json and optional selector_policy.json)")
    p.add_argument("--scenario", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    p.add_argument("--out", required=True, help="output folder (written atomically): summary.md/json and plots")
    p.add_argument("--device", default=None, help="device id in lut.json (default: host, or the only device)")
    p.add_argument("--budget-ms", type=float, default=None,
                   help="frame deadline (default: 1.2 × the most accurate point's cool latency on the device)")
    p.add_argument("--fps", type=float, default=d.fps, help="camera frames per second (one inference each)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the load bursts and latency jitter")
    p.add_argument("--minutes", type=float, default=None, help="stretch each scenario to this many minutes")
    p.add_argument("--points", choices=POINT_SETS, default=d.points,
                   help="measured: points with a measured latency on the device; all: also estimated ones")
    p.add_argument("--format", default="png,svg", help="comma-separated image formats: png, svg, pdf")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace a non-empty --out")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args) -> int:
    import time

    from resflex.mobile.simulate import SimulateConfig, format_summary, simulate, write_outputs

    config = SimulateConfig(
        bundle=args.bundle, scenarios=tuple(s.strip() for s in args.scenario.split(",") if s.strip()),
        device=args.device, budget_ms=args.budget_ms, fps=args.fps, seed=args.seed, minutes=args.minutes,
        points=args.points)
    t0 = time.perf_counter()
    result = simulate(config)
    files = write_outputs(result, args.out, overwrite=args.overwrite,
                          formats=tuple(f.strip() for f in args.format.split(",") if f.strip()))
    print(f"device {result.device!r}, budget {result.budget_ms:.3f} ms, {len(result.points)} operating points\n")
    print(format_summary(result))
    print(f"\n{args.out}: {len(files)} files in {time.perf_counter() - t0:.1f} s")
    return 0


def _run_models(args) -> int:
    from resflex.mobile.macs import registered_costs

    rows = registered_costs()
    width = max(len(arch) for arch, *_ in rows)
    print(f"{'arch':<{width}}  {'params':>8}  {'MACs':>8}  input")
    for arch, params, macs, resolution in rows:
        print(f"{arch:<{width}}  {params / 1e6:>7.2f}M  {macs / 1e6:>7.0f}M  {resolution} px")
    print("(width 1.0, 1000 classes, one resolution; an RS-Net adds its private BNs' parameters)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resflex", description="One classifier, many input resolutions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=functools.partial(argparse.ArgumentParser, formatter_class=_HelpFormatter))
    _add_train(sub)
    _add_import(sub)
    _add_eval(sub)
    _add_adapt(sub)
    _add_search(sub)
    _add_convert(sub)
    _add_inspect(sub)
    _add_report(sub)
    _add_profile(sub)
    _add_macs(sub)
    _add_select(sub)
    _add_simulate(sub)
    sub.add_parser("models", help="list the registered architectures with their parameters and MACs").set_defaults(
        run=_run_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from resflex.mobile.checkpoint import CheckpointError
    from resflex.mobile.data import DataError
    from resflex.mobile.bundle.schema import SchemaError
    from resflex.mobile.train import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TrainingDiverged as e:
        print(f"resflex: training diverged: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError, DataError, SchemaError,
            PermissionError, RuntimeError) as e:
        print(f"resflex {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resflex: interrupted; the last checkpoint written is intact", file=sys.stderr)
        return 130


if __name__ == "__main__":  # python -m resflex.cli.main
    sys.exit(main())
