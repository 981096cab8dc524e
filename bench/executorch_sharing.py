"""Benchmark: what sharing the weights of K resolutions in one ExecuTorch .pte costs, in bytes and in host latency.

    python bench/executorch_sharing.py                         # MobileNetV2 ×0.35, 224…96, fp32 and int8
    python bench/executorch_sharing.py --widths 0.35 1.0 --runs 40 --out /tmp/et_bench

For each width and precision it exports (with `ExecuTorchBackend`, XNNPACK):
- `folded`: one single-resolution .pte per resolution from `bake(bn="fold")` (what K separately shipped models
  would be; its largest resolution is the size baseline);
- `style, 1 res`: the largest resolution alone, baked with the backend's `bn_style` (the sharing layout);
- `K res`: every resolution in one multi-method .pte (the shipped artifact).
Sizes are file bytes. Latency is the per-resolution median over `--runs` interleaved runs (after warm-up, one
XNNPACK thread, batch 1) of the multi-method file's `forward_{r}` and the folded single-resolution file; it is
given as wall time and as the calling thread's CPU time (the latter is robust to other processes on the machine).

The model is an untrained RS-Net MobileNetV2 whose private BNs get random, different statistics per resolution (a
few γ negative, with the same sign at every resolution as in trained models), so the methods really differ.
Calibration uses random normal images: only sizes and speed are measured here, accuracy is checked elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from results import recorded  # bench/results.py
from resflex.convert.backends.executorch import ExecuTorchBackend, executorch_versions
from resflex.convert.bake import bake
from resflex.convert.runtimes import ExecuTorchRuntime
from resflex.cli.main import parse_resolutions
from resflex.mobile.layers import randomize_private_bn
from resflex.mobile.models import create_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mobilenet_v2")
    p.add_argument("--widths", type=float, nargs="+", default=[0.35])
    p.add_argument("--resolutions", type=parse_resolutions, default=(224, 192, 160, 128, 96))
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=list(ExecuTorchBackend.precisions))
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--calib", type=int, default=8, help="calibration images per resolution (int8)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per method (medians reported)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--size-budget", type=float, default=None,
                   help="fp32 --sharing auto with this --size-budget (default: the backend's default sharing)")
    p.add_argument("--out", default=None, help="where the .pte files go (default: a temporary directory)")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    return p.parse_args(argv)


def export_all(be: ExecuTorchBackend, model, precision: str, resolutions, calib, out: Path) -> dict:
    """Every artifact the comparison needs; returns paths and export seconds."""
    style = {r: bake(model, r, bn=be.bn_style) for r in resolutions}
    largest = max(resolutions)
    t0 = time.perf_counter()
    shared = be.export(style, precision, calib, out / "shared")
    seconds = time.perf_counter() - t0
    one = be.export({largest: style[largest]}, precision, calib, out / "style1")
    folded = {r: be.export({r: bake(model, r, bn="fold")}, precision, calib, out / f"folded{r}") for r in resolutions}
    return {
        "shared": (out / "shared" / shared.files[0], shared),
        "style1": out / "style1" / one.files[0],
        "folded": {r: (out / f"folded{r}" / e.files[0], e) for r, e in folded.items()},
        "seconds": seconds,
        "notes": shared.notes,
    }


def latency(artifacts: dict, resolutions, runs: int, warmup: int) -> dict:
    """Median wall and thread-CPU milliseconds per (variant, resolution), interleaving all methods."""
    shared_path, shared = artifacts["shared"]
    runners = {"shared": ExecuTorchRuntime(shared_path)}
    jobs = []
    for entry in shared.entries:
        path, folded = artifacts["folded"][entry.resolution]
        runners[path] = ExecuTorchRuntime(path)
        x = torch.randn(1, 3, entry.resolution, entry.resolution)
        jobs.append(("shared", entry.resolution, runners["shared"].method(entry.name), x))
        jobs.append(("folded", entry.resolution, runners[path].method(folded.entries[0].name), x))
    wall = {(v, r): [] for v, r, _, _ in jobs}
    cpu = {(v, r): [] for v, r, _, _ in jobs}
    for i in range(warmup + runs):
        for variant, r, method, x in jobs:
            w, c = time.perf_counter(), time.thread_time()
            method.execute([x])
            if i >= warmup:
                cpu[variant, r].append(time.thread_time() - c)
                wall[variant, r].append(time.perf_counter() - w)
    med = lambda xs: 1e3 * statistics.median(xs)  # noqa: E731
    return {k: (med(wall[k]), med(cpu[k])) for k in wall}


def one_thread() -> None:
    torch.set_num_threads(1)
    try:  # ExecuTorch's XNNPACK threadpool defaults to the core count
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(1)
    except (ImportError, AttributeError):
        pass


def main(argv=None) -> None:
    args = parse_args(argv)
    with recorded("executorch_sharing", args.record):
        return _run(args)


def _run(args) -> None:
    one_thread()
    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="et_sharing_"))
    print(f"versions: {executorch_versions()}; .pte files under {out_root}\n")
    size_rows, latency_rows = [], []
    be = ExecuTorchBackend() if args.size_budget is None else ExecuTorchBackend(sharing="auto",
                                                                               size_budget=args.size_budget)
    print(f"sharing = {be.sharing}, size_budget = {be.size_budget}")
    k = len(args.resolutions)
    for width in args.widths:
        model = randomize_private_bn(create_model(args.arch, "rsnet", args.resolutions, width=width,
                                                  num_classes=args.num_classes))
        g = torch.Generator().manual_seed(1)
        calib = {r: torch.randn(args.calib, 3, r, r, generator=g) for r in args.resolutions}
        for precision in args.precisions:
            t0 = time.perf_counter()
            art = export_all(be, model, precision, args.resolutions, calib, out_root / f"w{width}" / precision)
            folded1 = art["folded"][max(args.resolutions)][0].stat().st_size
            style1 = art["style1"].stat().st_size
            shared = art["shared"][0].stat().st_size
            folded_all = sum(p.stat().st_size for p, _ in art["folded"].values())
            size_rows.append(f"| {width} | {precision} | {folded1 / 1e6:.3f} | {style1 / 1e6:.3f} | "
                             f"{shared / 1e6:.3f} | **{shared / folded1:.3f}×** | {shared / style1:.3f}× | "
                             f"{folded_all / 1e6:.3f} ({folded_all / folded1:.2f}×) | {art['seconds']:.0f} s |")
            lat = latency(art, args.resolutions, args.runs, args.warmup)
            for r in args.resolutions:
                (sw, sc), (fw, fc) = lat["shared", r], lat["folded", r]
                latency_rows.append(f"| {width} | {precision} | {r} | {fw:.2f} | {sw:.2f} | {sw / fw:.3f}× | "
                                    f"{fc:.2f} | {sc:.2f} | **{sc / fc:.3f}×** |")
            print(f"width {width} {precision}: done in {time.perf_counter() - t0:.0f} s ({art['notes']})", flush=True)

    print(f"\n### Size (MB; {args.arch}, {k} resolutions {', '.join(map(str, args.resolutions))})\n")
    print(f"| width | precision | 1 res folded | 1 res `{ExecuTorchBackend.bn_style}` | {k} res shared | "
          f"ratio vs folded | ratio vs 1 res `{ExecuTorchBackend.bn_style}` | {k} folded files | export {k} res |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(size_rows))
    print(f"\n### Host latency per resolution (ms, median of {args.runs} interleaved runs, 1 thread, batch 1)\n")
    print("| width | precision | res | folded 1-res wall | shared wall | ratio wall | folded 1-res CPU | shared CPU "
          "| ratio CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(latency_rows))


if __name__ == "__main__":
    main()
