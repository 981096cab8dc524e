"""Benchmark: the claims of *Resizable Neural Networks* side by side, on the built-in synthetic set (or any
ImageFolder with --data), with small models and few epochs.

    python bench/resizable_bench.py                 # resnet18 ×0.25 at 48 px, ≈10–15 min on 2 cores
    python bench/resizable_bench.py --quick         # tiny_cnn, seconds: a smoke run (no RESULTS.md section)
    python bench/resizable_bench.py --data /data/imagenette --resolution 64 --epochs 20

Tables:
0. training cost per iteration: a resizable step (K fairly sampled configurations at one resolution, Algorithm 1)
   vs an RS-Net step at K resolutions — the same number of sub-networks per iteration (medians, interleaved).
(a) Table 1: resizable sub-networks vs individually trained networks at equal MACs. An individually trained network
   of a configuration C is the *same architecture* (same stage resizes, so exactly the same MACs) trained on C alone:
   `--method resizable --switch-at-epoch 0 --target-config R:C` (for the full configuration: `--scales 1`, which is
   the same thing and doubles as the control of (c)). Same epochs, data, lr and seed as the resizable network.
(b) Fig. 2: the configuration front of the resizable network (`resflex search`, every configuration) vs the
   input-resolution front of an RS-Net trained at --rs-resolutions (plot: front_vs_rsnet.png in --out).
(c) Appendix B.1: the network trained at scale 1 only, run with resized stages (its one BN reused for every factor
   — `set_config` refuses untrained factors, so the bench copies the factor-1 BN into a model that has the others).
(d) Resizable-Adapt vs NAS: the ResizeLearner (`resflex adapt`, every configuration a candidate; the search front
   when there are more than 256) against the best static configuration at the same or lower mean MACs (the budget
   is the midpoint of the cheapest and the full configuration's MACs).
(e) Resizable-Aug: the target network trained alone vs resizable training switched to the target half-way (same
   epochs), next to the resizable sub-network as is and fine-tuned (§3.3, `train --finetune`).

Learning rate: a resizable or RS-Net iteration sums the losses of its K sub-networks (Algorithm 1 accumulates their
gradients), so with one --lr for every run its steps are K times larger; `--multi-lr scaled` (default) divides --lr
by K for those runs (`same` keeps it). Numbers from a few epochs on a small synthetic set — read them as a check of
the machinery and the direction of each claim, not as the paper's ImageNet results.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch

from results import recorded  # bench/results.py
from train_bench import interleaved_times, sgd_iteration
from resflex.cli.main import parse_resolutions, parse_scales
from resflex.mobile.adapt import MAX_ENUMERATED, AdaptConfig, config_macs, format_config, format_macs, format_report, train_adapt
from resflex.mobile.checkpoint import load_checkpoint
from resflex.mobile.evaluate import evaluate
from resflex.mobile.layers import ScaleAwareBatchNorm2d
from resflex.mobile.losses import create_loss
from resflex.mobile.models import create_model
from resflex.mobile.train import MultiResolutionStep, ResizableStep, TrainConfig, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic", help="'synthetic' or an ImageFolder root with train/ and val/")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--resolution", type=int, default=48, help="input resolution of the resizable network")
    p.add_argument("--stem-stride", type=int, default=2, choices=(1, 2),
                   help="stride of the first conv (2, the papers' stem, keeps the bench within ~15 min on 2 cores)")
    p.add_argument("--rs-resolutions", type=parse_resolutions, default=(48, 40, 32, 24),
                   help="training resolutions of the RS-Net of (b)")
    p.add_argument("--scales", type=parse_scales, default=(1.0, 0.75, 0.5))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="of the single-network runs; see --multi-lr")
    p.add_argument("--multi-lr", choices=("scaled", "same"), default="scaled",
                   help="runs with K sub-networks per iteration (resizable, RS-Net, Resizable-Aug) sum K losses: "
                        "'scaled' divides --lr by K so every run takes steps of the same size, 'same' keeps --lr")
    p.add_argument("--train-samples", type=int, default=1500, help="synthetic data only")
    p.add_argument("--val-samples", type=int, default=500, help="images per accuracy (synthetic: the split's first)")
    p.add_argument("--adapt-samples", type=int, default=1000, help="training images the ResizeLearner learns on")
    p.add_argument("--step-repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: on a shared 2-core machine more threads oversubscribe it)")
    p.add_argument("--out", default="runs/resizable_bench")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny_cnn, 1 epoch, a few hundred images (seconds; not recorded)")
    p.add_argument("--skip-training", action="store_true", help="reuse checkpoints already in --out")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.arch, args.width, args.resolution, args.rs_resolutions, args.stem_stride = "tiny_cnn", 0.5, 32, (32, 24), 1
        args.epochs, args.batch_size, args.train_samples, args.val_samples = 1, 32, 128, 64
        args.adapt_samples, args.step_repeats, args.record = 64, 1, False
    return args


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


class Bench:
    def __init__(self, args):
        self.args, self.out = args, Path(args.out)
        self.r = args.resolution
        self.class_names = None

    # ------------------------------------------------------------------ training and measuring

    def train(self, name: str, **kw) -> Path:
        a = self.args
        settings = dict(data=a.data, arch=a.arch, method="resizable", resolutions=(self.r,), width=a.width,
                        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, scales=a.scales, seed=a.seed,
                        train_samples=a.train_samples, val_samples=a.val_samples, workers=a.workers,
                        stem_stride=a.stem_stride, out=str(self.out / name), overwrite=True, progress=False,
                        device="cpu")
        settings.update(kw)
        if settings["method"] != "resizable":
            settings.pop("scales")
        if a.multi_lr == "scaled" and "lr" not in kw:
            subnets = len(settings["resolutions"]) * (len(settings.get("scales") or ()) or 1)
            if settings.get("switch_at_epoch") == 0 or settings.get("finetune"):
                subnets = 1  # one configuration per iteration
            settings["lr"] = a.lr / subnets
        config = TrainConfig(**settings)
        if not (a.skip_training and config.checkpoint_path.exists()):
            t0 = time.perf_counter()
            print(f"training {name} ...", end=" ", flush=True)
            train(config)
            print(f"{time.perf_counter() - t0:.0f} s", flush=True)
        return config.checkpoint_path

    def top1(self, model, resolution: int, stage_scales=None) -> float:
        a = self.args
        if stage_scales is not None:
            model.set_config(resolution, stage_scales)
        return evaluate(model, a.data, [resolution], batch_size=256, workers=a.workers, seed=a.seed,
                        length=a.val_samples, class_names=self.class_names)[resolution]

    # ------------------------------------------------------------------ tables

    def step_times(self) -> str:
        """Median wall time of one training iteration with K sub-networks: resizable (K configurations at one
        resolution) vs RS-Net (K resolutions), same batch, interleaved."""
        a = self.args
        k = len(a.scales)
        rs_res = tuple(sorted(a.rs_resolutions, reverse=True)[:k])
        torch.manual_seed(0)
        images, target = torch.randn(a.batch_size, 3, self.r, self.r), torch.randint(0, 10, (a.batch_size,))

        def make(method, res, distill):
            model = create_model(a.arch, method, res, a.width, 10, scales=a.scales if method == "resizable" else None,
                                 stem_stride=a.stem_stride).train()
            loss = create_loss(method, len(res), distill)
            step = ResizableStep(model, loss, distill) if method == "resizable" else MultiResolutionStep(model, loss)
            return sgd_iteration(step, model.parameters(), images, target, max(res))

        n = len(rs_res)
        rs = f"RS-Net: {n} resolutions {','.join(map(str, rs_res))}"
        kinds = {f"resizable: {k} configurations at {self.r} px (fair sampling)": [make("resizable", (self.r,), False)],
                 f"{rs}, CE only": [make("rsnet", rs_res, False)],
                 f"{rs}, MRED": [make("rsnet", rs_res, True)]}
        subnets = {name: k if name.startswith("resizable") else n for name in kinds}
        times = interleaved_times(kinds, a.step_repeats)
        base = statistics.median(next(iter(times.values())))
        lines = [f"batch {a.batch_size}, {a.step_repeats} repeats, {torch.get_num_threads()} threads", "",
                 "| iteration | sub-networks | median ms | ratio vs resizable |", "|---|---:|---:|---:|"]
        for name, ts in times.items():
            lines.append(f"| {name} | {subnets[name]} | {1000 * statistics.median(ts):.1f} | {statistics.median(ts) / base:.2f} |")
        return "\n".join(lines)

    def table_configs(self, num_stages: int) -> list[tuple[float, ...]]:
        """≥ 4 configurations spanning the MACs range: full, uniform at each other factor, and a mixed one
        (small early stages, full late ones — the shape the paper's searches favour)."""
        scales = sorted(self.args.scales, reverse=True)
        uniform = [(s,) * num_stages for s in scales]
        half = num_stages // 2 or 1
        mixed = [(scales[-1],) * half + (scales[0],) * (num_stages - half),
                 (scales[0],) * half + (scales[-1],) * (num_stages - half)]
        return list(dict.fromkeys(uniform + mixed))

    def run(self) -> None:
        a = self.args
        self.out.mkdir(parents=True, exist_ok=True)
        print(f"# resizable_bench: {a.arch} ×{a.width} (stem stride {a.stem_stride}) at {self.r} px, scales {list(a.scales)}, {a.epochs} epochs, "
              f"{a.data} ({a.train_samples if a.data == 'synthetic' else 'all'} train / {a.val_samples} val images), "
              f"batch {a.batch_size}, lr {a.lr} ({'÷ sub-networks per iteration' if a.multi_lr == 'scaled' else 'as is'}"
              f" for multi-sub-network runs), seed {a.seed}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads\n")
        t_start = time.perf_counter()
        print("## Training cost per iteration, same number of sub-networks\n")
        print(self.step_times(), "\n", flush=True)

        resizable = self.train("resizable")
        model, payload = load_checkpoint(resizable)
        self.class_names = payload["class_names"]
        stages = model.num_stages
        configs = self.table_configs(stages)
        full = (max(a.scales),) * stages
        target = configs[-2]  # the mixed "small early stages" configuration: Resizable-Aug's target network
        inets = {full: self.train("inet_full", scales=(max(a.scales),))}
        for c in configs:
            if c != full:
                inets[c] = self.train("inet_" + "_".join(f"{s:g}" for s in c), switch_at_epoch=0,
                                      target_config=format_config((self.r, c)))
        rsnet = self.train("rsnet", method="rsnet", resolutions=a.rs_resolutions)
        aug = self.train("aug", switch_at_epoch=a.epochs // 2, target_config=format_config((self.r, target)))
        finetuned = self.train("finetune", finetune=str(resizable), epochs=max(1, a.epochs // 3),
                               target_config=format_config((self.r, target)), lr=a.lr / 5, warmup_epochs=0.0)

        # (a) Table 1
        macs = dict(zip(configs, config_macs(model, [(self.r, c) for c in configs])))
        rows = ["| configuration | MMACs | resizable sub-network | individually trained | Δ (pt) |",
                "|---|---:|---:|---:|---:|"]
        sub, ind = {}, {}
        for c in configs:
            sub[c] = self.top1(model, self.r, c)
            inet, _ = load_checkpoint(inets[c])
            ind[c] = self.top1(inet, self.r, c if inet.config.scales != (max(a.scales),) else None)
            rows.append(f"| {format_config((self.r, c))} | {macs[c] / 1e6:.3f} | {pct(sub[c])} | {pct(ind[c])} | "
                        f"{100 * (sub[c] - ind[c]):+.1f} |")
        wins = sum(sub[c] >= ind[c] for c in configs)
        print(f"## (a) Table 1: resizable sub-networks vs individually trained networks at equal MACs "
              f"(top-1 %, {a.data} val)\n")
        print("\n".join(rows))
        print(f"\nresizable ≥ individually trained in {wins} of {len(configs)} configurations; one resizable run "
              f"replaces {len(configs)} trainings (and serves {len(a.scales) ** stages} configurations).\n", flush=True)

        # (b) configuration front vs RS-Net front
        print("## (b) Configuration front (resizable, one input resolution) vs input-resolution front (RS-Net)\n")
        print(self.fronts(resizable, model, rsnet), "\n", flush=True)

        # (c) Appendix B.1
        print("## (c) Appendix B.1: a network trained at scale 1 only, run with resized stages\n")
        naive = self.single_scale_resized(inets[full])
        rows = ["| configuration | MMACs | trained at scale 1, resized naively | resizable sub-network |",
                "|---|---:|---:|---:|"]
        drops = []
        for c in configs:
            acc = self.top1(naive, self.r, c)
            if c != full:
                drops.append(ind[full] - acc)
            rows.append(f"| {format_config((self.r, c))} | {macs[c] / 1e6:.3f} | {pct(acc)} | {pct(sub[c])} |")
        print("\n".join(rows))
        print(f"\nnaive resizing loses {100 * min(drops):.1f}–{100 * max(drops):.1f} pt against the scale-1 network's own "
              f"{pct(ind[full])} %\n", flush=True)

        # (d) Resizable-Adapt vs NAS
        cheap, top = min(config_macs(model, [(self.r, (min(a.scales),) * stages)])), macs[full]
        budget = (cheap + top) // 2
        print(f"## (d) Resizable-Adapt vs the best static configuration (NAS) at equal mean MACs\n")
        candidates = None if len(a.scales) ** stages <= MAX_ENUMERATED else self.search_out  # else: the search front
        result = train_adapt(AdaptConfig(str(resizable), str(self.out / "adapt"), budget,
                                         configs=None if candidates is None else str(candidates), data=a.data,
                                         samples=a.adapt_samples, val_samples=a.val_samples, seed=a.seed,
                                         workers=a.workers, overwrite=True, progress=False))
        print(f"candidates: {'the search front (configs.json)' if candidates else 'every configuration'}; learner "
              f"trained on {sum(result.train_target_share)} training images\n")
        print(format_report(result.report))
        rep = result.report
        if rep.best_static is not None:
            print(f"\nAdapt − best static at ≤ its mean MACs: {100 * (rep.top1 - rep.static_top1[rep.best_static]):+.1f} pt "
                  f"({format_macs(rep.mean_macs)} vs {format_macs(rep.macs[rep.best_static])} MACs)")
        print(flush=True)

        # (e) Resizable-Aug
        print(f"## (e) Resizable-Aug for the target network {format_config((self.r, target))} "
              f"({macs[target] / 1e6:.3f} MMACs)\n")
        aug_model, _ = load_checkpoint(aug)
        ft_model, _ = load_checkpoint(finetuned)
        rows = ["| training | epochs | top-1 % |", "|---|---|---:|",
                f"| target trained alone (baseline) | {a.epochs} | {pct(ind[target])} |",
                f"| resizable, then switched to the target (Resizable-Aug) | {a.epochs // 2} + "
                f"{a.epochs - a.epochs // 2} | {pct(self.top1(aug_model, self.r, target))} |",
                f"| resizable sub-network as is | {a.epochs} | {pct(sub[target])} |",
                f"| resizable + fine-tuned target (§3.3) | {a.epochs} + {max(1, a.epochs // 3)} | "
                f"{pct(self.top1(ft_model, self.r, target))} |"]
        print("\n".join(rows), "\n")
        print(f"bench wall time {time.perf_counter() - t_start:.0f} s")

    @property
    def search_out(self) -> Path:
        return self.out / "search"

    def fronts(self, resizable: Path, model, rsnet: Path) -> str:
        a = self.args
        try:
            from resflex.mobile.search import SearchConfig, search
        except ImportError:
            search = None
        if search is not None:
            result = search(SearchConfig(str(resizable), str(self.search_out), data=a.data, samples=a.val_samples,
                                         seed=a.seed, workers=a.workers, overwrite=True, progress=False))
            points = [(p.macs, p.top1, (p.resolution, tuple(p.stage_scales))) for p in result.evaluated]
            how = f"`resflex search`: {len(points)} configurations measured, front in {self.search_out}/configs.json"
        else:  # enumerate every configuration with eval
            configs = [(self.r, c) for c in itertools.product(a.scales, repeat=model.num_stages)]
            points = [(m, self.top1(model, r, c), (r, c)) for (r, c), m in zip(configs, config_macs(model, configs))]
            how = f"mobile/search.py not available: {len(points)} configurations enumerated with evaluate"
        front, best = [], -1.0
        for p in sorted(points, key=lambda p: (p[0], -p[1])):
            if p[1] > best:
                front.append(p)
                best = p[1]
        rs, _ = load_checkpoint(rsnet)
        rs_points = [(m, self.top1(rs, r), r) for r, m in
                     zip(rs.config.resolutions, [config_macs(rs, [(r, ())])[0] for r in rs.config.resolutions])]
        lines = [how, "", "| MMACs | configuration front | top-1 % | best RS-Net point ≤ those MACs | top-1 % |",
                 "|---:|---|---:|---|---:|"]
        for m, acc, cfg in front:
            under = [p for p in rs_points if p[0] <= m]
            rs_best = max(under, key=lambda p: p[1]) if under else None
            lines.append(f"| {m / 1e6:.3f} | {format_config(cfg)} | {pct(acc)} | "
                         + (f"{rs_best[2]} px ({rs_best[0] / 1e6:.3f} MMACs) | {pct(rs_best[1])} |" if rs_best
                            else "none that cheap | - |"))
        lines += ["", "RS-Net points: " + ", ".join(f"{r} px {m / 1e6:.3f} MMACs {pct(acc)} %"
                                                    for m, acc, r in sorted(rs_points))]
        dominated = sum(any(f[0] <= m and f[1] >= acc for f in front) for m, acc, _ in rs_points)
        lines.append(f"RS-Net points matched or beaten by a configuration at ≤ their MACs: {dominated} of "
                     f"{len(rs_points)}")
        self.plot_fronts(points, front, rs_points)
        return "\n".join(lines)

    def plot_fronts(self, points, front, rs_points) -> None:
        try:
            import matplotlib
            from matplotlib.figure import Figure
        except ImportError:
            return
        from resflex.mobile.plotting import plot_style

        with matplotlib.rc_context(plot_style(font_size=10, dpi=110)):
            fig = Figure(figsize=(6.4, 4.2))
            ax = fig.add_subplot()
            ax.scatter([p[0] / 1e6 for p in points], [100 * p[1] for p in points], s=10, color="0.7",
                       label=f"configurations ({len(points)})")
            ax.plot([p[0] / 1e6 for p in front], [100 * p[1] for p in front], "o-", color="C0",
                    label="configuration front (resizable)")
            rs = sorted(rs_points)
            ax.plot([p[0] / 1e6 for p in rs], [100 * p[1] for p in rs], "s--", color="C1",
                    label="input-resolution front (RS-Net)")
            ax.set_xlabel("MMACs")
            ax.set_ylabel("top-1 (%)")
            ax.set_title(f"{self.args.arch}: configuration front vs RS-Net")
            ax.legend(loc="lower right", fontsize=8)
            fig.tight_layout()
            fig.savefig(self.out / "front_vs_rsnet.png", format="png")

    def single_scale_resized(self, path: Path):
        """The scale-1 network in a model that has every factor, each factor's BN a copy of the trained one."""
        single, _ = load_checkpoint(path)
        c = single.config
        model = create_model(c.arch, "resizable", c.resolutions, c.width, c.num_classes, c.meta_hidden,
                             self.args.scales, c.stem_stride)
        src = dict(single.named_modules())
        for name, m in model.named_modules():
            if isinstance(m, ScaleAwareBatchNorm2d):
                for s in m.scales:
                    m.at_scale(s).load_state_dict(src[name].at_scale(max(c.scales)).state_dict())
        rest = {k: v for k, v in single.state_dict().items() if ".per_scale." not in k}
        missing, unexpected = model.load_state_dict(rest, strict=False)
        assert not unexpected and all(".per_scale." in k for k in missing), (missing, unexpected)
        model.preprocessing = single.preprocessing
        return model.eval()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with recorded("resizable_bench", args.record, argv):
        Bench(args).run()


if __name__ == "__main__":
    main()
