"""Benchmark: the convert pipeline on MobileNetV2 — shared-weight size, per-resolution host latency against the
BN-folded single-resolution artifact, parity on the real runtimes, and conversion time, per backend × precision.

    python bench/convert_bench.py --checkpoint runs/train_bench/rsnet/64-56-48-40-32/checkpoint.pt --random 1.0
    python bench/convert_bench.py --random 0.35 1.0 --backends executorch,onnx     # quicker
    python bench/convert_bench.py --random 0.35 --backends executorch,tflite --precisions fp32 --sharing size,speed

Each model is converted by `resflex.convert.pipeline.convert` (the command users run) into a 5-resolution bundle
under `--out` (kept: bench/profile_bench.py profiles it). Then, per backend × precision, the same backend exports
one BN-folded single-resolution artifact per resolution (`bake(bn="fold")`, what one-model-per-resolution ships):
- size: the bundle's artifact (all resolutions, shared weights) vs the folded single-resolution artifact at the
  largest resolution, and vs the K folded files together;
- latency: per resolution, the bundle's method/signature/file vs that resolution's folded artifact, each run in its
  own runtime on the host (1 thread, batch 1), interleaved, median wall time and median thread CPU time (the
  latter is robust to other processes on a shared machine);
- parity: from the bundle's manifest (convert measured it on the validation data in each runtime).
Core ML cannot run on Linux: sizes only.

Models: `--checkpoint` converts trained checkpoints (int8 parity is only meaningful on a trained model);
`--random W` converts an untrained RS-Net MobileNetV2 of width W at `--random-resolutions` whose private BNs get
random, different statistics per resolution (sizes, latency and fp32 parity are meaningful; int8 agreement on
an untrained network's near-tied logits is not).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from results import recorded  # bench/results.py
from resflex.convert.backends.base import Entry
from resflex.convert.bake import bake
from resflex.mobile.bundle.io import Bundle, size_of
from resflex.convert.pipeline import BACKENDS, ConvertConfig, convert, load_backend, split_images
from resflex.mobile.checkpoint import load_checkpoint, save_checkpoint
from resflex.cli.main import parse_resolutions
from resflex.mobile.data import SyntheticImages
from resflex.mobile.layers import SwitchableBatchNorm2d, randomize_private_bn
from resflex.mobile.models import create_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", nargs="*", default=[], help="trained checkpoints to convert")
    p.add_argument("--random", type=float, nargs="*", default=[], help="widths of untrained MobileNetV2s")
    p.add_argument("--random-resolutions", type=parse_resolutions, default=(224, 192, 160, 128, 96))
    p.add_argument("--num-classes", type=int, default=10, help="classes of the --random models (1000: ImageNet's)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--sharing", default="size", help="`convert --sharing` modes to measure, comma-separated; "
                   "auto@1.2: --sharing auto --size-budget 1.2")
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--val-samples", type=int, default=500, help="parity images per resolution")
    p.add_argument("--runs", type=int, default=30, help="timed runs per artifact and resolution (0: sizes only)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="bench/out", help="bundles go to OUT/<model>/bundle")
    p.add_argument("--reuse", action="store_true", help="measure bundles already in --out instead of converting")
    p.add_argument("--section", default="convert_bench", help="the bench/RESULTS.md section to write")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    args = p.parse_args(argv)
    if not args.checkpoint and not args.random:
        args.random = [0.35, 1.0]
    return args


def random_checkpoint(width: float, resolutions, path: Path, seed: int = 0, class_names=None) -> Path:
    """An untrained RS-Net MobileNetV2 whose per-resolution BNs differ (a few γ negative, same sign everywhere)."""
    class_names = class_names or SyntheticImages(num_classes=10).classes
    model = randomize_private_bn(create_model("mobilenet_v2", "rsnet", resolutions, width=width,
                                              num_classes=len(class_names)), seed)
    return save_checkpoint(path, model, class_names)


def noise_image_folder(root: Path, num_classes: int, size: int = 64) -> Path:
    """An ImageFolder (train/ and val/) of `num_classes` classes, one random-noise image each: calibration and parity
    data for an untrained model with more classes than the synthetic set has (sizes and latency only)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(num_classes):
            folder = root / split / f"c{c:04d}"
            if not folder.is_dir():
                folder.mkdir(parents=True)
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "0.png")
    return root


def bn_bytes_per_resolution(model) -> int:
    """The least any artifact must add per extra resolution: one fp32 scale and shift per BN channel."""
    return sum(8 * m.num_features for m in model.modules() if isinstance(m, SwitchableBatchNorm2d))


def single_thread() -> None:
    torch.set_num_threads(1)
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(1)  # XNNPACK's pool defaults to the core count


def folded_artifacts(model, be, precision, resolutions, calib, out: Path):
    """One BN-folded single-resolution artifact per resolution: {r: (runner or None, entry, bytes)}."""
    result = {}
    for r in resolutions:
        exported = be.export({r: bake(model, r, bn="fold")}, precision, {r: calib[r]}, out / str(r))
        runner = be.runner(exported, out / str(r)) if exported.runs_on_host else None
        result[r] = (runner, exported.entries[0], sum(size_of(out / str(r) / f) for f in exported.files))
    return result


def interleaved_latency(pairs: dict, runs: int, warmup: int) -> dict:
    """pairs: {(variant, r): (runner, entry)} → {(variant, r): (median wall ms, median thread-CPU ms)}."""
    inputs = {r: np.random.default_rng(r).standard_normal((1, 3, r, r), dtype=np.float32) for _, r in pairs}
    wall = {k: [] for k in pairs}
    cpu = {k: [] for k in pairs}
    for i in range(warmup + runs):
        for (variant, r), (runner, entry) in pairs.items():
            w, c = time.perf_counter(), time.thread_time()
            runner.run(entry, inputs[r])
            if i >= warmup:
                cpu[variant, r].append(time.thread_time() - c)
                wall[variant, r].append(time.perf_counter() - w)
    return {k: (1e3 * statistics.median(wall[k]), 1e3 * statistics.median(cpu[k])) for k in pairs}


def parity_summary(artifact) -> str:
    if not artifact.parity:
        return "not run on host (structural checks)"
    if artifact.precision.value == "fp32":
        text = f"max rel. err {max(p.max_rel_error for p in artifact.parity):.1e}"
    else:
        agree = min(p.top1_agreement for p in artifact.parity)
        drop = max(p.top1_torch - p.top1_artifact for p in artifact.parity)
        text = f"agreement ≥ {100 * agree:.1f}%, drop ≤ {100 * drop:.1f} pt"
    return text + (" ✓" if all(p.passed for p in artifact.parity) else " ✗")


def bench_model(name: str, checkpoint: Path, data: str, args, size_rows: list, latency_rows: list) -> None:
    """Convert `checkpoint` once per `--sharing` mode (calibration and parity images from `data`) and add its rows."""
    model, payload = load_checkpoint(checkpoint)
    backends = {b: load_backend(b) for b in args.backends.split(",")}
    with tempfile.TemporaryDirectory(prefix="folded_") as tmp:
        folded = {}  # (backend, precision) → the folded single-resolution artifacts, shared by every sharing mode
        for sharing in args.sharing.split(","):
            bundle = Path(args.out) / name / ("bundle" if sharing == "size" else f"bundle_{sharing.replace('@', '_')}")
            _bench_bundle(name, checkpoint, data, model, payload, bundle, sharing, backends, folded, Path(tmp), args,
                          size_rows, latency_rows)


def _bench_bundle(name, checkpoint, data: str, model, payload, bundle: Path, sharing: str, backends, folded,
                  tmp: Path, args, size_rows: list, latency_rows: list) -> None:
    t0 = time.perf_counter()
    if args.reuse and bundle.exists():
        manifest = Bundle.open(bundle).manifest
    else:
        mode, _, budget = sharing.partition("@")
        manifest = convert(ConvertConfig(
            checkpoint=str(checkpoint), out=str(bundle), backends=tuple(args.backends.split(",")), data=data,
            precisions=tuple(args.precisions.split(",")), calib_samples=args.calib_samples, sharing=mode,
            size_budget=float(budget) if budget else None,
            val_samples=args.val_samples, overwrite=True, progress=False)).manifest
    print(f"{name}: bundle {bundle} (--sharing {sharing}) in {time.perf_counter() - t0:.0f} s", flush=True)
    resolutions = manifest.resolutions
    calib = {r: split_images(model, data, "train", r, args.calib_samples, 0, payload["class_names"])[0]
             for r in resolutions}
    for artifact in manifest.artifacts:
        if artifact.backend.value not in backends:
            continue
        be, precision = backends[artifact.backend.value], artifact.precision.value
        key = (be.name, precision)
        if key not in folded:  # sizes only (--runs 0) or not runnable here: the largest resolution's is enough
            folded[key] = folded_artifacts(model, be, precision, resolutions if artifact.runs_on_host and args.runs
                                           else resolutions[:1], calib, tmp / f"{be.name}_{precision}")
        if artifact.compute_units:  # e.g. TFLite int8's CPU-only artifact beside the GPU-capable one
            precision += f" ({', '.join(artifact.compute_units)})"
        mine = folded[key]
        one = mine[resolutions[0]][2]
        all_folded = (f"{sum(f[2] for f in mine.values()) / 1e6:.2f}" if len(mine) == len(resolutions)
                      else "-")
        floor = (one + (len(resolutions) - 1) * bn_bytes_per_resolution(model)) / one
        size_rows.append(f"| {name} | {be.name} | {precision} | {sharing} | {one / 1e6:.2f} | "
                         f"{artifact.bytes / 1e6:.2f} | **{artifact.bytes / one:.2f}×** | {floor:.2f}× | "
                         f"{all_folded} | "
                         f"{artifact.convert_seconds:.0f} | {parity_summary(artifact)} |")
        if not artifact.runs_on_host or args.runs == 0:
            continue
        shared = be.runner(_exported_view(artifact), bundle / Path(artifact.file).parent)
        pairs = {}
        for e in artifact.entries:
            entry = Entry(e.resolution, e.name, e.input_name, e.output_name, tuple(e.input_shape))
            pairs["bundle", e.resolution] = (shared, entry)
            pairs["folded", e.resolution] = mine[e.resolution][:2]
        lat = interleaved_latency(pairs, args.runs, args.warmup)
        for r in resolutions:
            (bw, bc), (fw, fc) = lat["bundle", r], lat["folded", r]
            latency_rows.append(f"| {name} | {be.name} | {precision} | {sharing} | {r} | {fw:.2f} | {bw:.2f} | "
                                f"{bw / fw:.3f}× | {fc:.2f} | {bc:.2f} | **{bc / fc:.3f}×** |")
        print(f"  {be.name} {precision}: done", flush=True)


def _exported_view(artifact):
    """The backend's `Exported` for an artifact already in a bundle (what `backend.runner` takes)."""
    from resflex.convert.backends.base import Exported

    files = (Path(artifact.file).name, *(Path(f.file).name for f in artifact.extra_files))
    entries = tuple(Entry(e.resolution, e.name, e.input_name, e.output_name, tuple(e.input_shape))
                    for e in artifact.entries)
    return Exported(artifact.backend.value, artifact.precision.value, files, artifact.layout.value, entries,
                    artifact.runs_on_host, artifact.notes)


def main(argv=None) -> None:
    args = parse_args(argv)
    with recorded(args.section, args.record):
        return _run(args)


def _run(args) -> None:
    single_thread()
    models = {}  # name → (checkpoint, calibration / parity data)
    for c in args.checkpoint:
        config = load_checkpoint(c)[0].config
        models[f"mbv2_w{config.width}_{config.method.value}_trained"] = (Path(c), "synthetic")
    random_data, classes = "synthetic", None
    if args.num_classes != 10:  # more classes than the synthetic set has
        classes = [f"c{c:04d}" for c in range(args.num_classes)]
        random_data = str(noise_image_folder(Path(args.out) / f"noise_{args.num_classes}", args.num_classes))
    for width in args.random:
        name = f"mbv2_w{width}_random" + (f"_{args.num_classes}cls" if classes else "")
        models[name] = (random_checkpoint(width, args.random_resolutions, Path(args.out) / name / "checkpoint.pt",
                                          class_names=classes), random_data)
    size_rows, latency_rows = [], []
    for name, (checkpoint, data) in models.items():
        bench_model(name, checkpoint, data, args, size_rows, latency_rows)
        print_tables(args, size_rows, latency_rows)  # after each model, so a later failure loses nothing


def print_tables(args, size_rows, latency_rows) -> None:
    print("\n### Size: one artifact with 5 resolutions vs the BN-folded single-resolution artifact (MB)\n")
    print("BN floor: the ratio if the only extra bytes were each extra resolution's fp32 BN scale and shift.\n")
    print("| model | backend | precision | sharing | 1 res folded | 5 res bundle | ratio | BN floor | 5 folded files | "
          "convert s | parity (val, every resolution) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(size_rows))
    print(f"\n### Host latency per resolution (ms, median of {args.runs} interleaved runs, 1 thread, batch 1)\n")
    print("| model | backend | precision | sharing | res | folded 1-res wall | bundle wall | ratio wall | "
          "folded 1-res CPU | bundle CPU | ratio CPU |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(latency_rows))


if __name__ == "__main__":
    main()
