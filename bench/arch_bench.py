"""Benchmark: the mobile architectures of the registry and a network from a user's own file, through the whole chain —
switchable (RS-Net) training on the synthetic set, convert to every backend × precision, and per artifact: parity,
size against the BN floor, host latency against the BN-folded single-resolution artifact, convert time.

    OMP_NUM_THREADS=1 python bench/arch_bench.py          # the default set below, one table in bench/RESULTS.md
    python bench/arch_bench.py --archs bench/user_net.py:factory --backends executorch,onnx --no-record

Per architecture: `resflex train` (`--epochs` on `--train-samples` synthetic images, 10 classes, `--width` for the
registered ones), then `resflex convert` of the checkpoint (`resflex.convert.pipeline.convert`). Top-1 is the torch
model's on the parity images, per resolution. Size ratio: the bundle's artifact ÷ the BN-folded single-resolution
artifact at the largest resolution (what one-model-per-resolution ships); BN floor: that ratio if each extra
resolution added only its fp32 BN scale and shift. Latency: the bundle's entry ÷ the folded artifact at the largest
resolution, median thread-CPU time of interleaved runs (1 thread, batch 1). Core ML cannot run on Linux: sizes only,
parity on its MIL reference evaluator. The helpers are bench/convert_bench.py's. Each architecture runs in its own
process (`--rows-out`), so a native crash in one (its row says which signal) loses none of the others.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convert_bench import (_exported_view, bn_bytes_per_resolution, folded_artifacts, interleaved_latency,
                           parity_summary, single_thread)
from results import recorded  # bench/results.py
from resflex.cli.main import parse_resolutions
from resflex.convert.backends.base import Entry
from resflex.convert.pipeline import BACKENDS, ConvertConfig, convert, load_backend, split_images
from resflex.mobile.checkpoint import load_checkpoint
from resflex.mobile.macs import count_params
from resflex.mobile.models import list_models
from resflex.mobile.train import TrainConfig, train

NEW_ARCHS = ("mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_lite0", "mobilenet_v4_conv_small",
             "regnet_x_200mf")
USER_ARCH = "bench/user_net.py:factory"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=None, help="comma-separated registered names or FILE.py:FACTORY specs "
                   f"(default: those of {', '.join(NEW_ARCHS)} that are registered, and {USER_ARCH})")
    p.add_argument("--width", type=float, default=0.25, help="width multiplier of the registered architectures")
    p.add_argument("--resolutions", type=parse_resolutions, default=(32, 28, 24, 20, 16))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-samples", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="train with NHWC batches (train's default; a model with grouped convs trains in NCHW on CPU)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--val-samples", type=int, default=200, help="parity (and top-1) images per resolution")
    p.add_argument("--runs", type=int, default=20, help="timed runs per artifact at the largest resolution")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="bench/out/arch_bench")
    p.add_argument("--section", default="arch_bench", help="the bench/RESULTS.md section to write")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the table into bench/RESULTS.md")
    p.add_argument("--rows-out", default=None, help=argparse.SUPPRESS)  # child process: measure one arch, write rows
    args = p.parse_args(argv)
    registered = set(list_models())
    args.archs = (args.archs.split(",") if args.archs else
                  [a for a in NEW_ARCHS if a in registered] + [USER_ARCH])
    return args


def _name(arch: str) -> str:
    return Path(arch.split(":")[0]).stem + ":" + arch.split(":")[1] if ":" in arch else arch


def bench_arch(arch: str, args, rows: list) -> None:
    """Train, convert and measure one architecture; add its table rows."""
    name, run = _name(arch), Path(args.out) / _name(arch).replace(":", "_")
    t0 = time.perf_counter()
    train(TrainConfig(arch=arch, method="rsnet", resolutions=args.resolutions, width=args.width,
                      epochs=args.epochs, batch_size=args.batch_size, channels_last=args.channels_last,
                      train_samples=args.train_samples,
                      val_samples=args.val_samples, workers=0, progress=False, out=str(run / "train"),
                      overwrite=True))
    train_s = time.perf_counter() - t0
    checkpoint = run / "train" / "checkpoint.pt"
    manifest = convert(ConvertConfig(
        checkpoint=str(checkpoint), out=str(run / "bundle"), backends=tuple(args.backends.split(",")),
        precisions=tuple(args.precisions.split(",")), calib_samples=args.calib_samples,
        val_samples=args.val_samples, overwrite=True, progress=False)).manifest
    print(f"{name}: trained in {train_s:.0f} s, converted in {time.perf_counter() - t0 - train_s:.0f} s", flush=True)
    model, payload = load_checkpoint(checkpoint)
    top = args.resolutions[0]
    bn_bytes = bn_bytes_per_resolution(model)
    calib = {top: split_images(model, "synthetic", "train", top, args.calib_samples, 0, payload["class_names"])[0]}
    reference = next((a.parity for a in manifest.artifacts if a.parity), [])
    top1 = "/".join(f"{100 * p.top1_torch:.0f}" for p in reference) or "-"
    first = f"| {name} | {count_params(model) / 1e6:.2f} | {top1} |"
    with tempfile.TemporaryDirectory(prefix="arch_folded_") as tmp:
        for artifact in manifest.artifacts:
            be, precision = load_backend(artifact.backend.value), artifact.precision.value
            runner, entry, one = folded_artifacts(model, be, precision, [top], calib,
                                                  Path(tmp) / f"{be.name}_{precision}")[top]
            floor = (one + (len(args.resolutions) - 1) * bn_bytes) / one
            latency = "-"
            if runner is not None and args.runs:
                shared = be.runner(_exported_view(artifact), run / "bundle" / Path(artifact.file).parent)
                e = artifact.entries[0]
                mine = Entry(e.resolution, e.name, e.input_name, e.output_name, tuple(e.input_shape))
                lat = interleaved_latency({("bundle", top): (shared, mine), ("folded", top): (runner, entry)},
                                          args.runs, args.warmup)
                latency = f"{lat['bundle', top][1] / lat['folded', top][1]:.2f}×"
            rows.append(f"{first} {be.name} | {precision} | {parity_summary(artifact)} | **{artifact.bytes / one:.3f}×** "
                        f"| {floor:.3f}× | {latency} | {artifact.convert_seconds:.0f} |")
            first = "| | | |"
    built = {(a.backend.value, a.precision.value) for a in manifest.artifacts}
    for failure in manifest.failures:  # exports that failed (a parity shortfall shows in the artifact's row)
        if (failure.backend, failure.precision) not in built:
            error = failure.error.splitlines()[0][:160].replace("|", "/")
            rows.append(f"{first} {failure.backend} | {failure.precision} | FAILED: {error} | | | | |")
            first = "| | | |"


def print_table(args, rows) -> None:
    res = "/".join(str(r) for r in args.resolutions)
    print(f"\n### {len(args.resolutions)} resolutions ({res} px), RS-Net, {args.epochs} epochs on "
          f"{args.train_samples} synthetic images; registered archs at width {args.width}\n")
    print(f"Size and latency against the BN-folded single-resolution artifact at {args.resolutions[0]} px; latency "
          f"is thread-CPU time, median of {args.runs} interleaved runs, 1 thread, batch 1.\n")
    print(f"| arch | params M | top-1 % ({res}) | backend | precision | parity (val, every resolution) | size ratio | "
          "BN floor | latency ratio | convert s |")
    print("|---|---:|---|---|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))


def bench_in_child(arch: str, argv: list[str], rows: list) -> None:
    """Run bench_arch for `arch` in a fresh process; a crash there becomes a row naming the signal."""
    with tempfile.NamedTemporaryFile(prefix="arch_rows_", suffix=".json") as out:
        child = subprocess.run([sys.executable, __file__, *argv, "--archs", arch, "--no-record", "--rows-out",
                                out.name], stdout=sys.stderr.fileno())  # progress to stderr: not in the table
        text = Path(out.name).read_text()
    if child.returncode == 0 and text:
        rows.extend(json.loads(text))
        return
    why = (f"CRASHED (signal {signal.Signals(-child.returncode).name})" if child.returncode < 0
           else f"FAILED (exit status {child.returncode})")
    rows.append(f"| {_name(arch)} | | | | | {why}; see its stderr above | | | | |")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.rows_out:
        single_thread()
        rows: list[str] = []
        bench_arch(args.archs[0], args, rows)
        Path(args.rows_out).write_text(json.dumps(rows))
        return
    rows = []
    with recorded(args.section, args.record):
        for arch in args.archs:
            bench_in_child(arch, argv, rows)
            print_table(args, rows)  # after each architecture, so a later crash loses nothing already measured


if __name__ == "__main__":
    main()
