"""Checkpoints: one file with the model config, preprocessing, class names, weights and (optionally) the
training state needed to resume. Written atomically; read with `torch.load(weights_only=True)` only."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from .models import ModelConfig, MultiResolutionNet, Preprocessing, model_from_config

FORMAT = "resflex-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "model_config", "preprocessing", "class_names", "state_dict")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, unsafe or not a resflex checkpoint."""


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call `write(tmp_path)` then rename over `path`, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
                    train_state: dict | None = None) -> Path:
    """Write `model` (and optionally the resumable training state) to `path` atomically."""
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
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint's payload without executing any code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, so it was not written "
            f"by resflex (or was tampered with); nothing in it was executed. Detail: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read as a checkpoint: {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resflex checkpoint (expected a dict with format={FORMAT!r})")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {missing}")
    if payload["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']!r} is not supported (expected {VERSION})")
    return payload


def model_from_payload(payload: dict, source: str = "checkpoint") -> MultiResolutionNet:
    """Rebuild the model a payload describes and load its weights."""
    try:
        config = ModelConfig.from_dict(payload["model_config"])
        model = model_from_config(config)
        model.preprocessing = Preprocessing.from_dict(payload["preprocessing"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid model_config/preprocessing: {e}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not match model_config {config}: {e}") from None
    return model


def load_checkpoint(path: str | os.PathLike) -> tuple[MultiResolutionNet, dict]:
    """(model in eval mode, payload) from a checkpoint file."""
    payload = read_checkpoint(path)
    model = model_from_payload(payload, str(path))
    return model.eval(), payload
