"""CPU seconds of one TFLite conversion (`TFLiteBackend.start(...).result()`: every resolution, fp32 and int8 from one
onnx2tf run, as `resflex convert` runs it), this tree against an older revision, and whether the two write the same
files.

    OMP_NUM_THREADS=1 python bench/tflite_time_bench.py --before c4ad0cb --runs 2

The model is the quickstart's shape (MobileNetV2 ×0.35, RS-Net, 64,56,48,40,32 px, 10 classes; untrained, private
BNs randomized, seed 0), baked as `resflex convert` bakes it for TFLite (`bn="fold"`), int8 calibrated on 256 seeded
noise images per resolution (`convert --calib-samples` default). Each conversion runs in a fresh single-threaded child
process; the clock (CPU seconds of that process and of the onnx2tf worker it waits for) starts before the ONNX export
and stops when the worker's files are written. `--before REV` runs the same child on `git archive REV` of this
repository. The runs are interleaved (run 1: before, after; run 2: ...). "same files": `model_fp32.tflite`,
`model_int8.tflite` and `model_int8_cpu.tflite` are byte-identical between the two versions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

FILES = ("model_fp32.tflite", "model_int8.tflite", "model_int8_cpu.tflite")


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child(args) -> None:
    """Convert once and print {"cpu": s, "wall": s} (the resflex imported is whichever PYTHONPATH gives)."""
    import torch

    from resflex.convert.backends.tflite import TFLiteBackend
    from resflex.convert.bake import bake
    from resflex.mobile.layers import randomize_private_bn
    from resflex.mobile.models import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = randomize_private_bn(create_model(args.arch, "rsnet", args.resolutions, width=args.width,
                                              num_classes=10), 0).eval()
    baked = {r: bake(model, r, bn="fold") for r in args.resolutions}
    g = torch.Generator().manual_seed(0)
    calib = {r: torch.rand(args.calib, 3, r, r, generator=g) for r in args.resolutions}
    t0, c0 = time.perf_counter(), _cpu()
    TFLiteBackend().start(baked, tuple(args.child.split(",")), calib, Path(args.out)).result()
    print(json.dumps({"cpu": _cpu() - c0, "wall": time.perf_counter() - t0}))


def same_files(a: Path, b: Path) -> bool:
    """The two output folders hold byte-identical .tflite files (those of FILES that either has)."""
    names = [n for n in FILES if (a / n).exists() or (b / n).exists()]
    return bool(names) and all((a / n).exists() and (b / n).exists() and (a / n).read_bytes() == (b / n).read_bytes()
                               for n in names)


def _convert(version: str, out: Path, path: Path | None, args) -> dict:
    from results import child_env

    env = child_env(path)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", ",".join(args.precisions), "--out", str(out),
           "--arch", args.arch, "--width", str(args.width), "--calib", str(args.calib),
           "--resolutions", ",".join(map(str, args.resolutions))]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if run.returncode != 0:
        raise RuntimeError(f"{version} conversion failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="revision to compare with (git archive of this repository)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--precisions", type=lambda t: t.split(","), default=["fp32", "int8"])
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--width", type=float, default=0.35)
    p.add_argument("--resolutions", type=lambda t: [int(x) for x in t.split(",")], default=[64, 56, 48, 40, 32])
    p.add_argument("--calib", type=int, default=256, help="int8 calibration images per resolution")
    p.add_argument("--out", help="keep the files here (default: a temporary folder)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--no-record", action="store_true", help="leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from results import print_timing_table, recorded, time_revisions

    with tempfile.TemporaryDirectory(prefix="tflite_time_") as tmp, \
            recorded("tflite_convert_time", enabled=not args.no_record, argv=argv):
        out = Path(args.out or tmp)
        load = os.getloadavg()
        key = "+".join(args.precisions)  # one conversion makes them all
        times = time_revisions(args.before, Path(tmp) / "checkout", [key], args.runs,
                               lambda version, _, path: _convert(version, out / version, path, args))
        load_after = os.getloadavg()
        print(f"{args.arch} ×{args.width:g}, {','.join(map(str, args.resolutions))} px, {key} "
              f"in one conversion, {args.calib} calibration images per resolution; one conversion per child process "
              f"(CPU s: it and the onnx2tf worker), OMP_NUM_THREADS=1; load average (1, 5, 15 min) "
              f"{' '.join(f'{x:.2f}' for x in load)} before, {' '.join(f'{x:.2f}' for x in load_after)} after\n")
        print_timing_table(times, [key], None, lambda _: same_files(out / "before", out / "after"), "same files")


if __name__ == "__main__":
    main()
