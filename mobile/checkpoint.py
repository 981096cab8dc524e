"""Checkpoints: one file with the model config, preprocessing, class names, weights and (optionally) the
training state needed to resume. Written atomically; read with `torch.load(weights_only=True)` only."""

from __future__ import annotations

import math
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import torch

from .layers import load_calibration_table
from .models import ArchSourceError, ModelConfig, MultiResolutionNet, Preprocessing, model_from_config

FORMAT = "resflex-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model_config", "preprocessing", "class_names", "state_dict")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, unsafe or not a resflex checkpoint."""


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call `write(tmp_path)` then rename over `path`, so readers never see a half-written file."""
    from resflex.mobile.bundle.io import clean_stale  # torch-free file helpers (moving to resflex.mobile.bundle)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)  # temporaries of a writer killed mid-write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | os.PathLike, model: MultiResolutionNet, class_names: list[str],
                    train_state: dict | None = None, metadata: dict | None = None,
                    qat_ranges: dict | None = None, bn_calibration: dict | None = None) -> Path:
    """Write `model` (and optionally the resumable training state, plain-data `metadata` such as where an
    imported model came from, the activation ranges `train --qat` learned, `QAT.range_table()`, and the BN
    statistics `train` recalibrated for untrained resolutions, `calibration_table(model, images)`) to `path`
    atomically."""
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"class_names: expected {model.config.num_classes} names, got {len(class_names)}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        "class_names": list(class_names),
        "state_dict": model.state_dict(),
        "train_state": train_state,
        **({"metadata": metadata} if metadata else {}),
        **({"qat_ranges": qat_ranges} if qat_ranges else {}),
        **({"bn_calibration": bn_calibration} if bn_calibration else {}),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_tensors_only(path: Path, why: str, read_as: str = "", advice: str = ""):
    """`torch.load(weights_only=True)`: nothing in the file runs. A file that needs code to load (`why` says what
    that means for the caller, `advice` what to do) or cannot be read is a CheckpointError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, {why}; nothing in it was "
            f"executed.{advice} Detail: {_unpickling_detail(e)}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read{read_as}: {_first_line(e)}") from None
    except Exception as e:  # anything else a crafted file makes torch.load raise
        raise CheckpointError(f"{path} cannot be read{read_as} ({type(e).__name__}: {_first_line(e)})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint's payload without executing any code from it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected a checkpoint file (e.g. {path / 'checkpoint.pt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch.save's zip, or a legacy torch/pickle file
        raise CheckpointError(f"{path} is not a checkpoint: it is neither a PyTorch zip file nor a pickle (first bytes "
                              f"{head!r}); give the checkpoint.pt that `resflex train` wrote")
    payload = load_tensors_only(path, "so it was not written by resflex (or was tampered with)", " as a checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resflex checkpoint (expected a dict with format={FORMAT!r})")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {missing}")
    if payload["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {str(payload['version'])[:40]} is not supported "
                              f"(expected {VERSION})")
    return payload


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e)).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[:limit] + "…"


def _unpickling_detail(e: BaseException) -> str:
    """What `weights_only` loading refused, in one sentence (torch's own text is several coloured paragraphs)."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]{1,200})", str(e))
    if found:
        return f"it refers to {found.group(1)}, which only code can rebuild."
    found = re.search(r"WeightsUnpickler error: (.*)", str(e))
    return _first_line(ValueError(found.group(1) if found else e))


def _finite(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def check_numbers(payload: dict, source: str = "checkpoint") -> None:
    """Refuse numbers no model can be built from (CheckpointError names the field): width finite in (0, 16],
    crop_ratio finite in (0, 1], three finite mean/std values with std > 0, 2 ≤ num_classes ≤ 1e6,
    resolutions integers in [1, 4096], meta_hidden in [0, 4096]."""
    config, pre = payload.get("model_config"), payload.get("preprocessing")
    if not isinstance(config, dict) or not isinstance(pre, dict):
        raise CheckpointError(f"{source}: model_config and preprocessing must be objects")

    def bad(field, value, expected):
        raise CheckpointError(f"{source}: {field} = {str(value)[:60]}, expected {expected}")

    width = config.get("width", 1.0)
    if not _finite(width) or not 0 < width <= 16:
        bad("model_config.width", width, "a finite multiplier in (0, 16]")
    classes = config.get("num_classes", 1000)
    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= 10**6:
        bad("model_config.num_classes", classes, "an integer in [2, 1000000]")
    hidden = config.get("meta_hidden", 0)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or not 0 <= hidden <= 4096:
        bad("model_config.meta_hidden", hidden, "an integer in [0, 4096]")
    res = config.get("resolutions", [224])
    if not isinstance(res, (list, tuple)) or not res or any(
            isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 4096 for r in res):
        bad("model_config.resolutions", res, "a non-empty list of integers in [1, 4096]")
    crop = pre.get("crop_ratio")
    if not _finite(crop) or not 0 < crop <= 1:
        bad("preprocessing.crop_ratio", crop, "a finite fraction in (0, 1]")
    for field in ("mean", "std"):
        v = pre.get(field)
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_finite(x) for x in v) or \
                (field == "std" and not all(x > 0 for x in v)):
            bad(f"preprocessing.{field}", v, "3 finite numbers" + (" > 0" if field == "std" else ""))


def qat_ranges(payload: dict, source: str = "checkpoint") -> dict[int, dict[str, tuple[float, float]]] | None:
    """The activation ranges `train --qat` learned, {resolution: {point: (lo, hi)}} (a point is
    `resflex.mobile.qat.INPUT_POINT` or the FQN of the module whose output it is; a resolution never trained has no
    entries), or None when the checkpoint holds none. A malformed table, a range that is not finite or whose lo > hi
    is a CheckpointError naming the point and resolution."""
    table = payload.get("qat_ranges")
    if table is None:
        return None
    if not isinstance(table, dict) or not isinstance(table.get("resolutions"), list) or \
            not isinstance(table.get("points"), dict):
        raise CheckpointError(f"{source}: qat_ranges must be an object with 'resolutions' (a list) and 'points' "
                              "(an object)")
    resolutions = table["resolutions"]
    if any(isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 4096 for r in resolutions):
        raise CheckpointError(f"{source}: qat_ranges.resolutions = {str(resolutions)[:60]}, expected integers in "
                              "[1, 4096]")
    out: dict[int, dict[str, tuple[float, float]]] = {r: {} for r in resolutions}
    for point, value in table["points"].items():
        where = f"{source}: qat_ranges.points[{str(point)[:80]!r}]"
        if not isinstance(point, str) or not isinstance(value, dict) or \
                any(not isinstance(value.get(k), list) or len(value[k]) != len(resolutions) for k in ("lo", "hi")):
            raise CheckpointError(f"{where}: expected {{'lo': [...], 'hi': [...]}} with one value per resolution "
                                  f"({len(resolutions)})")
        for r, lo, hi in zip(resolutions, value["lo"], value["hi"]):
            if lo is None and hi is None:
                continue  # never trained at this resolution
            if not (_finite(lo) and _finite(hi)):
                raise CheckpointError(f"{where} at {r}px: range ({lo}, {hi}) is not two finite numbers")
            if lo > hi:
                raise CheckpointError(f"{where} at {r}px: range ({lo}, {hi}) is inverted (lo > hi)")
            out[r][point] = (float(lo), float(hi))
    return out


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(k if len(k) <= 80 else k[:80] + "…" for k in keys[:n])
    return shown + (f", … ({len(keys) - n} more)" if len(keys) > n else "")


def check_state_dict(model: MultiResolutionNet, state: dict, source: str) -> None:
    """A short summary (counts and a few key names) of how `state` differs from `model`'s weights, as a
    CheckpointError — not the full list of hundreds of keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: state_dict is a {type(state).__name__}, expected a dict of tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(v.shape)]
    not_tensors = [k for k in expected if k in state and not isinstance(state[k], torch.Tensor)]
    if missing or unexpected or shapes or not_tensors:
        c = model.config
        parts = [f"{len(x)} {what} (e.g. {_examples(x)})" for x, what in (
            (missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape"),
            (not_tensors, "not tensors")) if x]
        raise CheckpointError(f"{source}: weights do not match model_config (arch {c.arch}, method {c.method.value}, "
                              f"width {c.width}, {len(expected)} tensors expected): " + "; ".join(parts) +
                              ". Was it trained with another --arch, --method or --width?")


def model_from_payload(payload: dict, source: str = "checkpoint") -> MultiResolutionNet:
    """Rebuild the model a payload describes and load its weights."""
    check_numbers(payload, source)
    try:
        config = ModelConfig.from_dict(payload["model_config"])
        model = model_from_config(config)
        model.preprocessing = Preprocessing.from_dict(payload["preprocessing"])
    except ArchSourceError as e:  # your own network's factory file: missing, changed (both sha256), failing
        raise CheckpointError(f"{source}: {e}") from None
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise CheckpointError(f"{source}: invalid model_config/preprocessing: {_first_line(e)}") from None
    check_state_dict(model, payload["state_dict"], source)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not match model_config {config}: {_first_line(e)}") from None
    if payload.get("bn_calibration") is not None:
        try:
            load_calibration_table(model, payload["bn_calibration"])
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}") from None
    return model


def load_checkpoint(path: str | os.PathLike) -> tuple[MultiResolutionNet, dict]:
    """(model in eval mode, payload) from a checkpoint file."""
    payload = read_checkpoint(path)
    model = model_from_payload(payload, str(path))
    return model.eval(), payload
