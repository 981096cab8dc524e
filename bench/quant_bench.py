"""Benchmark: int8 per backend × calibration method (× calibration samples) on a trained multi-resolution model —
top-1 agreement with the torch model and accuracy drop at every resolution, size against the BN-folded
single-resolution artifact and against the BN floor, per-resolution latency against the folded artifacts.

    python bench/quant_bench.py --checkpoint /tmp/q35/checkpoint.pt
    python bench/quant_bench.py --checkpoint FLOAT/checkpoint.pt QAT/checkpoint.pt   # PTQ vs QAT side by side
    python bench/quant_bench.py --checkpoint C --backends onnx --methods onnx=minmax,percentile --calib-samples 64 256
    python bench/quant_bench.py --checkpoint FLOAT/checkpoint.pt QAT/checkpoint.pt --calib-from images qat

Each row is one `resflex convert` (`resflex.convert.pipeline.convert`, one backend, the given precision and
`--calib-method BACKEND=METHOD`) into `--out`; agreement and accuracy come from the bundle's manifest (convert runs
the artifact in its own runtime on `--val-samples` validation images per resolution and compares with the baked torch
module). Size, floor and latency reuse bench/convert_bench.py: the folded single-resolution artifacts are exported
once per backend × precision (their int8 calibrated with the backend's default method), latency is the median of
`--runs` interleaved single-thread runs (thread CPU time), reported as the worst resolution's ratio. An fp32 row per
backend gives the float reference. Core ML does not run on Linux and its int8 / int4 are weight-only (nothing to
calibrate): left out unless named in --backends; then its rows' agreement and top-1 come from the package's
programs evaluated by resflex's MIL reference evaluator (`ReferenceRunner`: float32 torch with the package's fp16
casts and quantized weights — not the Core ML runtime), marked "MIL ref.".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from convert_bench import (  # bench/ is on sys.path when a bench script runs
    _exported_view,
    bn_bytes_per_resolution,
    folded_artifacts,
    interleaved_latency,
    single_thread,
)
from results import recorded  # bench/results.py
from resflex.convert.backends.base import Entry
from resflex.mobile.bundle.io import Bundle
from resflex.convert.pipeline import ConvertConfig, convert, load_backend, split_images
from resflex.mobile.checkpoint import load_checkpoint, qat_ranges

DEFAULT_BACKENDS = ("executorch", "onnx", "tflite")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="trained multi-resolution checkpoints (same model; e.g. a float one and its `--qat` fine-tune)")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS))
    p.add_argument("--methods", default=None,
                   help="BACKEND=M1,M2;BACKEND=...: calibration methods per backend (default: all it offers)")
    p.add_argument("--calib-samples", type=int, nargs="+", default=[256], help="calibration images per resolution")
    p.add_argument("--calib-from", nargs="+", choices=("images", "qat"), default=["images", "qat"],
                   help="int8 activation ranges (`convert --calib-from`): qat rows only for a checkpoint with QAT "
                        "ranges and a backend that takes them (ExecuTorch, ONNX)")
    p.add_argument("--data", default="synthetic", help="calibration (train/) and agreement (val/) images: "
                   "'synthetic' or the ImageFolder root the checkpoints were trained on (`convert --calib-data`)")
    p.add_argument("--val-samples", type=int, default=1000, help="agreement/accuracy images per resolution")
    p.add_argument("--no-fp32", action="store_true", help="skip the fp32 reference rows")
    p.add_argument("--runs", type=int, default=15, help="timed runs per artifact and resolution (0: no latency)")
    p.add_argument("--latency-backends", default="executorch,onnx",
                   help="backends whose latency is measured (TFLite's five folded artifacts take minutes each)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="bench/out/quant", help="bundles go to OUT/<backend>_<precision>_<method>_<n>")
    p.add_argument("--reuse", action="store_true", help="measure bundles already in --out instead of converting")
    p.add_argument("--section", default="quant_bench", help="RESULTS.md section name")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the table into bench/RESULTS.md")
    return p.parse_args(argv)


def methods_for(args, be) -> list[str]:
    if args.methods:
        for part in args.methods.split(";"):
            name, _, methods = part.partition("=")
            if name.strip() == be.name:
                return [m.strip() for m in methods.split(",") if m.strip()]
    return list(be.calib_methods)


def main(argv=None) -> None:
    args = parse_args(argv)
    with recorded(args.section, args.record):
        return _run(args)


def training_label(payload) -> str:
    """How a checkpoint was trained, for the table: QAT (`resflex train --qat`) or float."""
    config = (payload.get("train_state") or {}).get("train_config") or {}
    return "QAT" if config.get("qat") else "float"


def _run(args) -> None:
    single_thread()
    rows = []
    for i, checkpoint in enumerate(args.checkpoint):
        model, payload = load_checkpoint(checkpoint)
        resolutions = sorted(model.config.resolutions, reverse=True)
        floor_bytes = bn_bytes_per_resolution(model)
        out = Path(args.out) / (f"{i}_{training_label(payload)}" if len(args.checkpoint) > 1 else "")
        rows += _rows(args, checkpoint, model, payload, resolutions, floor_bytes, out)
    print_table(args, rows, resolutions, floor_bytes)


def _rows(args, checkpoint, model, payload, resolutions, floor_bytes, out_root: Path) -> list[str]:
    calib = {r: split_images(model, args.data, "train", r, 64, 0, payload["class_names"])[0] for r in resolutions}
    label, rows = training_label(payload), []
    for name in args.backends.split(","):
        be = load_backend(name)
        jobs = [] if args.no_fp32 or "fp32" not in be.precisions else [("fp32", "-", 0, "images")]
        if "int8" in be.precisions:
            sources = [s for s in args.calib_from if s == "images" or (
                qat_ranges(payload) and getattr(be, "takes_act_ranges", False))]
            jobs += [("int8", m, n, s) for s in sources for m in methods_for(args, be) for n in args.calib_samples]
        if "int4" in be.precisions:  # Core ML: weight-only, nothing to calibrate
            jobs += [("int4", "-", 0, "images")]
        folded = {}
        for precision, method, samples, source in jobs:
            t0 = time.perf_counter()
            out = out_root / f"{name}_{precision}_{method}_{samples}" / source
            if args.reuse and (out / "manifest.json").exists():
                manifest = Bundle.open(out).manifest
            else:
                manifest = convert(ConvertConfig(
                    checkpoint=checkpoint, out=str(out), backends=(name,), precisions=(precision,),
                    calib_samples=max(samples, 1), calib_method=None if method == "-" else
                    f"{name}={method}",
                    calib_from=source, data=args.data, val_samples=args.val_samples, overwrite=True,
                    progress=False)).manifest
            if not manifest.artifacts:
                rows.append(f"| {label} | {name} | {precision} | {method} | {source} | {samples or '-'} | failed: "
                            f"{manifest.failures[0].error[:80] if manifest.failures else '?'} |")
                continue
            artifact = manifest.artifacts[0]  # TFLite int8's CPU-only companion follows: bit-identical outputs on CPU
            if name == "coreml" and not artifact.runs_on_host:  # convert checked it with the MIL reference
                if precision == "int4":  # convert's parity is against the int4-grid module: here, the float one
                    artifact = reference_parity(model, payload, artifact, out, resolutions, args.val_samples,
                                                args.data)
                method = "weights (MIL ref.)"
            with tempfile.TemporaryDirectory(prefix="folded_") as tmp:
                if precision not in folded:  # per backend × precision; independent of the calibration method
                    runs_here = artifact.runs_on_host and args.runs > 0 and name in args.latency_backends.split(",")
                    folded[precision] = folded_artifacts(model, be, precision, resolutions if runs_here
                                                         else resolutions[:1], calib, Path(tmp) / precision)
                rows.append(f"| {label} " + _row(args, be, artifact, folded[precision], resolutions, floor_bytes,
                                                 out, precision, method, samples))
            print(f"{label} {name} {precision} {method} {samples or ''} {source}: {time.perf_counter() - t0:.0f} s",
                  flush=True)
    return rows


def reference_parity(model, payload, artifact, bundle: Path, resolutions, samples: int, data: str):
    """A Core ML artifact's parity rows computed with the MIL reference evaluator (Core ML cannot run here)."""
    import dataclasses

    from resflex.convert.backends.coreml import ReferenceRunner
    from resflex.convert.bake import bake
    from resflex.convert.pipeline import _parity
    from resflex.mobile.bundle.schema import Evaluator

    runner = ReferenceRunner(bundle / artifact.file)
    rows = []
    for e in artifact.entries:
        x, y = split_images(model, data, "val", e.resolution, samples, 0, payload["class_names"])
        entry = Entry(e.resolution, e.name, e.input_name, e.output_name, tuple(e.input_shape))
        rows.append(_parity(runner, entry, bake(model, e.resolution, bn="fold"), x, y, artifact.precision.value,
                            Evaluator.MIL_REFERENCE))
    return dataclasses.replace(artifact, parity=rows)


def ranges_used(artifact) -> str:
    """Where the int8 activation ranges came from: images, or qat with its point counts (QAT / images)."""
    c = artifact.calibration
    if c is None:
        return "-"
    return "images" if c.source == "images" else f"QAT {c.points_from_qat} + images {c.points_from_images}"


def _row(args, be, artifact, folded, resolutions, floor_bytes, bundle: Path, precision, method, samples) -> str:
    one = folded[resolutions[0]][2]
    floor = (one + (len(resolutions) - 1) * floor_bytes) / one
    parity = {p.resolution: p for p in artifact.parity}
    if parity:
        agree = [parity[r].top1_agreement for r in resolutions]
        drop = [parity[r].top1_torch - parity[r].top1_artifact for r in resolutions]
        per_res = " / ".join(f"{100 * a:.1f}" for a in agree)
        quality = (f"{100 * min(agree):.1f} | {per_res} | {100 * max(drop):+.1f} | "
                   f"{'/'.join(f'{100 * d:+.1f}' for d in drop)} | "
                   f"{' / '.join(f'{100 * parity[r].top1_artifact:.1f}' for r in resolutions)}")
    else:
        quality = "- | not run on host | - | - | -"
    latency = "-"
    if artifact.runs_on_host and args.runs > 0 and all(r in folded and folded[r][0] is not None for r in resolutions):
        shared = be.runner(_exported_view(artifact), bundle / Path(artifact.file).parent)
        pairs = {}
        for e in artifact.entries:
            pairs["bundle", e.resolution] = (shared, Entry(e.resolution, e.name, e.input_name, e.output_name,
                                                           tuple(e.input_shape)))
            pairs["folded", e.resolution] = folded[e.resolution][:2]
        lat = interleaved_latency(pairs, args.runs, args.warmup)
        latency = f"{max(lat['bundle', r][1] / lat['folded', r][1] for r in resolutions):.2f}×"
    return (f"| {be.name} | {precision} | {method} | {ranges_used(artifact)} | {samples or '-'} | {quality} | "
            f"{artifact.bytes / one:.2f}× | {floor:.2f}× | {latency} |")


def print_table(args, rows, resolutions, floor_bytes) -> None:
    res = "/".join(map(str, resolutions))
    print(f"\n### int8: {', '.join(Path(c).as_posix() for c in args.checkpoint)}, resolutions {res}, "
          f"{args.val_samples} validation images per resolution\n")
    print("training: float (quantized after training) or QAT (`resflex train --qat`); agreement: top-1 of the "
          "artifact (its own runtime) = top-1 of the torch model; ranges from: the int8 activation ranges "
          "(`convert --calib-from`; QAT N + images M = activation quantization points, summed over resolutions); "
          "drop: torch top-1 − "
          "artifact top-1 (points, + = worse); size: the 5-resolution artifact ÷ the BN-folded single-resolution "
          f"artifact; floor: that ratio if each extra resolution added only its BN ({floor_bytes} B); latency: worst "
          "resolution's thread-CPU time ÷ the folded single-resolution artifact's.\n")
    print(f"| training | backend | precision | calibration | ranges from | samples | min agreement % | agreement % "
          f"({res}) | max drop pt | drop pt ({res}) | artifact top-1 % ({res}) | size | floor | latency |")
    print("|---|---|---|---|---|---:|---:|---|---:|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
