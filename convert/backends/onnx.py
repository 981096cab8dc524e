"""ONNX: one file per resolution (ONNX has no multi-entry models), fp32 or static int8 (QDQ, per-channel)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .base import Entry, Exported

INPUT, OUTPUT = "image", "logits"


def export_onnx_file(module: nn.Module, resolution: int, path: Path, opset: int = 18) -> Path:
    """Export one baked module with a batch-1 NCHW input named `image` and output `logits`."""
    x = torch.zeros(1, 3, resolution, resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
                          dynamo=False)
    return path


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
                logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's quantizer logs advice at WARNING
                quantize_static(str(fp32), str(out_dir / name), _CalibrationReader(calib[r]),
                                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8)
                fp32.unlink()
            files.append(name)
            entries.append(Entry(r, name, INPUT, OUTPUT, (1, 3, r, r)))
        return Exported(self.name, precision, tuple(files), "NCHW", tuple(entries), True,
                        "one file per resolution; ONNX Runtime CPUExecutionProvider")

    def runner(self, exported: Exported, out_dir: Path):
        return OnnxRunner(out_dir)


class OnnxRunner:
    def __init__(self, folder: Path, threads: int = 1):
        self.folder, self.threads, self._sessions = folder, threads, {}

    def session(self, name: str):
        import onnxruntime as ort

        if name not in self._sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            self._sessions[name] = ort.InferenceSession(str(self.folder / name), options,
                                                        providers=["CPUExecutionProvider"])
        return self._sessions[name]

    def run(self, entry: Entry, x: np.ndarray) -> np.ndarray:
        return self.session(entry.name).run([entry.output_name], {entry.input_name: x.astype(np.float32)})[0]
