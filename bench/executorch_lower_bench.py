"""CPU time of the ExecuTorch export per stage, with and without the exporter's scoped speed-ups (issue 23 item 6).

Exports an untrained RS-Net MobileNetV2 (the quickstart's shape by default: ×0.35, 64…32 px, 10 classes) with
`ExecuTorchBackend`, each run in a fresh process (so one-time costs such as XNNPACK's pattern graphs count in
every run), "before" = the speed-ups named by `--off` replaced by no-ops (default `_without_idle_retraces`, which
skips idle XNNPACK retraces; `_deferred_recompiles` generates graph code only when needed), "after" = as shipped;
the two alternate. Prints CPU seconds per stage (median over repeats; stages nest: "xnnpack passes" is part of
"to_backend", and "torch.export" counts the exports inside "quantize" too) and whether the `.pte` bytes are
identical:

    python bench/executorch_lower_bench.py [--precisions fp32,int8] [--resolutions 64,56,48,40,32] [--repeats 2]
                                           [--off _without_idle_retraces,_deferred_recompiles]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("before", "after")
STAGES = ("quantize", "torch.export", "to_edge", "to_backend", "xnnpack passes", "to_executorch", "total")


SPEEDUPS = ("_without_idle_retraces", "_deferred_recompiles")  # context managers in convert/backends/executorch.py


def _one(variant: str, precision: str, resolutions: list[int], width: float, calib: int, out: Path,
         off: list[str]) -> dict:
    """One export in this process; CPU seconds per stage and the `.pte`'s SHA-256."""
    import torch
    import executorch.exir as exir
    from executorch.backends.xnnpack import _passes as xnnpack_passes
    from executorch.exir.program import _program

    import resflex.convert.backends.executorch as et
    from resflex.convert.bake import bake
    from resflex.convert.runtimes import Spatial
    from resflex.mobile.layers import randomize_private_bn
    from resflex.mobile.models import create_model

    torch.set_num_threads(1)
    seconds = dict.fromkeys(STAGES, 0.0)

    def timed(owner, name, stage):
        f = getattr(owner, name)

        @functools.wraps(f)
        def wrapper(*a, **k):
            start = time.process_time()
            try:
                return f(*a, **k)
            finally:
                seconds[stage] += time.process_time() - start
        setattr(owner, name, wrapper)

    timed(et, "_quantized", "quantize")
    timed(exir, "to_edge", "to_edge")
    timed(_program.EdgeProgramManager, "to_backend", "to_backend")
    timed(xnnpack_passes.XNNPACKPassManager, "transform", "xnnpack passes")
    timed(_program.EdgeProgramManager, "to_executorch", "to_executorch")
    timed(torch.export, "export", "torch.export")
    if variant == "before":
        for name in off:
            setattr(et, name, contextlib.nullcontext)
    torch.manual_seed(0)
    model = randomize_private_bn(create_model("mobilenet_v2", "rsnet", tuple(resolutions), width=width,
                                              num_classes=10), 0).eval()
    baked = {Spatial(r): bake(model, r, "nearest", "ideal", "affine") for r in resolutions}
    g = torch.Generator().manual_seed(1)
    images = {Spatial(r): torch.randn(calib, 3, r, r, generator=g) for r in resolutions}
    start = time.process_time()
    exported = et.ExecuTorchBackend().export(baked, precision, images, out)
    seconds["total"] = time.process_time() - start
    sha = hashlib.sha256((out / exported.files[0]).read_bytes()).hexdigest()
    return {"seconds": seconds, "sha256": sha}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--resolutions", default="64,56,48,40,32")
    p.add_argument("--width", type=float, default=0.35)
    p.add_argument("--calib", type=int, default=128, help="int8 calibration images per resolution")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--off", default=SPEEDUPS[0],
                   help=f"comma-separated speed-ups that 'before' runs without: {', '.join(SPEEDUPS)}")
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "PRECISION"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    off = [name.strip() for name in args.off.split(",") if name.strip()]
    if not off or set(off) - set(SPEEDUPS):
        p.error(f"--off {args.off!r}: expected a comma-separated list of {', '.join(SPEEDUPS)}")
    if args.one:
        print(json.dumps(_one(*args.one, resolutions, args.width, args.calib, args.out, off)))
        return
    from results import child_env

    runs = {}
    env = child_env()
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for precision in args.precisions.split(","):
                for variant in VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]:
                    out = Path(tmp) / f"{variant}_{precision}_{repeat}"
                    done = subprocess.run([sys.executable, __file__, "--one", variant, precision, "--resolutions",
                                           args.resolutions, "--width", str(args.width), "--calib", str(args.calib),
                                           "--off", ",".join(off), "--out", str(out)],
                                          env=env, capture_output=True, text=True)
                    if done.returncode:
                        sys.exit(f"{variant} {precision} failed:\n{done.stderr[-3000:]}")
                    runs.setdefault((precision, variant), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                    print(f"{precision} {variant} run {repeat + 1}: {runs[precision, variant][-1]['seconds']['total']:.1f} s CPU",
                          file=sys.stderr, flush=True)
    print(f"\nMobileNetV2 ×{args.width}, RS-Net, {args.resolutions} px, 1 thread, CPU seconds (median of "
          f"{args.repeats} fresh processes each); before = without {', '.join(off)}\n")
    print("| precision | stage | before | after | after ÷ before |\n|---|---|---:|---:|---:|")
    for precision in args.precisions.split(","):
        for stage in STAGES:
            b, a = (statistics.median(r["seconds"][stage] for r in runs[precision, v]) for v in VARIANTS)
            if stage == "quantize" and precision != "int8":
                continue
            name = f"**{stage}**" if stage == "total" else stage
            print(f"| {precision} | {name} | {b:.1f} | {a:.1f} | {a / b:.2f} |" if b else
                  f"| {precision} | {name} | {b:.1f} | {a:.1f} | — |")
    for precision in args.precisions.split(","):
        shas = {r["sha256"] for v in VARIANTS for r in runs[precision, v]}
        print(f"\n{precision}: .pte bytes identical in every run: {'yes' if len(shas) == 1 else 'NO'} "
              f"(sha256 {', '.join(sorted(s[:12] for s in shas))})")


if __name__ == "__main__":
    main()
