"""Resizable-NAS (Resizable Neural Networks §3.3): enumerate a resizable checkpoint's spatial configurations, measure
each one's accuracy, MACs and (given a bundle's latency model) predicted latency, and keep the Pareto front.

    result = search(SearchConfig("runs/r/checkpoint.pt", out="runs/r/search"))

A configuration is one training resolution × one trained factor per stage. The space has R · S^K of them (R
resolutions, S factors, K stages); when that exceeds `max_configs`, the full configuration at every resolution is
always measured and `max_configs − R` others are drawn uniformly without replacement with `seed` (the count and the
seed are stated in `configs.json`). Accuracy is top-1 on the first `samples` validation images. No BN recalibration
is needed: the resizable model holds a private BN per (resolution, factor) pair, trained for exactly these
configurations (`resflex.mobile.layers.stage_resize`). MACs are `count_macs` on the model in that configuration.
Latency, with `bundle` and `device`, is that device's fitted line `intercept + slope · GMACs` (`LatencyModel` in the
bundle's lut.json, fitted by `resflex profile`), so the front is taken over latency instead of MACs.

Writes into `out`, atomically (an interrupted search leaves nothing): `configs.json` (the front, a versioned
`resflex.configs` document carrying the checkpoint's sha256 and arch, read by `resflex convert --configs`),
`search.csv` (every configuration measured) and `front.png` (the configuration front against the
input-resolution-only front, i.e. every stage at the largest factor).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import random
import re
from pathlib import Path

import torch
from tqdm import tqdm

from .bundle import schema
from .bundle.io import LUT_FILE, output_folder, sha256_of
from .checkpoint import atomic_write, load_checkpoint
from .evaluate import eval_loader, first_images
from .layers import check_stage_scales
from .macs import count_macs
from .models import MultiResolutionNet
from .plotting import plot_style, require_matplotlib

CONFIGS_FILE = "configs.json"
COSTS = ("macs", "latency_ms")


# --------------------------------------------------------------------------- the configs.json document


@dataclasses.dataclass(frozen=True)
class SpatialConfig:
    """One measured configuration: a training resolution and one trained factor per stage."""

    resolution: int
    stage_scales: list[float]
    top1: float
    macs: int
    latency_ms: float | None = None  # predicted by the device's latency model; None without one

    def __post_init__(self):
        if self.resolution < 1:
            raise ValueError(f"resolution: {self.resolution} is not a positive number of pixels")
        for s in self.stage_scales:
            if not 0 < s <= 1:
                raise ValueError(f"stage_scales: factor {s!r} in {self.stage_scales}: expected a factor in (0, 1]")
        if not 0 <= self.top1 <= 1:
            raise ValueError(f"top1: {self.top1!r} is not a fraction in [0, 1]")
        if self.macs < 1 or (self.latency_ms is not None and not self.latency_ms > 0):
            raise ValueError(f"macs {self.macs} / latency_ms {self.latency_ms}: expected positive values")

    @property
    def key(self) -> tuple:
        return (self.resolution, tuple(self.stage_scales))


@dataclasses.dataclass(frozen=True)
class Configs:
    """`configs.json`: the Pareto front of one resizable checkpoint (its operating points, cheapest first)."""

    arch: str
    method: str
    checkpoint_sha256: str  # of the checkpoint file searched; `convert --configs` refuses another checkpoint
    scales: list[float]  # the trained factors
    num_stages: int
    train_resolutions: list[int]
    cost: str  # what the front minimises: "macs" or "latency_ms"
    operating_points: list[SpatialConfig]
    data: schema.DataIdentity  # where top-1 was measured
    space: int  # configurations in the space (R · S^K)
    evaluated: int  # configurations measured (all, or the sample)
    seed: int  # of the sample (unused when every configuration was measured)
    device: str | None = None  # the device whose latency model predicted latency_ms
    latency_model: schema.LatencyModel | None = None
    kind: str = "resflex.configs"
    schema_version: str = "1.0"

    def __post_init__(self):
        if not re.fullmatch(schema.SHA256, self.checkpoint_sha256):
            raise ValueError(f"checkpoint_sha256: {self.checkpoint_sha256!r} is not a sha256 hex digest")
        if self.cost not in COSTS:
            raise ValueError(f"cost: {self.cost!r}, expected one of {', '.join(COSTS)}")
        if not self.operating_points:
            raise ValueError("operating_points: expected at least one configuration")
        seen = set()
        for i, p in enumerate(self.operating_points):
            if len(p.stage_scales) != self.num_stages:
                raise ValueError(f"operating_points[{i}].stage_scales {p.stage_scales}: expected {self.num_stages} "
                                 "factors, one per stage")
            if p.key in seen:
                raise ValueError(f"operating_points[{i}]: configuration {p.key} is listed twice")
            seen.add(p.key)


def write_configs(doc: Configs, path: str | Path) -> Path:
    """Validate `doc` and write it to `path` atomically (its folder is created)."""
    return atomic_write(path, lambda tmp: schema.write_json(doc, tmp))


def read_configs(path: str | Path) -> Configs:
    """A `configs.json`, or the folder holding one (`resflex search --out`); SchemaError names the file and field."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIGS_FILE
    return schema.read_json(Configs, path)


def check_configs_for(doc: Configs, model: MultiResolutionNet, checkpoint_sha256: str, source: str) -> list[tuple]:
    """The configurations of `doc` as (resolution, stage_scales) checked against the model they are for: a file
    searched on another checkpoint or arch, a resolution it was not trained at or a factor it did not train →
    ValueError naming the value."""
    if doc.arch != model.config.arch or doc.checkpoint_sha256 != checkpoint_sha256:
        raise ValueError(f"{source}: searched on another model (arch {doc.arch}, checkpoint sha256 "
                         f"{doc.checkpoint_sha256[:12]}…); this checkpoint is arch {model.config.arch}, sha256 "
                         f"{checkpoint_sha256[:12]}… — run `resflex search` on this checkpoint")
    out = []
    for i, p in enumerate(doc.operating_points):
        where = f"{source}: operating_points[{i}]"
        if p.resolution not in model.config.resolutions:
            raise ValueError(f"{where}.resolution {p.resolution} was not trained; training resolutions: "
                             f"{list(model.config.resolutions)}")
        try:
            scales = check_stage_scales(p.stage_scales, model.config.scales, model.num_stages,
                                        f"{model.config.arch} ({model.num_stages} stages)")
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        out.append((p.resolution, scales))
    return out


# --------------------------------------------------------------------------- the search


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    checkpoint: str
    out: str
    data: str = "synthetic"  # 'synthetic' or an ImageFolder root; its val split measures top-1
    samples: int = 500  # validation images per configuration
    max_configs: int = 256  # measure every configuration up to this many, else a seeded sample of this many
    seed: int = 0  # synthetic data seed and the sample's seed
    bundle: str | None = None  # a bundle whose lut.json holds the device's latency model
    device: str | None = None  # device id in that lut.json (default: its only device)
    runtime: str | None = None  # pick the latency model of this runtime (default: the only one, or see below)
    precision: str | None = None  # … and of this precision
    batch_size: int = 128
    workers: int = 0
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.samples < 1 or self.max_configs < 1 or self.batch_size < 1:
            raise ValueError(f"samples {self.samples}, max_configs {self.max_configs}, batch_size {self.batch_size}: "
                             "expected integers ≥ 1")
        if self.device is not None and self.bundle is None:
            raise ValueError(f"device {self.device!r}: a device's latency model comes from a bundle; pass --bundle")


@dataclasses.dataclass
class SearchResult:
    out: Path
    configs: Configs
    evaluated: list[SpatialConfig]  # every configuration measured
    front: list[SpatialConfig]
    resolution_front: list[SpatialConfig]  # the front of the input-resolution-only configurations


def configuration_space(resolutions, scales, num_stages: int) -> int:
    return len(resolutions) * len(scales) ** num_stages


def enumerate_configurations(resolutions, scales, num_stages: int, max_configs: int, seed: int = 0) -> list[tuple]:
    """(resolution, stage_scales) pairs: every one when the space holds at most `max_configs`, else the full
    configuration at every resolution plus `max_configs − R` others drawn without replacement with `seed`."""
    per_res = len(scales) ** num_stages
    total = len(resolutions) * per_res

    def decode(i: int) -> tuple:
        r, rest = divmod(i, per_res)
        digits = []
        for _ in range(num_stages):
            rest, d = divmod(rest, len(scales))
            digits.append(scales[d])
        return resolutions[r], tuple(reversed(digits))

    if total <= max_configs:
        return [decode(i) for i in range(total)]
    full = scales.index(max(scales))
    full_index = sum(full * len(scales) ** k for k in range(num_stages))
    always = [r * per_res + full_index for r in range(len(resolutions))]
    if max_configs < len(always):
        raise ValueError(f"max_configs {max_configs}: expected at least {len(always)} (the full configuration at "
                         f"each training resolution {list(resolutions)})")
    chosen = set(always)
    rng = random.Random(seed)
    while len(chosen) < max_configs:  # rejection sampling: the space is ≫ max_configs here
        chosen.add(rng.randrange(total))
    return [decode(i) for i in sorted(chosen)]


def pareto_front(points: list[SpatialConfig], cost: str = "macs") -> list[SpatialConfig]:
    """The points no other point beats: none is at most as costly and more accurate, or cheaper and as accurate.
    Cheapest first; of equal points the first in (resolution, stage_scales) order."""
    ordered = sorted(points, key=lambda p: (getattr(p, cost), -p.top1, p.key))
    front, best = [], -math.inf
    for p in ordered:
        if p.top1 > best:
            front.append(p)
            best = p.top1
    return front


def _latency_model(config: SearchConfig) -> tuple[str, schema.LatencyModel] | None:
    """(device id, latency model) from the bundle's lut.json, or None without --bundle."""
    if config.bundle is None:
        return None
    lut_path = Path(config.bundle) / LUT_FILE if Path(config.bundle).is_dir() else Path(config.bundle)
    lut = schema.read_json(schema.LUT, lut_path)
    devices = sorted(lut.devices)
    if config.device is None:
        if len(devices) != 1:
            raise ValueError(f"{lut_path}: {len(devices)} devices ({', '.join(devices) or 'none'}); pass --device")
        device = devices[0]
    elif config.device not in lut.devices:
        raise ValueError(f"{lut_path}: no device {config.device!r}; it has: {', '.join(devices) or 'none'}")
    else:
        device = config.device
    models = [m for m in lut.devices[device].latency_models
              if config.runtime in (None, m.runtime) and config.precision in (None, m.precision.value)]
    if not models:
        raise ValueError(f"{lut_path}: device {device!r} has no latency model"
                         + (f" for runtime {config.runtime}" if config.runtime else "")
                         + (f" at precision {config.precision}" if config.precision else "")
                         + "; run `resflex profile` on the bundle first")
    # Several left: the one fitted on the most points, then the most accurate fit (named in configs.json).
    return device, min(models, key=lambda m: (-m.points, m.mean_abs_rel_error, m.runtime, m.precision.value,
                                              m.compute_unit, m.threads))


@torch.no_grad()
def _measure(model: MultiResolutionNet, configs: list[tuple], config: SearchConfig, class_names, latency,
             progress) -> tuple[list[SpatialConfig], int]:
    """Every configuration measured, and the fewest validation images any resolution had."""
    device = next(model.parameters()).device
    out, images = [], config.samples
    bar = tqdm(total=len(configs), desc="search", unit="config", disable=not progress)
    try:
        for r, group in itertools.groupby(configs, key=lambda c: c[0]):
            loader = eval_loader(model, config.data, "val", r, config.batch_size, workers=config.workers,
                                 seed=config.seed, length=config.samples, class_names=class_names)
            batches = [(model.preprocessing.normalize(x.to(device)), y)
                       for x, y in first_images(loader, config.samples)]
            total = sum(len(y) for _, y in batches)
            if total == 0:
                raise ValueError(f"{config.data}: no readable validation images at {r} px; nothing to search on")
            images = min(images, total)
            for _, scales in group:
                model.set_config(r, scales)
                correct = sum(int((model(x).argmax(1).cpu() == y).sum()) for x, y in batches)
                macs = count_macs(model, torch.zeros(1, 3, r, r, device=device))
                ms = None if latency is None else max(latency.intercept_ms + latency.ms_per_gmac * macs / 1e9, 1e-3)
                out.append(SpatialConfig(r, list(scales), correct / total, macs, ms))
                bar.update()
    finally:
        bar.close()
    return out, images


def search(config: SearchConfig) -> SearchResult:
    """Search a resizable checkpoint's configurations (see the module docstring); the outputs go to `config.out`."""
    model, payload = load_checkpoint(config.checkpoint)
    if not model.num_stages:
        raise ValueError(f"{config.checkpoint}: method {model.config.method.value!r} has no stage scales; "
                         "`resflex search` needs a checkpoint trained with --method resizable")
    found = _latency_model(config)
    device, latency = found if found else (None, None)
    cost = "macs" if latency is None else "latency_ms"
    c = model.config
    configs = enumerate_configurations(c.resolutions, c.scales, model.num_stages, config.max_configs, config.seed)
    space = configuration_space(c.resolutions, c.scales, model.num_stages)
    say = tqdm.write if config.progress else (lambda msg: None)
    say(f"{len(configs)} of {space} configurations" + (f" (seeded sample, seed {config.seed})"
                                                       if len(configs) < space else "")
        + f", {config.samples} {config.data} val images each"
        + (f"; latency from {device} {latency.runtime} {latency.precision.value} {latency.compute_unit} "
           f"{latency.threads} threads" if latency else ""))
    with output_folder(config.out, config.overwrite, keep=config.bundle, written_by="resflex search") as stage:
        model.eval()
        evaluated, images = _measure(model, configs, config, payload["class_names"], latency, config.progress)
        front = pareto_front(evaluated, cost)
        full = max(c.scales)
        resolution_front = pareto_front([p for p in evaluated if all(s == full for s in p.stage_scales)], cost)
        doc = Configs(
            arch=c.arch, method=c.method.value, checkpoint_sha256=sha256_of(Path(config.checkpoint)),
            scales=list(c.scales), num_stages=model.num_stages, train_resolutions=list(c.resolutions), cost=cost,
            operating_points=front,
            data=schema.DataIdentity(config.data, "val", images),
            space=space, evaluated=len(evaluated), seed=config.seed, device=device, latency_model=latency)
        write_configs(doc, stage / CONFIGS_FILE)
        _write_csv(evaluated, {p.key for p in front}, full, stage / "search.csv")
        _plot(evaluated, front, resolution_front, cost, stage / "front.png", c.arch, full)
    say(f"front: {len(front)} of {len(evaluated)} configurations; written to {config.out}")
    return SearchResult(Path(config.out), doc, evaluated, front, resolution_front)


def _write_csv(points: list[SpatialConfig], front: set, full: float, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["resolution", "stage_scales", "top1", "macs", "latency_ms", "on_front", "resolution_only"])
        for p in points:
            w.writerow([p.resolution, " ".join(f"{s:g}" for s in p.stage_scales), f"{p.top1:.6f}", p.macs,
                        "" if p.latency_ms is None else f"{p.latency_ms:.4f}", int(p.key in front),
                        int(all(s == full for s in p.stage_scales))])


def _plot(points, front, resolution_front, cost: str, path: Path, arch: str, full: float) -> None:
    matplotlib = require_matplotlib("search")
    from matplotlib.figure import Figure

    x = (lambda p: p.macs / 1e6) if cost == "macs" else (lambda p: p.latency_ms)
    with matplotlib.rc_context(plot_style(font_size=10, dpi=110)):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        ax.scatter([x(p) for p in points], [100 * p.top1 for p in points], s=12, color="0.7",
                   label=f"configurations ({len(points)})")
        ax.plot([x(p) for p in front], [100 * p.top1 for p in front], "o-", color="C0",
                label=f"configuration front ({len(front)})")
        ax.plot([x(p) for p in resolution_front], [100 * p.top1 for p in resolution_front], "s--", color="C1",
                label=f"input resolution only (every stage at {full:g})")
        for p in resolution_front:
            ax.annotate(f"{p.resolution}", (x(p), 100 * p.top1), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color="C1")
        ax.set_xlabel("MMACs" if cost == "macs" else "predicted latency (ms)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"{arch}: spatial configurations vs input resolution only")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, format="png")
