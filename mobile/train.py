"""Multi-resolution training: one loop, readable top to bottom (`train`).

Each batch is random-resized-cropped once at the largest training resolution and resized to every other
one (single-crop multi-resolution, RS-Nets §4.3); one forward per resolution, one loss, one step.
Resizable Networks (`ResizableStep`) run several spatial configurations per resolution instead (Algorithm 1).
Runs as is on one process, or under `torchrun --nproc_per_node N` with DistributedDataParallel.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoint import atomic_write, model_from_payload, qat_ranges, read_checkpoint, save_checkpoint
from .data import TrainTransform, build_dataset, make_loader
from .evaluate import calibrate_unseen, evaluate
from .layers import DEFAULT_STAGE_SCALES, check_resolutions, check_scales, check_stage_scales, parse_enum
from .losses import create_loss
from .qat import check_qat_method, enable_qat
from .models import Method, MultiResolutionNet, create_model, is_arch_spec, list_models
from .models.foreign import normalize_spec

CONFIG_KIND = "resflex.train"
CONFIG_VERSION = 1
# Fields that may change between a run and its --resume; every other field must match the checkpoint.
SMALL_INPUT = 64  # px: below this largest training resolution the small-input recipe is the default
SMALL_INPUT_MIN_CROP = 0.35
RESUMABLE_CHANGES = ("out", "resume", "overwrite", "workers", "device", "progress", "bn_calibration_images")


BASE_LR = 0.02  # SGD learning rate of one network's loss at batch 64
QAT_FINETUNE_LR_FACTOR = 0.1  # --qat from trained float weights (--init) fine-tunes at a tenth of the default lr


def summed_losses(method, resolutions: int, scales=None, distill: bool = False, full_config: bool = False) -> int:
    """How many sub-network losses one step sums: 1 for an I-Net, one per resolution for RS-Nets and SAN (RS-Nets
    Eq. 2, SAN Eq. 1), resolutions × factors for Resizable Networks (Algorithm 1 accumulates them), plus with
    `full_config` the full configuration at each resolution (`ResizableStep`), else with distillation the
    full-configuration teacher."""
    method = parse_enum(Method, method, "method")
    if method is Method.SINGLE:
        return 1
    if method is Method.RESIZABLE:
        factors = len(scales or DEFAULT_STAGE_SCALES)
        if full_config and factors > 1:
            return resolutions * (factors + 1)
        return resolutions * factors + bool(distill)
    return resolutions


def recipe_groups(model: nn.Module, groups: list[dict], lr: float, losses: int) -> list[dict]:
    """The model's optimizer groups with a learning rate per kind of parameter, for a step that sums `losses`
    sub-network losses (docs/guide/train.md, "Learning rate"):
    - the classifier and any other shared `nn.Linear` outside a meta-learner: lr ÷ losses. Its inputs are nearly
      the same at every resolution, so the summed gradient is ≈ losses × one network's, and nothing normalises
      its output: at the undivided lr the logits overshoot (RS-Net on the digits: |logit| 70 vs 12 for an I-Net)
      and training stalls near chance;
    - shared convolutions (and SAN's meta-learners) feed a BatchNorm, so their output does not depend on their
      scale: a larger summed step grows their norm and shrinks the next steps — they keep lr, as the papers do;
    - private BN parameters (one copy per resolution / configuration) receive one loss each: lr."""
    from .layers.meta_conv import MetaConv2d

    meta = {id(q) for m in model.modules() if isinstance(m, MetaConv2d) for q in m.parameters()}
    head = {id(q) for m in model.modules() if isinstance(m, nn.Linear) for q in m.parameters()} - meta
    out = []
    for g in groups:
        for is_head in (True, False):
            params = [q for q in g["params"] if (id(q) in head) == is_head]
            if params:
                out.append({**g, "params": params, "lr": lr / losses if is_head else lr})
    return out


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `train` needs; written into the checkpoint so a run can be resumed and audited."""

    data: str = "synthetic"
    arch: str = "mobilenet_v2"
    method: str = "rsnet"
    resolutions: tuple[int, ...] = (64, 56, 48, 40, 32)
    width: float = 0.35
    meta_hidden: int = 0
    epochs: int = 10
    batch_size: int = 64  # per process
    lr: float | None = None  # None: BASE_LR; the classifier gets lr ÷ the losses summed per step (`recipe_groups`)
    warmup_epochs: float = 1.0  # linear warm-up before the cosine decay
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    # Recipe for the input size (README, "Training recipe"): None = chosen from the largest training resolution —
    # below SMALL_INPUT px the small-input stem (stride 1) and crops of at least 35 % of the image; else the
    # papers' ImageNet recipe (stem stride 2, RandomResizedCrop down to 8 %).
    stem_stride: int | None = None
    min_crop: float | None = None  # RandomResizedCrop's smallest area fraction
    flip: bool = True  # random horizontal flips (turn off for data where mirroring changes the class)
    distill: bool | None = None  # None = on for rsnet (MRED); off for san (scale distillation, opt-in as in the
    # official code's --kd: it cost 0.3-3 pt per resolution on both benches, README "Training recipe") and for
    # resizable (distillation from the full configuration, off as in the paper)
    # rsnet's MRED only: its KD term L_kd (RS-Nets Eq. 10) off during the learning-rate warm-up, whose teachers are
    # near chance, on after it (L_cls, L_ens from the first step). None = on for rsnet with MRED: ahead of L_kd from
    # the first step (the paper) at 3 epochs, level at 12 (bench/RESULTS.md, recipe_distill,
    # train_bench_fashion_equal_12ep); False is the paper's loss. A checkpoint written before this default trained
    # with False (LEGACY_DEFAULTS)
    distill_after_warmup: bool | None = None
    # resizable only: each step also trains the full configuration at every resolution beside the fair set (None = on
    # for resizable). Off, as the paper's Algorithm 1, the full configuration (the default operating point) is trained
    # only when fair sampling happens to draw it: 45.0 vs 66.5 % on the digits at 3 epochs, 3 seeds (bench/RESULTS.md,
    # resizable_recipe). A checkpoint written before this field trained without it (LEGACY_DEFAULTS)
    full_config_each_step: bool | None = None
    scales: tuple[float, ...] | None = None  # resizable only: trained stage scale factors (default DEFAULT_STAGE_SCALES)
    switch_at_epoch: int | None = None  # resizable only (§3.4 Resizable-Aug): from this epoch on train target_config
    target_config: str | None = None  # "RESOLUTION:S1,S2,..." — one trained factor per stage
    sync_bn: bool = False  # SyncBatchNorm for the private BNs (GPU only)
    amp: bool = True  # used on GPU only
    channels_last: bool = True  # NHWC weights and batches: faster steps on CPU too (bench/train_bench.py)
    seed: int = 0
    num_classes: int = 10  # synthetic data only; an ImageFolder's class folders decide otherwise
    train_samples: int | None = None  # synthetic data size (default: the data set's)
    val_samples: int | None = None
    max_steps_per_epoch: int | None = None  # cap for quick runs
    out: str = "runs/demo"
    resume: bool = False
    overwrite: bool = False
    workers: int = 2
    device: str = "auto"
    progress: bool = True
    init: str | None = None  # start from single-resolution weights (torchvision layout or a resflex checkpoint)
    finetune: str | None = None  # resizable only (§3.3): a resizable checkpoint whose target_config is fine-tuned
    qat: bool = False  # quantization-aware training (resflex.mobile.qat): int8-fake-quantized weights and activations
    # after the last epoch: BN statistics recalibrated on this many training images at each untrained resolution
    # between the training ones, saved in the checkpoint for BN mode `auto` (0: none; `calibrate_unseen`)
    bn_calibration_images: int = 1024

    def __post_init__(self):
        """Every argument is checked here, before `train` touches the run folder."""
        if is_arch_spec(self.arch):  # your own network: FILE.py:FACTORY (made absolute) or package.module:FACTORY
            object.__setattr__(self, "arch", normalize_spec(self.arch))
        elif self.arch not in list_models():
            raise ValueError(f"unknown arch {self.arch!r}; expected one of: {', '.join(list_models())} "
                             "(or your own network as FILE.py:FACTORY / package.module:FACTORY)")
        method = parse_enum(Method, self.method, "method")
        object.__setattr__(self, "resolutions", tuple(check_resolutions(self.resolutions)))
        if self.distill is None:
            object.__setattr__(self, "distill", method is Method.RSNET)
        mred = method is Method.RSNET and bool(self.distill)
        if self.distill_after_warmup is None:
            object.__setattr__(self, "distill_after_warmup", mred)
        elif self.distill_after_warmup and not mred:
            raise ValueError("--distill-after-warmup: only --method rsnet with --distill (MRED) has a KD term to delay")
        if self.finetune is not None:
            check_finetune_flags(self, method)
        if self.full_config_each_step is None:
            object.__setattr__(self, "full_config_each_step", method is Method.RESIZABLE)
        elif self.full_config_each_step and method is not Method.RESIZABLE:
            raise ValueError(f"--full-config-each-step: only --method resizable has configurations (method is "
                             f"{method.value!r})")
        if method is Method.RESIZABLE:
            object.__setattr__(self, "scales", check_scales(self.scales or DEFAULT_STAGE_SCALES))
            if self.init:
                raise ValueError("--init: starting a resizable network from single-resolution weights is not "
                                 "supported yet")
        elif self.scales is not None:
            raise ValueError(f"scales {list(self.scales)}: only --method resizable has stage scale factors")
        if (self.switch_at_epoch is None) != (self.target_config is None):
            raise ValueError("--switch-at-epoch and --target-config go together: give both or neither")
        if self.switch_at_epoch is not None:
            if method is not Method.RESIZABLE:
                raise ValueError(f"--switch-at-epoch: only --method resizable switches to a target configuration "
                                 f"(method is {method.value!r})")
            v = self.switch_at_epoch
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.epochs:
                raise ValueError(f"switch_at_epoch: expected an integer in [0, epochs={self.epochs}), got {v!r}")
            r, stage_scales = parse_target_config(self.target_config)
            if r not in self.resolutions:
                raise ValueError(f"target_config {self.target_config!r}: resolution {r} is not a training resolution "
                                 f"({', '.join(map(str, self.resolutions))})")
            check_stage_scales(stage_scales, self.scales, len(stage_scales))  # the stage count is checked in train
        if max(self.resolutions) > 4096:
            raise ValueError(f"resolutions: at most 4096 px, got {max(self.resolutions)}")

        def integer(name, lo, optional=False):
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: expected an integer ≥ {lo}{' (or none)' if optional else ''}, got {v!r}")

        def number(name, lo, hi, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                    (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
                raise ValueError(f"{name}: expected a finite number in {'(' if lo_open else '['}{lo}, {hi}"
                                 f"{')' if hi_open else ']'}, got {v!r}")

        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if self.qat:
            check_qat_method(method)
        if self.lr is None:
            object.__setattr__(self, "lr", BASE_LR * (QAT_FINETUNE_LR_FACTOR if self.qat and self.init else 1))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")
        number("width", 0.0, 16.0, lo_open=True)
        number("warmup_epochs", 0.0, 1e6)
        number("momentum", 0.0, 1.0, hi_open=True)
        number("weight_decay", 0.0, 1.0)
        number("label_smoothing", 0.0, 1.0, hi_open=True)
        small = max(self.resolutions) < SMALL_INPUT
        if self.stem_stride is None:
            object.__setattr__(self, "stem_stride", 1 if small else 2)
        if self.min_crop is None:
            object.__setattr__(self, "min_crop", SMALL_INPUT_MIN_CROP if small else 0.08)
        if self.stem_stride not in (1, 2) or isinstance(self.stem_stride, bool):
            raise ValueError(f"stem_stride: expected 1 or 2, got {self.stem_stride!r}")
        number("min_crop", 0.0, 1.0, lo_open=True)
        integer("meta_hidden", 0)
        integer("num_classes", 2)
        integer("workers", 0)
        integer("bn_calibration_images", 0)
        for name in ("train_samples", "val_samples", "max_steps_per_epoch"):
            integer(name, 1, optional=True)
        if not str(self.out).strip():
            raise ValueError("out: expected a run folder")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other; choose one")

    def to_dict(self) -> dict:
        return {"kind": CONFIG_KIND, "version": CONFIG_VERSION, **dataclasses.asdict(self),
                "resolutions": list(self.resolutions), "scales": None if self.scales is None else list(self.scales)}

    @property
    def summed_losses(self) -> int:
        """Sub-network losses one step sums (1 when --finetune trains one configuration from the start)."""
        if self.switch_at_epoch == 0:
            return 1
        return summed_losses(self.method, len(self.resolutions), self.scales, self.distill, self.full_config_each_step)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.out) / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return Path(self.out) / "metrics.jsonl"


class MultiResolutionStep(nn.Module):
    """One forward of the model at every training resolution plus the loss: the unit DDP wraps."""

    def __init__(self, model: MultiResolutionNet, loss: nn.Module):
        super().__init__()
        self.model, self.loss = model, loss
        self.resolutions = sorted(model.config.resolutions, reverse=True)  # largest first: teachers first

    def forward(self, images: Tensor, target: Tensor) -> tuple[Tensor, list[Tensor], dict]:
        logits = []
        for r in self.resolutions:
            self.model.set_resolution(r)
            logits.append(self.model(resize_batch(images, r)))
        loss, parts = self.loss(logits, target)
        return loss, logits, parts


FINETUNE_MODEL_FIELDS = ("arch", "method", "resolutions", "width", "scales", "meta_hidden", "num_classes",
                         "stem_stride")  # TrainConfig fields a fine-tuning run takes from its checkpoint


def check_finetune_flags(config: TrainConfig, method: Method) -> None:
    """--finetune: a resizable run that trains only --target-config from its first epoch (switch at epoch 0)."""
    if not str(config.finetune).strip():
        raise ValueError("--finetune: expected the path of a resizable checkpoint")
    if method is not Method.RESIZABLE:
        raise ValueError(f"--finetune: only a resizable checkpoint's configuration can be fine-tuned (method is "
                         f"{method.value!r})")
    if config.init:
        raise ValueError("--finetune and --init both give the starting weights; choose one")
    if config.target_config is None:
        raise ValueError("--finetune needs --target-config R:S1,S2,... (the configuration to fine-tune)")
    if config.switch_at_epoch not in (None, 0):
        raise ValueError(f"--finetune trains only --target-config from the first epoch; --switch-at-epoch "
                         f"{config.switch_at_epoch} contradicts it (leave it out, or give 0)")
    object.__setattr__(config, "switch_at_epoch", 0)


def finetune_settings(path: str | os.PathLike) -> dict:
    """The TrainConfig fields that describe the model of the resizable checkpoint at `path` (§3.3 fine-tuning
    starts from it, so they must be its values)."""
    payload = read_checkpoint(path)
    model = payload["model_config"]
    if model.get("method") != Method.RESIZABLE.value:
        raise ValueError(f"--finetune {path}: method {model.get('method')!r}; expected a resizable checkpoint "
                         f"(`resflex train --method resizable`)")
    config = model_from_payload(payload, str(path)).config
    return {f: getattr(config, f).value if f == "method" else getattr(config, f) for f in FINETUNE_MODEL_FIELDS}


def load_finetune(model: MultiResolutionNet, path: str | os.PathLike, class_names: list[str]) -> str:
    """Copy every weight of the resizable checkpoint `path` into `model` (same model config and classes, else a
    ValueError naming each difference); returns a one-line summary."""
    payload = read_checkpoint(path)
    source = model_from_payload(payload, str(path))
    diffs = [f"{f}: {getattr(source.config, f)!r} in the checkpoint vs {getattr(model.config, f)!r} now"
             for f in FINETUNE_MODEL_FIELDS if getattr(source.config, f) != getattr(model.config, f)]
    if list(payload["class_names"]) != list(class_names):
        diffs.append(f"class names {payload['class_names'][:5]}… in the checkpoint vs {class_names[:5]}… in the data")
    if diffs:
        raise ValueError(f"--finetune {path}: the run does not match the checkpoint (" + "; ".join(diffs) +
                         "); fine-tuning keeps the checkpoint's model and data")
    model.load_state_dict(source.state_dict())
    model.preprocessing = source.preprocessing
    return f"fine-tuning from {path} ({source.config.arch}, {len(source.config.resolutions)} resolution(s), " \
           f"scales {list(source.config.scales)})"


def parse_target_config(text: str) -> tuple[int, tuple[float, ...]]:
    """'32:1,0.5' → (32, (1.0, 0.5)); ValueError naming the text otherwise."""
    try:
        r, sep, scales = str(text).partition(":")
        values = (int(r), tuple(float(v) for v in scales.split(",") if v.strip()))
    except ValueError:
        values = None
    if not values or not values[1] or not sep:
        raise ValueError(f"target_config {text!r}: expected RESOLUTION:S1,S2,... (one factor per stage), "
                         f"e.g. 224:1,0.75,0.5,0.5,1")
    return values


class TargetConfigStep(nn.Module):
    """§3.4 Resizable-Aug after the scheduled switch: only the target configuration is trained."""

    def __init__(self, model: MultiResolutionNet, loss: nn.Module, resolution: int, stage_scales: tuple[float, ...]):
        super().__init__()
        self.model, self.loss, self.resolution, self.stage_scales = model, loss, resolution, stage_scales

    def forward(self, images: Tensor, target: Tensor) -> tuple[Tensor, list[Tensor], dict]:
        self.model.set_config(self.resolution, self.stage_scales)
        logits = [self.model(resize_batch(images, self.resolution))]
        loss, parts = self.loss(logits, target)
        return loss, logits, parts


def fair_configurations(num_stages: int, scales: tuple[float, ...]) -> list[tuple[float, ...]]:
    """§3.2 fair sampling: len(scales) configurations in which every stage takes every factor exactly once
    (an independent random permutation of the factors per stage; torch's RNG, so a resumed run repeats it)."""
    perms = [torch.randperm(len(scales)).tolist() for _ in range(num_stages)]
    return [tuple(scales[perm[j]] for perm in perms) for j in range(len(scales))]


class ResizableStep(nn.Module):
    """Algorithm 1 of Resizable Networks at every training resolution (largest first): for each of the
    len(scales) fairly sampled configurations, select its scale-aware BNs, forward, loss. The losses are summed,
    so the loop's one backward accumulates every sub-network's gradient in the shared layers before the one
    optimizer step — the same gradient as a backward per sub-network (weights do not change in between), at the
    memory of all sub-networks' activations. With `full_config` (train's default) the full configuration at each
    resolution runs before that resolution's fair set: the largest network of the sandwich rule (US-Nets), kept
    beside §3.2's fair sampling, which alone draws it once in S^(K-1) steps per resolution (S factors, K stages).
    With distillation the full configuration at the largest resolution (first) teaches the others
    (`losses.FullConfigDistillationLoss`; without `full_config` it is one more sub-network).
    `configs` holds the (resolution, stage scales) of the last iteration's sub-networks, in order."""

    def __init__(self, model: MultiResolutionNet, loss: nn.Module, distill: bool = False, full_config: bool = True):
        super().__init__()
        self.model, self.loss, self.distill = model, loss, distill
        self.full_config = full_config and len(model.config.scales) > 1  # one factor: the fair set is the full one
        self.resolutions = sorted(model.config.resolutions, reverse=True)
        self.configs: list[tuple[int, tuple[float, ...]]] = []

    def forward(self, images: Tensor, target: Tensor) -> tuple[Tensor, list[Tensor], dict]:
        top, full = self.resolutions[0], self.model.full_config
        configs = [(top, full)] if self.distill and not self.full_config else []
        for r in self.resolutions:
            configs += [(r, full)] if self.full_config else []
            configs += [(r, c) for c in fair_configurations(self.model.num_stages, self.model.config.scales)]
        logits = []
        for r, stage_scales in configs:
            self.model.set_config(r, stage_scales)
            logits.append(self.model(resize_batch(images, r)))
        self.configs = configs
        loss, parts = self.loss(logits, target)
        return loss, logits, parts


def resize_batch(images: Tensor, resolution: int) -> Tensor:
    """Resize a square batch to `resolution` (bilinear, antialiased); a no-op at its own size."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), dev


@dataclasses.dataclass
class Resumable:
    """The training state a resumed run restores besides the weights: optimizer, schedule, loss (RS-Nets α),
    AMP scaler and RNG. The data order and augmentation depend only on (seed, epoch), so need no state."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    scaler: torch.amp.GradScaler

    def state_dict(self, epoch: int, config: TrainConfig, device: torch.device) -> dict:
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return {"epoch": epoch, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "loss": self.criterion.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng}, "train_config": config.to_dict()}

    def load_state_dict(self, state: dict, device: torch.device) -> int:
        """Restore everything; returns the number of epochs already done."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.criterion.load_state_dict(state["loss"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        return state["epoch"]


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LR factor per step: linear warm-up to 1, then cosine decay to 0 at `total_steps`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


# Fields added with a default other than the behaviour of the checkpoints written before them: such a checkpoint
# trained with this value, and its --resume goes on with it.
LEGACY_DEFAULTS = {"full_config_each_step": False, "distill_after_warmup": False}


def check_resume(config: TrainConfig, saved: dict, path: Path) -> None:
    """Refuse a resume whose settings disagree with the checkpoint's, naming every mismatch. A field in
    LEGACY_DEFAULTS that the checkpoint lacks is set in `config` to its legacy value (the run resumes as it began)."""
    for name, value in LEGACY_DEFAULTS.items():
        if name not in saved:
            object.__setattr__(config, name, value)
    now = config.to_dict()
    # a field newer than the checkpoint (e.g. `qat`) was its default when the checkpoint was written
    saved = {**{f.name: LEGACY_DEFAULTS.get(f.name, f.default) for f in dataclasses.fields(TrainConfig)
                if f.name not in saved}, **saved}
    diffs = [f"{k}: {now[k]!r} now vs {saved.get(k)!r} in the checkpoint"
             for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diffs:
        raise ValueError(f"--resume: the config disagrees with {path}: " + "; ".join(diffs))


RUN_FILES = ("checkpoint.pt", "metrics.jsonl")  # what `train` writes into --out (plus its own temporaries)


def check_run_folder(config: TrainConfig) -> None:
    """Refuse, before anything is written: an --out that is a file or lies under one; an existing checkpoint without
    --resume/--overwrite; --resume without a checkpoint; and --overwrite of a folder holding anything `train` did not
    write (it never replaces another tool's output or the user's files)."""
    out = Path(config.out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise FileExistsError(f"--out {out}: {p} is a file, not a folder; give a run folder")
    ckpt_path = config.checkpoint_path
    if ckpt_path.exists() and not (config.resume or config.overwrite):
        raise FileExistsError(f"{ckpt_path} already exists: pass --resume to continue it, --overwrite to start over, "
                              "or choose another --out")
    if config.resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    if config.overwrite and out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES
                         and not (p.name.startswith(".") and p.name.endswith(".tmp")))
        if foreign or any((out / n).exists() and not (out / n).is_file() for n in RUN_FILES):
            shown = ", ".join(foreign[:5]) + (f", … ({len(foreign) - 5} more)" if len(foreign) > 5 else "")
            raise FileExistsError(f"--overwrite: {out} is not a run folder of `resflex train` (it also holds "
                                  f"{shown or 'folders named like its files'}); --overwrite only restarts a run "
                                  "folder — choose another --out")


def trim_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the metrics lines of epochs the checkpoint holds (1..`epochs_done`), rewriting the file atomically
    when anything goes: a run killed between its metrics append and its checkpoint save logged an epoch the resumed
    run trains again (and a kill mid-append leaves a half line)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)

    def done(line: str) -> bool:
        try:
            epoch = json.loads(line).get("epoch")
        except (ValueError, AttributeError):
            return False
        return line.endswith("\n") and isinstance(epoch, int) and 1 <= epoch <= epochs_done

    kept = [line for line in lines if done(line)]
    if kept != lines:
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(kept), encoding="utf-8"))


def _grouped_conv_on_cpu(model: nn.Module, device, rank: int) -> bool:
    """True (with a note) for a model with grouped, non-depthwise convs trained on CPU: oneDNN's NHWC backward
    corrupts the heap there (torch 2.13: RegNetX aborts with "double free or corruption" within 40 steps at
    32 px; NCHW, or oneDNN off, trains), so such a model trains in NCHW."""
    grouped = [n for n, m in model.named_modules()
               if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels]
    if not grouped or torch.device(device).type != "cpu":
        return False
    if rank == 0:
        tqdm.write(f"channels_last off: {len(grouped)} grouped convs (e.g. {grouped[0]}) crash oneDNN's NHWC "
                   "backward on CPU; training in NCHW")
    return True


def _calibrate_unseen(model: MultiResolutionNet, config: TrainConfig, class_names, images: int) -> dict | None:
    """`calibrate_unseen` on at most `config.bn_calibration_images` of the `images` training images; data it cannot
    use (e.g. every image unreadable) gives a warning and a checkpoint without the statistics, not a failed run."""
    try:
        return calibrate_unseen(model, config.data, min(config.bn_calibration_images, images),
                                batch_size=2 * config.batch_size, workers=config.workers, seed=config.seed,
                                class_names=class_names, progress=config.progress)
    except ValueError as e:
        warnings.warn(f"BN statistics at the untrained resolutions not computed ({e}); BN mode auto interpolates "
                      "there", stacklevel=2)
        return None


def train(config: TrainConfig) -> MultiResolutionNet:
    """Train a multi-resolution model as `config` says; returns it (unwrapped, on the training device)."""
    check_run_folder(config)  # before anything is changed: a bad --out fails here, with the folder intact
    rank, world, device = setup_distributed(config.device)
    on_gpu = device.type == "cuda"
    torch.manual_seed(config.seed)
    ckpt_path = config.checkpoint_path

    # Data: random-resized crops at the largest resolution; val sets are built per resolution by `evaluate`.
    top = max(config.resolutions)
    train_set = build_dataset(config.data, "train", TrainTransform(top, config.seed, config.min_crop, config.flip),
                              num_classes=config.num_classes, seed=config.seed, length=config.train_samples)
    class_names = list(train_set.classes)

    # Model, loss (RS-Nets α lives in the loss), optimizer, schedule.
    model = create_model(config.arch, config.method, config.resolutions, config.width, len(class_names),
                         config.meta_hidden, config.scales, config.stem_stride)
    if config.init and not config.resume:  # a resumed run already holds the weights it started from
        from .importer import init_from_single

        note = init_from_single(model, config.init)
        if rank == 0:
            tqdm.write(note)
    if config.finetune and not config.resume:  # §3.3: optionally fine-tune the chosen sub-network
        note = load_finetune(model, config.finetune, class_names)
        if rank == 0 and config.progress:
            tqdm.write(note)
    criterion = create_loss(model.config.method.value, len(config.resolutions), config.distill, config.label_smoothing)
    if config.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    qat = enable_qat(model) if config.qat else None  # fake-quantized weights, per-resolution activation ranges
    criterion.to(device)
    channels_last = config.channels_last and not _grouped_conv_on_cpu(model, device, rank)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    groups = recipe_groups(model, model.optimizer_groups(config.weight_decay), config.lr, config.summed_losses)
    groups.append({"params": list(criterion.parameters()), "weight_decay": 0.0, "lr": config.lr})
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    loader = make_loader(train_set, config.batch_size, shuffle=True, workers=config.workers, seed=config.seed, drop_last=True)
    steps_per_epoch = min(len(loader), config.max_steps_per_epoch or len(loader))
    if steps_per_epoch == 0:
        raise ValueError(f"{config.data}: {len(train_set)} training images give no full batch of {config.batch_size}"
                         f" on {world} process(es); lower --batch-size")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)))
    amp = config.amp and on_gpu
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    resumable = Resumable(optimizer, scheduler, criterion, scaler)
    start_epoch = 0
    if config.resume:
        payload = read_checkpoint(ckpt_path)
        state = payload.get("train_state")
        if not state:
            raise ValueError(f"--resume: {ckpt_path} holds weights only, no training state to resume")
        check_resume(config, state["train_config"], ckpt_path)
        if len(state["optimizer"]["param_groups"]) != len(optimizer.param_groups):
            raise ValueError(f"--resume: {ckpt_path} holds {len(state['optimizer']['param_groups'])} optimizer "
                             f"parameter groups, this version makes {len(optimizer.param_groups)} (the learning-rate "
                             "recipe changed: docs/guide/train.md); finish that run with the resflex version that "
                             "started it, or start over with --overwrite")
        model.load_state_dict(model_from_payload(payload, str(ckpt_path)).state_dict())
        if qat is not None:  # the learned activation ranges go on from where they were
            qat.load_ranges(qat_ranges(payload, str(ckpt_path)) or {})
        start_epoch = resumable.load_state_dict(state, device)

    target_point = None  # (resolution, stage scales) trained alone after --switch-at-epoch
    if config.target_config is not None:
        r, stage_scales = parse_target_config(config.target_config)
        try:  # a wrong stage count fails here, before the run folder changes
            model.set_config(r, stage_scales)
        except ValueError as e:
            raise ValueError(f"--target-config {config.target_config!r}: {e}") from None
        target_point = (r, model.stage_scales)
        model.set_config(max(config.resolutions), model.full_config)

    if rank == 0:  # everything above succeeded: only now is the run folder changed
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            config.metrics_path.unlink(missing_ok=True)  # a fresh run (or --overwrite) starts a fresh log
        else:
            trim_metrics(config.metrics_path, start_epoch)

    resizable = model.config.method is Method.RESIZABLE
    step_module = ResizableStep(model, criterion, config.distill, config.full_config_each_step) if resizable \
        else MultiResolutionStep(model, criterion)
    runner = nn.parallel.DistributedDataParallel(step_module) if world > 1 else step_module
    top_index = 0  # logits are ordered largest resolution first
    kd_from = round(config.warmup_epochs * steps_per_epoch) if config.distill_after_warmup else 0  # MRED's L_kd
    for epoch in range(start_epoch, config.epochs):
        switched = target_point is not None and epoch >= config.switch_at_epoch
        if switched and not isinstance(step_module, TargetConfigStep):  # §3.4 scheduled switching
            step_module = TargetConfigStep(model, criterion, *target_point)
            runner = nn.parallel.DistributedDataParallel(step_module, find_unused_parameters=True) if world > 1 \
                else step_module  # the other configurations' private BNs get no gradient
        model.train()
        train_set.set_epoch(epoch)
        loader = make_loader(train_set, config.batch_size, shuffle=True, workers=config.workers, seed=config.seed,
                             epoch=epoch, drop_last=True)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=rank != 0 or not config.progress, dynamic_ncols=True)
        seen = correct = skipped = 0
        loss_sum, t0 = 0.0, time.perf_counter()
        for step, (images, target, n_bad) in enumerate(loader):
            if step == steps_per_epoch:
                break
            skipped += n_bad
            if len(target) == 0:
                continue
            images = model.preprocessing.normalize(images.to(device, non_blocking=True))
            target = target.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if config.distill_after_warmup:  # scheduler.last_epoch: steps done so far (restored on --resume)
                criterion.kd_weight = float(scheduler.last_epoch >= kd_from)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss, logits, parts = runner(images, target)
            check = loss.detach().float().clone()
            if world > 1:
                dist.all_reduce(check)  # every rank stops together if any rank diverged
            if not math.isfinite(check.item()):
                bar.close()
                raise TrainingDiverged(
                    f"loss became {check.item()} at epoch {epoch + 1}, step {step + 1} (loss parts: {parts}); "
                    f"stopped. The last good checkpoint ({ckpt_path}) is untouched. Lower --lr "
                    f"(now {config.lr}), lengthen --warmup-epochs (now {config.warmup_epochs}) or turn off --amp."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

            seen += len(target)
            correct += (logits[top_index].argmax(1) == target).sum().item()
            loss_sum += loss.item() * len(target)
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen * world / (time.perf_counter() - t0):.0f}")  # rank 0 sees 1/world
        bar.close()
        train_time = time.perf_counter() - t0
        if world > 1:  # log the whole global batch, not rank 0's shard
            totals = torch.tensor([seen, correct, loss_sum, skipped], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            seen, correct, loss_sum, skipped = int(totals[0]), int(totals[1]), float(totals[2]), int(totals[3])

        if rank == 0:
            if resizable:  # validation per resolution at the full configuration, or at the target after the switch
                model.set_config(*(target_point if switched else (max(config.resolutions), model.full_config)))
            val = evaluate(model, config.data, [target_point[0]] if switched else config.resolutions,
                           batch_size=2 * config.batch_size,
                           workers=config.workers, seed=config.seed,
                           length=config.val_samples, class_names=class_names)
            record = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "train_loss": loss_sum / max(seen, 1),
                      "train_top1": correct / max(seen, 1), "val_top1": {str(r): a for r, a in val.items()},
                      "images_per_s": seen / train_time, "epoch_time_s": train_time,
                      "skipped_images": skipped, **({"stage_scales": list(model.stage_scales)} if resizable else {}),
                      **({"alpha": criterion.alpha.tolist()} if hasattr(criterion, "alpha") else {})}
            with open(config.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            state = resumable.state_dict(epoch + 1, config, device)
            ranges = qat.range_table() if qat is not None else None
            save_checkpoint(ckpt_path, model, class_names, state, qat_ranges=ranges)
            accs = "  ".join(f"{r}px {a:.3f}" for r, a in val.items())
            tqdm.write(f"epoch {epoch + 1}: train loss {record['train_loss']:.3f}  val top-1 {accs}"
                       + (f"  ({skipped} unreadable images skipped)" if skipped else ""))
            if epoch + 1 == config.epochs:  # the trained weights are safe on disk first
                calibration = _calibrate_unseen(model, config, class_names, len(train_set))
                if calibration is not None:
                    save_checkpoint(ckpt_path, model, class_names, state, qat_ranges=ranges, bn_calibration=calibration)
        if world > 1:
            dist.barrier()
    if qat is not None:
        qat.remove()
    return model.to(memory_format=torch.contiguous_format)  # what exporters and callers expect

