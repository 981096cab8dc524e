"""CPU seconds of one Core ML export (`CoreMLBackend.export`: every resolution, one precision), this tree against an
older revision, and whether the two write the same package.

    OMP_NUM_THREADS=1 python bench/coreml_time_bench.py --before a69d2d5 --runs 2

The model is the quickstart's shape (MobileNetV2 ×0.35, RS-Net, 64,56,48,40,32 px, 10 classes; untrained, private
BNs randomized, seed 0), baked as `resflex convert` bakes it for Core ML (`bn="affine"`). Each export runs in a fresh
single-threaded child process (what `resflex convert` does with two cores: `convert.background`), coremltools
imported before the clock starts; `--before REV` runs the same child on `git archive REV` of this repository.
The runs are interleaved (run 1: fp16 before, fp16 after, int8 before, ...). "same package": the model spec (parsed:
protobuf maps serialize in any order), the weight file bytes and the manifest (its items keyed by path, not by their
random identifiers) are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def child(args) -> None:
    """Export once and print {"cpu": s, "wall": s} (the resflex imported is whichever PYTHONPATH gives)."""
    import torch

    from resflex.convert.backends.coreml import CoreMLBackend
    from resflex.convert.bake import bake
    from resflex.convert.backends.coreml.common import coremltools
    from resflex.mobile.layers import randomize_private_bn
    from resflex.mobile.models import create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = randomize_private_bn(create_model(args.arch, "rsnet", args.resolutions, width=args.width,
                                              num_classes=10), 0).eval()
    baked = {r: bake(model, r, bn="affine") for r in args.resolutions}
    coremltools()  # its import (seconds) is not the export's
    t0, c0 = time.perf_counter(), time.process_time()
    CoreMLBackend().export(baked, args.child, {}, Path(args.out))
    print(json.dumps({"cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}))


def same_package(a: Path, b: Path) -> bool:
    """Two .mlpackage folders hold the same model: same files, same spec, weight bytes and manifest items."""
    from coremltools.proto import Model_pb2

    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    for rel in files:
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if rel.name == "model.mlmodel":
            x, y = Model_pb2.Model.FromString(x), Model_pb2.Model.FromString(y)
        elif rel.name == "Manifest.json":
            x, y = _manifest(x), _manifest(y)
        if x != y:
            return False
    return True


def _manifest(text: bytes) -> dict:
    doc = json.loads(text)
    items = doc.pop("itemInfoEntries")
    doc["root"] = items[doc.pop("rootModelIdentifier")]["path"]
    doc["items"] = sorted(items.values(), key=lambda item: item["path"])
    return doc


def _export(version: str, precision: str, out: Path, path: Path | None, args) -> dict:
    from results import child_env

    env = child_env(path)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", precision, "--out", str(out),
           "--arch", args.arch, "--width", str(args.width), "--resolutions", ",".join(map(str, args.resolutions))]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(f"{version} {precision} export failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="revision to compare with (git archive of this repository)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--precisions", type=lambda t: t.split(","), default=["fp16", "int8"])
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--width", type=float, default=0.35)
    p.add_argument("--resolutions", type=lambda t: [int(x) for x in t.split(",")], default=[64, 56, 48, 40, 32])
    p.add_argument("--out", help="keep the packages here (default: a temporary folder)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--no-record", action="store_true", help="leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from results import print_timing_table, recorded, time_revisions

    with tempfile.TemporaryDirectory(prefix="coreml_time_") as tmp, \
            recorded("coreml_convert_time", enabled=not args.no_record, argv=argv):
        out = Path(args.out or tmp)
        load = os.getloadavg()
        times = time_revisions(args.before, Path(tmp) / "checkout", args.precisions, args.runs,
                               lambda version, precision, path: _export(version, precision, out / version, path, args))
        load_after = os.getloadavg()
        print(f"{args.arch} ×{args.width:g}, {','.join(map(str, args.resolutions))} px; one export per child process, "
              f"OMP_NUM_THREADS=1; load average (1, 5, 15 min) {' '.join(f'{x:.2f}' for x in load)} before, "
              f"{' '.join(f'{x:.2f}' for x in load_after)} after\n")
        print_timing_table(times, args.precisions, "precision", lambda precision: same_package(
            *(out / version / f"model_{precision}.mlpackage" for version in ("before", "after"))), "same package")


if __name__ == "__main__":
    main()
