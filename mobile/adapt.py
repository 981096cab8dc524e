"""Resizable-Adapt (Resizable Neural Networks §3.5): a small ResizeLearner picks, per image, which spatial
configuration of a resizable network runs, under a MACs budget.

    result = train_adapt(AdaptConfig("runs/r/checkpoint.pt", out="runs/r/adapt", max_macs=2_000_000))
    report = evaluate_adapt(model, *load_learner("runs/r/adapt/learner.pt", model), data="synthetic")

The flow per image (the app's, and how accuracy and cost are measured here):
1. **cheap pass** — the cheapest candidate configuration runs in full; its logits are kept and the feature map of its
   last stage (the input of the global pooling) is read;
2. **learner** — three 3×3 conv + BN + ReLU layers, global average pooling, a linear layer and a softmax over the
   candidate configurations; only candidates whose own MACs are ≤ `max_macs` may be chosen (argmax among them);
3. **chosen configuration** — when the choice is the cheap configuration its logits from step 1 are the answer;
   otherwise the chosen configuration runs on the image.
Cost per image: MACs(cheap) + MACs(learner) + [chosen ≠ cheap] · MACs(chosen); the mean is reported.

Training (§3.5): the backbone is frozen (eval mode; its outputs are computed once); on a seeded sample of the
training split (eval transform, as at inference) the target of an image is the cheapest candidate under the budget
that classifies it correctly — or, when none does, the candidate most accurate on the sample. Cross-entropy, Adam.

Candidates: every configuration of the checkpoint (when there are at most `MAX_ENUMERATED`), an inline list
"R:S1,S2;R:S1,S2", or a `resflex search` configs.json (its Pareto front); those above `max_macs` are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint, load_tensors_only
from .data import EvalTransform, build_dataset, check_class_names, make_loader
from .layers import check_stage_scales
from .macs import count_macs
from .models import ModelConfig, MultiResolutionNet

FORMAT = "resflex-resize-learner"
VERSION = 1
LEARNER_FILE = "learner.pt"
REPORT_FILE = "adapt.json"
MAX_ENUMERATED = 256  # a learner over more outputs than this wants a searched list (--configs configs.json)

Config = tuple[int, tuple[float, ...]]  # (input resolution, one factor per stage)


def parse_macs(text: str | int | float) -> int:
    """'2.5M', '300k', '1.2G', '1e6' or a number → a positive integer count of MACs; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()] if m else math.nan
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"max_macs {text!r}: expected a positive count like 2500000, 2.5M, 300k or 1.2G")
    return int(value)


def format_config(config: Config) -> str:
    r, scales = config
    return f"{r}:" + ",".join(f"{s:g}" for s in scales)


def format_macs(macs: float) -> str:
    return f"{macs / 1e6:.3f}M"


# --------------------------------------------------------------------------- candidate configurations


def resolve_configs(model: MultiResolutionNet, spec: str | None, checkpoint: str | os.PathLike | None = None) -> list[Config]:
    """The candidate configurations `spec` names, checked against `model` (see the module docstring).

    A resolution the model was not trained at, an untrained factor or a wrong stage count → ValueError naming it."""
    c = model.config
    if not model.num_stages:
        raise ValueError(f"method {c.method.value!r} has no stage scales; Resizable-Adapt needs a checkpoint trained "
                         "with --method resizable")
    if spec is None:
        space = len(c.resolutions) * len(c.scales) ** model.num_stages
        if space > MAX_ENUMERATED:
            raise ValueError(f"{c.arch}: {space} configurations (more than {MAX_ENUMERATED}); pass --configs, e.g. the "
                             "configs.json of `resflex search` or R:S1,...;R:S1,...")
        import itertools

        return [(r, s) for r in c.resolutions for s in itertools.product(c.scales, repeat=model.num_stages)]
    path = Path(spec)
    if path.suffix == ".json" or path.is_dir():
        from .bundle.io import sha256_of
        from .search import check_configs_for, read_configs

        if checkpoint is None:
            raise ValueError(f"--configs {spec}: a configs.json is checked against its checkpoint; none given")
        return [(r, tuple(s)) for r, s in check_configs_for(read_configs(path), model, sha256_of(Path(checkpoint)),
                                                          str(path))]
    out = []
    for item in (t for t in str(spec).split(";") if t.strip()):
        r, sep, scales = item.partition(":")
        try:
            config = (int(r), tuple(float(v) for v in scales.split(",") if v.strip()))
        except ValueError:
            config = None
        if not sep or config is None or not config[1]:
            raise ValueError(f"--configs: {item!r} is not RESOLUTION:S1,S2,... (configurations are separated by ';', "
                             f"or give a configs.json)")
        if config[0] not in c.resolutions:
            raise ValueError(f"--configs: configuration {item!r}: resolution {config[0]} was not trained; training "
                             f"resolutions: {list(c.resolutions)}")
        try:
            config = (config[0], check_stage_scales(config[1], c.scales, model.num_stages,
                                                    f"{c.arch} ({model.num_stages} stages)"))
        except ValueError as e:
            raise ValueError(f"--configs: configuration {item!r}: {e}") from None
        out.append(config)
    if not out:
        raise ValueError("--configs: no configuration given")
    return list(dict.fromkeys(out))


@torch.no_grad()
def config_macs(model: MultiResolutionNet, configs: Sequence[Config]) -> list[int]:
    """MACs of one image through each configuration (`count_macs`)."""
    device = next(model.parameters()).device
    out = []
    for r, scales in configs:
        with model.at_config(r, scales or None):  # () for a model without stages (RS-Net, I-Net)
            out.append(count_macs(model, torch.zeros(1, 3, r, r, device=device)))
    return out


def candidates_under(configs: Sequence[Config], macs: Sequence[int], max_macs: int) -> tuple[list[Config], list[int]]:
    """The configurations whose MACs are ≤ `max_macs`, cheapest first; ValueError if there is none."""
    kept = sorted((m, i) for i, m in enumerate(macs) if m <= max_macs)
    if not kept:
        i = min(range(len(macs)), key=macs.__getitem__)
        raise ValueError(f"--max-macs {max_macs} ({format_macs(max_macs)}) is below every configuration's MACs; the "
                         f"cheapest, {format_config(configs[i])}, needs {macs[i]} ({format_macs(macs[i])})")
    return [configs[i] for _, i in kept], [m for m, _ in kept]


# --------------------------------------------------------------------------- the learner


class ResizeLearner(nn.Module):
    """§3.5: three conv layers + global pooling + a linear layer over the candidate configurations (softmax in
    `choose`), reading the last-stage feature map of the cheap pass."""

    def __init__(self, in_channels: int, num_configs: int, hidden: int = 16):
        super().__init__()
        layers, c = [], in_channels
        for _ in range(3):
            layers += [nn.Conv2d(c, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
            c = hidden
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(hidden, num_configs)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.pool(self.body(features)).flatten(1))

    @torch.no_grad()
    def choose(self, features: Tensor, allowed: Tensor) -> Tensor:
        """Index of the most probable allowed configuration per image (`allowed`: bool, one per configuration)."""
        probs = F.softmax(self(features), dim=1)
        return probs.masked_fill(~allowed.to(probs.device), -1.0).argmax(1)


@contextlib.contextmanager
def last_stage_features(model: MultiResolutionNet) -> Iterator[list[Tensor]]:
    """Collect the input of `model.pool` (the last stage's feature map) of every forward inside the block; in your
    own network (`switchable`, `--arch FILE.py:FACTORY`), the input of its one `nn.AdaptiveAvgPool2d`."""
    pool = getattr(model, "pool", None)
    if not isinstance(pool, nn.AdaptiveAvgPool2d):
        pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        if len(pools) != 1:
            raise ValueError(
                f"{model.config.arch}: Resizable-Adapt reads the last stage's feature map at the input of the global "
                f"pooling layer, and this network has {len(pools)} nn.AdaptiveAvgPool2d modules (expected exactly one; "
                "pooling written as a tensor op such as x.mean((2, 3)) cannot be hooked): pool with one "
                "nn.AdaptiveAvgPool2d before the classifier")
        pool = pools[0]
    found: list[Tensor] = []
    handle = pool.register_forward_hook(lambda m, i, o: found.append(i[0].detach()))
    try:
        yield found
    finally:
        handle.remove()


@dataclasses.dataclass
class Outcomes:
    """A frozen backbone on a set of images: per image and configuration whether it was right, the cheap pass's
    last-stage features (configuration 0) and the labels."""

    correct: Tensor  # [N, K] bool
    features: Tensor  # [N, C, h, w]
    labels: Tensor  # [N]


@torch.no_grad()
def outcomes(model: MultiResolutionNet, data: str, split: str, configs: Sequence[Config], *, samples: int | None,
             batch_size: int = 128, workers: int = 0, seed: int = 0, class_names: Sequence[str] | None = None,
             progress: bool = False) -> Outcomes:
    """Run every configuration on the same images (a seeded sample of `samples` from `split`; all when None);
    configs[0] is the cheap pass whose features are kept."""
    device = next(model.parameters()).device
    model.eval()
    by_res: dict[int, list[int]] = {}
    for k, (r, _) in enumerate(configs):
        by_res.setdefault(r, []).append(k)
    correct: list[Tensor | None] = [None] * len(configs)
    features = labels = None
    bar = tqdm(total=len(configs), desc=f"{split} outcomes", unit="config", disable=not progress, leave=False)
    for r, ks in by_res.items():
        transform = EvalTransform(r, r / model.preprocessing.resize_size(r))
        dataset = build_dataset(data, split, transform, num_classes=model.config.num_classes, seed=seed,
                                length=samples if data == "synthetic" else None)
        if class_names is not None:
            check_class_names(dataset.classes, class_names, f"{data}/{split}")
        if samples is not None and samples < len(dataset):  # the same seeded sample at every resolution
            dataset = Subset(dataset, torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
                             [:samples].sort().values.tolist())
        loader = make_loader(dataset, batch_size, shuffle=False, workers=workers, seed=seed, distributed=False)
        hits: dict[int, list[Tensor]] = {k: [] for k in ks}
        feats, ys = [], []
        for images, target, _ in loader:
            if len(target) == 0:
                continue
            x = model.preprocessing.normalize(images.to(device))
            ys.append(target)
            for k in ks:
                with model.at_config(*configs[k]), last_stage_features(model) as found:
                    hits[k].append(model(x).argmax(1).cpu() == target)
                if k == 0:
                    feats.append(found[0].cpu())
        if not ys:
            raise ValueError(f"{data}: no readable {split} images at {r} px; nothing to measure")
        y = torch.cat(ys)
        if labels is not None and not torch.equal(labels, y):
            raise RuntimeError(f"{data}/{split}: images at {r} px came in another order than at the other resolutions")
        labels = y
        for k in ks:
            correct[k] = torch.cat(hits[k])
            bar.update()
        if 0 in ks:
            features = torch.cat(feats)
    bar.close()
    return Outcomes(torch.stack(correct, 1), features, labels)


def adapt_targets(correct: Tensor, macs: Sequence[int]) -> Tensor:
    """§3.5 targets: per image the cheapest configuration that classifies it correctly, else the configuration most
    accurate over all the images, the cheaper on a tie (`correct`: [N, K] bool; `macs`: one per configuration)."""
    order = torch.tensor(sorted(range(len(macs)), key=lambda k: (macs[k], k)))
    right = correct[:, order]
    first = order[right.int().argmax(1)]  # argmax returns the first maximal index: the cheapest correct one
    acc = correct.float().mean(0).tolist()
    best = max(range(len(macs)), key=lambda k: (acc[k], -macs[k]))  # ties: the cheaper
    return torch.where(right.any(1), first, torch.full_like(first, best))


def fit_learner(features: Tensor, targets: Tensor, num_configs: int, *, hidden: int = 16, epochs: int = 40,
                lr: float = 1e-3, batch_size: int = 128, seed: int = 0, progress: bool = False) -> ResizeLearner:
    """Train a ResizeLearner with cross-entropy on fixed (features, target) pairs."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        learner = ResizeLearner(features.shape[1], num_configs, hidden)
    opt = torch.optim.Adam(learner.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    learner.train()
    for _ in tqdm(range(epochs), desc="learner", unit="epoch", disable=not progress, leave=False):
        perm = torch.randperm(len(targets), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(learner(features[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return learner.eval()


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class AdaptReport:
    data: str
    images: int
    max_macs: int
    configs: list[Config]  # the learner's candidates, cheapest first
    macs: list[int]
    static_top1: list[float]
    allowed: list[bool]
    learner_macs: int
    top1: float  # Resizable-Adapt
    mean_macs: float  # cheap pass + learner + chosen configuration (when not the cheap one), per image
    choices: list[int]  # images per configuration
    oracle_top1: float  # an image is right if any allowed candidate gets it right

    @property
    def best_static(self) -> int | None:
        """Index of the most accurate configuration whose MACs are ≤ the adapt mean MACs (None if none is)."""
        under = [k for k, m in enumerate(self.macs) if m <= self.mean_macs]
        return max(under, key=lambda k: (self.static_top1[k], -self.macs[k])) if under else None

    def to_dict(self) -> dict:
        best = self.best_static
        return {"data": self.data, "images": self.images, "max_macs": self.max_macs,
                "adapt": {"top1": self.top1, "mean_macs": self.mean_macs, "learner_macs": self.learner_macs,
                          "cheap_pass": format_config(self.configs[0]), "oracle_top1": self.oracle_top1},
                "best_static": None if best is None else {"config": format_config(self.configs[best]),
                                                          "macs": self.macs[best], "top1": self.static_top1[best]},
                "configs": [{"config": format_config(c), "macs": m, "top1": a, "allowed": ok, "chosen": n}
                            for c, m, a, ok, n in zip(self.configs, self.macs, self.static_top1, self.allowed,
                                                      self.choices)]}


@torch.no_grad()
def evaluate_adapt(model: MultiResolutionNet, learner: ResizeLearner, meta: dict, data: str = "synthetic",
                   max_macs: int | None = None, *, val_samples: int | None = None, batch_size: int = 128,
                   workers: int = 0, seed: int = 0, class_names: Sequence[str] | None = None,
                   progress: bool = False) -> AdaptReport:
    """Accuracy and mean MACs of the cheap pass → learner → chosen configuration flow on the val split, next to every
    candidate configuration run statically (`max_macs` default: the learner's)."""
    configs = [(int(r), tuple(s)) for r, s in meta["configs"]]
    macs = [int(m) for m in meta["macs"]]
    max_macs = meta["max_macs"] if max_macs is None else max_macs
    if max_macs < macs[0]:
        raise ValueError(f"--max-macs {max_macs} ({format_macs(max_macs)}) is below every configuration the learner "
                         f"chooses among; the cheapest, {format_config(configs[0])}, needs {macs[0]} "
                         f"({format_macs(macs[0])})")
    allowed = torch.tensor([m <= max_macs for m in macs])
    o = outcomes(model, data, "val", configs, samples=val_samples, batch_size=batch_size, workers=workers, seed=seed,
                 class_names=class_names, progress=progress)
    learner.eval()
    chosen = torch.cat([learner.choose(o.features[i:i + 256], allowed) for i in range(0, len(o.labels), 256)])
    n = len(o.labels)
    right = o.correct[torch.arange(n), chosen]
    cost = macs[0] + meta["learner_macs"] + torch.tensor(macs, dtype=torch.float64)[chosen] * (chosen != 0)
    return AdaptReport(data=data, images=n, max_macs=max_macs, configs=configs, macs=macs,
                       static_top1=o.correct.float().mean(0).tolist(), allowed=allowed.tolist(),
                       learner_macs=meta["learner_macs"], top1=right.float().mean().item(),
                       mean_macs=cost.mean().item(), choices=torch.bincount(chosen, minlength=len(configs)).tolist(),
                       oracle_top1=o.correct[:, allowed].any(1).float().mean().item())


def format_report(report: AdaptReport) -> str:
    """A markdown table: Resizable-Adapt against the best static configuration at the same or lower mean MACs."""
    r = report
    lines = [f"Resizable-Adapt on {r.data} val ({r.images} images); --max-macs {format_macs(r.max_macs)}; "
             f"{sum(r.allowed)} of {len(r.configs)} candidates allowed; cheap pass {format_config(r.configs[0])}",
             "", "| | top-1 % | mean MACs |", "|---|---:|---:|",
             f"| Resizable-Adapt (cheap pass + learner {format_macs(r.learner_macs)} + chosen) | {100 * r.top1:.1f} | "
             f"{format_macs(r.mean_macs)} |"]
    best = r.best_static
    if best is None:
        lines.append("| best static ≤ that mean MACs | none is that cheap | - |")
    else:
        lines.append(f"| best static ≤ that mean MACs: {format_config(r.configs[best])} | "
                     f"{100 * r.static_top1[best]:.1f} | {format_macs(r.macs[best])} |")
    top = max((k for k in range(len(r.configs)) if r.allowed[k]), key=lambda k: (r.static_top1[k], -r.macs[k]))
    lines += [f"| best static under the budget: {format_config(r.configs[top])} | {100 * r.static_top1[top]:.1f} | "
              f"{format_macs(r.macs[top])} |",
              f"| oracle (any allowed candidate right) | {100 * r.oracle_top1:.1f} | - |", "",
              "choices: " + ", ".join(f"{format_config(c)} {n}" for c, n in zip(r.configs, r.choices) if n)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- training the learner, files


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """Everything `train_adapt` needs."""

    checkpoint: str
    out: str
    max_macs: int
    configs: str | None = None  # None: every configuration; "R:S1,..;R:S1,.." or a configs.json (file or folder)
    data: str = "synthetic"
    samples: int = 1024  # the training-set sample the learner is trained on
    val_samples: int | None = None  # validation images of the report (default: the whole split)
    epochs: int = 40
    lr: float = 1e-3
    hidden: int = 16  # channels of the learner's convs (its MACs are reported and counted)
    batch_size: int = 128
    seed: int = 0
    workers: int = 0
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "max_macs", parse_macs(self.max_macs))
        for name in ("samples", "epochs", "hidden", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if self.val_samples is not None and (isinstance(self.val_samples, bool) or self.val_samples < 1):
            raise ValueError(f"val_samples: expected a positive integer, got {self.val_samples!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        if not str(self.out).strip():
            raise ValueError("out: expected a folder")


@dataclasses.dataclass
class AdaptResult:
    learner: ResizeLearner
    meta: dict
    report: AdaptReport
    out: Path
    train_target_share: list[int]  # training images per target configuration


def train_adapt(config: AdaptConfig) -> AdaptResult:
    """Train a ResizeLearner for the checkpoint (see the module docstring); writes the folder `out` with
    `learner.pt` and `adapt.json` (the validation report) atomically, after everything was measured. An existing
    `out` is replaced only with `overwrite` and only if resflex wrote it (`check_replaceable`)."""
    from .bundle.io import check_replaceable, sha256_of, staging_dir

    out = check_replaceable(Path(config.out), config.overwrite)  # before any work: a folder of adapt's own, or new
    model, payload = load_checkpoint(config.checkpoint)
    configs = resolve_configs(model, config.configs, config.checkpoint)
    configs, macs = candidates_under(configs, config_macs(model, configs), config.max_macs)
    say = tqdm.write if config.progress else (lambda msg: None)
    say(f"{len(configs)} candidate configurations ≤ {format_macs(config.max_macs)} MACs; cheap pass "
        f"{format_config(configs[0])} ({format_macs(macs[0])})")
    class_names = list(payload["class_names"])
    o = outcomes(model, config.data, "train", configs, samples=config.samples, batch_size=config.batch_size,
                 workers=config.workers, seed=config.seed, class_names=class_names, progress=config.progress)
    targets = adapt_targets(o.correct, macs)
    learner = fit_learner(o.features, targets, len(configs), hidden=config.hidden, epochs=config.epochs, lr=config.lr,
                          batch_size=config.batch_size, seed=config.seed, progress=config.progress)
    meta = {"format": FORMAT, "version": VERSION, "model_config": model.config.to_dict(), "class_names": class_names,
            "checkpoint_sha256": sha256_of(Path(config.checkpoint)),
            "configs": [[r, list(s)] for r, s in configs], "macs": macs, "max_macs": config.max_macs,
            "learner_macs": count_macs(learner, o.features[:1]), "feature_shape": list(o.features.shape[1:]),
            "hidden": config.hidden, "train": {"data": config.data, "samples": len(targets), "seed": config.seed,
                                               "epochs": config.epochs}}
    report = evaluate_adapt(model, learner, meta, config.data, val_samples=config.val_samples,
                            batch_size=config.batch_size, workers=config.workers, seed=config.seed,
                            class_names=class_names, progress=config.progress)
    with staging_dir(out, config.overwrite, written_by="resflex adapt") as stage:
        (stage / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
        torch.save({**meta, "state_dict": learner.state_dict()}, stage / LEARNER_FILE)
    share = torch.bincount(targets, minlength=len(configs)).tolist()
    return AdaptResult(learner, meta, report, out, share)


def load_learner(path: str | os.PathLike, model: MultiResolutionNet,
                 checkpoint: str | os.PathLike | None = None) -> tuple[ResizeLearner, dict]:
    """(learner in eval mode, its metadata) from `learner.pt` (or the folder holding it), checked against `model`
    (and, when given, the checkpoint file it was trained on: the learner reads that backbone's features)."""
    path = Path(path)
    if path.is_dir():
        path = path / LEARNER_FILE
    if not path.is_file():
        raise CheckpointError(f"learner not found: {path} (write one with `resflex adapt`)")
    payload = load_tensors_only(path, "so it was not written by `resflex adapt`", " as a ResizeLearner")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ResizeLearner file (expected format={FORMAT!r}; write one with "
                              "`resflex adapt`)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: learner version {str(payload.get('version'))[:40]} is not supported "
                              f"(expected {VERSION})")
    try:
        trained_for = ModelConfig.from_dict(payload["model_config"])
        configs = [(int(r), tuple(float(s) for s in scales)) for r, scales in payload["configs"]]
        shape = [int(v) for v in payload["feature_shape"]]
        learner = ResizeLearner(shape[0], len(configs), int(payload["hidden"]))
        learner.load_state_dict(payload["state_dict"])
        if len(payload["macs"]) != len(configs) or int(payload["learner_macs"]) < 0:
            raise ValueError("macs: one count per configuration expected")
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise CheckpointError(f"{path}: invalid ResizeLearner file: {str(e).splitlines()[0][:300]}") from None
    if trained_for != model.config:
        diffs = [f"{f.name}: {getattr(trained_for, f.name)!r} vs {getattr(model.config, f.name)!r}"
                 for f in dataclasses.fields(ModelConfig) if getattr(trained_for, f.name) != getattr(model.config, f.name)]
        raise ValueError(f"{path} was trained for another model (learner vs checkpoint: {'; '.join(diffs)})")
    if checkpoint is not None:
        from .bundle.io import sha256_of

        if payload.get("checkpoint_sha256") != sha256_of(Path(checkpoint)):
            raise ValueError(f"{path} was trained on another checkpoint than {checkpoint} (sha256 "
                             f"{str(payload.get('checkpoint_sha256'))[:12]}…); train a learner for this one with "
                             "`resflex adapt`")
    for c in configs:
        check_stage_scales(c[1], model.config.scales, model.num_stages)
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return learner.eval(), meta
