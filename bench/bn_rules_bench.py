"""Exploration (issue 25 item 4): candidate data-free BN rules at unseen resolutions, beside `nearest` and
`recalibrate`, on one trained checkpoint. The candidates that are not `BNMode`s are patched into
`SwitchableBatchNorm2d.parameters_at` for this process only; `train_bench.py` measures the shipped modes.

    python bench/bn_rules_bench.py CHECKPOINT DATA 31,30,29 [--val 1000] [--rules res,map,stats_only,lower,upper]

Rules (between the neighbouring training resolutions lo < T < hi): res — everything lerped by T's position;
map — by each layer's map size (`interpolate`); map_logvar — same, variance lerped in log space; snap — per layer the
neighbour whose map size is nearer; stats_only — nearest γ, β with map-lerped statistics; affine_only — the reverse;
lower / upper — the whole BN set of lo / hi.
"""

from __future__ import annotations

import argparse

import torch

from resflex.mobile.checkpoint import load_checkpoint
from resflex.mobile.evaluate import eval_loader, evaluate, first_images
from resflex.mobile.layers import BNMode, SwitchableBatchNorm2d, neighbours

SHIPPED = SwitchableBatchNorm2d.parameters_at
RULES = ("res", "map", "map_logvar", "snap", "stats_only", "affine_only", "lower", "upper")


def candidate(rule: str):
    """A `parameters_at` that serves `rule` in place of interpolate."""
    def parameters_at(self, resolution, mode=BNMode.INTERPOLATE):
        if resolution in self.resolutions or mode is not BNMode.INTERPOLATE or rule == "map":
            return SHIPPED(self, resolution, mode)
        lo, hi, t_res = neighbours(self.resolutions, resolution)
        a, b = self.bn_at(lo), self.bn_at(hi)
        t = t_res if rule == "res" else self.interpolation_weight(resolution, lo, hi, t_res)
        near = b if t_res >= 0.5 else a
        if rule in ("lower", "upper"):
            n = a if rule == "lower" else b
            return n.weight, n.bias, n.running_mean, n.running_var
        if rule == "snap":
            n = b if t >= 0.5 else a
            return n.weight, n.bias, n.running_mean, n.running_var
        mix = lambda p, q: torch.lerp(p, q, float(t))  # noqa: E731
        if rule == "stats_only":
            return near.weight, near.bias, mix(a.running_mean, b.running_mean), mix(a.running_var, b.running_var)
        if rule == "affine_only":
            return mix(a.weight, b.weight), mix(a.bias, b.bias), near.running_mean, near.running_var
        var = (torch.exp(mix(torch.log(a.running_var + self.eps), torch.log(b.running_var + self.eps))) - self.eps
               if rule == "map_logvar" else mix(a.running_var, b.running_var))
        return mix(a.weight, b.weight), mix(a.bias, b.bias), mix(a.running_mean, b.running_mean), var
    return parameters_at


@torch.no_grad()
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("resolutions", type=lambda t: [int(x) for x in t.split(",")])
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--rules", type=lambda t: t.split(","), default=list(RULES))
    args = p.parse_args(argv)
    model, payload = load_checkpoint(args.checkpoint)
    model.eval()
    names = payload["class_names"]
    print("| T | nearest | " + " | ".join(args.rules) + " | recalibrate |")
    print("|---" + "|---:" * (len(args.rules) + 2) + "|")
    for r in args.resolutions:
        val = list(first_images(eval_loader(model, args.data, "val", r, 256, length=args.val, class_names=names),
                                args.val))

        def top1(mode) -> float:
            with model.at_resolution(r, mode):
                hits = sum((model(model.preprocessing.normalize(x)).argmax(1) == y).sum().item() for x, y in val)
            return 100 * hits / sum(len(y) for _, y in val)

        row = [top1("nearest")]
        for rule in args.rules:
            SwitchableBatchNorm2d.parameters_at = candidate(rule)
            try:
                row.append(top1("interpolate"))
            finally:
                SwitchableBatchNorm2d.parameters_at = SHIPPED
        row.append(100 * evaluate(model, args.data, [r], "recalibrate", batch_size=256, length=args.val,
                                  class_names=names)[r])
        print(f"| {r} | " + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
