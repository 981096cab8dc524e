"""ONNX: one file per resolution (ONNX has no multi-entry models), fp32 or static int8 (QDQ, per-channel)."""

from __future__ import annotations

import contextlib
import logging
import warnings
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..quiet import is_verbose
from ..runtimes import OnnxRuntime
from .base import Entry, Exported

INPUT, OUTPUT = "image", "logits"


# What each module exported to (resolution, opset) → ONNX bytes, valid while its tensors are unchanged: the TFLite
# backend and the ONNX backend's fp32 and int8 all start from the same baked module's ONNX export.
_EXPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state_key(module: nn.Module) -> tuple:
    """Identity and in-place version of every tensor of the module (a changed weight gives a new key)."""
    return tuple((name, t.data_ptr(), t._version) for name, t in module.state_dict(keep_vars=True).items())


def export_onnx_file(module: nn.Module, resolution: int, path: Path, opset: int = 18) -> Path:
    """Export one baked module with a batch-1 NCHW input named `image` and output `logits` (a module exported
    before, unchanged since, at the same resolution and opset is written from the first export's bytes)."""
    key = (resolution, opset, _state_key(module))
    done = _EXPORTS.setdefault(module, {})
    if key not in done:
        x = torch.zeros(1, 3, resolution, resolution)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                              opset_version=opset, dynamo=False)
        done[key] = Path(path).read_bytes()
    else:
        Path(path).write_bytes(done[key])
    return path


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice at WARNING on the root logger, and the sessions it opens warn (in C++)
    about every initializer graph optimisation removes: both are raised to ERROR unless the conversion is verbose."""
    if is_verbose():
        yield
        return
    import onnxruntime

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))
    onnxruntime.set_default_logger_severity(3)
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(2)  # onnxruntime's default, WARNING
        root.setLevel(level)


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader over one resolution's calibration batch, one image at a time."""

    def __init__(self, batch: Tensor):
        self._items = iter([{INPUT: x[None].numpy().astype(np.float32)} for x in batch])

    def get_next(self):
        return next(self._items, None)


class OnnxBackend:
    name = "onnx"
    precisions = ("fp32", "int8")
    bn_style = "fold"  # separate files share nothing, so fold BN for the fastest graph

    def export(self, baked: Mapping[int, nn.Module], precision: str, calib: Mapping[int, Tensor],
               out_dir: Path) -> Exported:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        out_dir.mkdir(parents=True, exist_ok=True)
        files, entries = [], []
        for r, module in sorted(baked.items(), reverse=True):
            name = f"model_{precision}_{r}.onnx"
            if precision == "fp32":
                export_onnx_file(module, r, out_dir / name)
            else:
                fp32 = export_onnx_file(module, r, out_dir / f".fp32_{r}.onnx")
                with _quiet_quantizer():
                    quantize_static(str(fp32), str(out_dir / name), _CalibrationReader(calib[r]),
                                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                                    weight_type=QuantType.QInt8)
                fp32.unlink()
            files.append(name)
            entries.append(Entry(r, name, INPUT, OUTPUT, (1, 3, r, r)))
        return Exported(self.name, precision, tuple(files), "NCHW", tuple(entries), True,
                        "one file per resolution; ONNX Runtime CPUExecutionProvider")

    def runner(self, exported: Exported, out_dir: Path) -> OnnxRuntime:
        return OnnxRuntime(Path(out_dir) / exported.files[0])
