"""CI check across languages: the Kotlin and Swift BenchmarkRunners' device_profile.json import into a real bundle.

    python scripts/port_roundtrip.py prepare DIR   # a tiny real bundle in DIR/bundle; prints the ports' env vars
    (run the Kotlin and Swift tests with RESFLEX_PORT_OUT=DIR, RESFLEX_PORT_LUT=DIR/bundle/lut.json and
     RESFLEX_PORT_CHECKPOINT_SHA256 set: each writes DIR/device_profile_<language>.json from its fake engine)
    python scripts/port_roundtrip.py import DIR    # `resflex profile --import` each, then `resflex select` on it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from resflex.cli.main import main as resflex
from resflex.convert.pipeline import ConvertConfig, convert
from resflex.mobile.checkpoint import save_checkpoint
from resflex.mobile.models import create_model

PORTS = ("kotlin", "swift")


def prepare(folder: Path) -> None:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", "rsnet", (32, 24, 16), width=0.5, num_classes=4).eval()
    checkpoint = save_checkpoint(folder / "checkpoint.pt", model,
                                 ["red-horizontal", "green-horizontal", "red-vertical", "green-vertical"])  # synthetic
    result = convert(ConvertConfig(str(checkpoint), str(folder / "bundle"), backends=("executorch", "coreml", "tflite"),
                                   precisions=("fp32",), calib_samples=8, val_samples=8, progress=False,
                                   overwrite=True))
    print(f"export RESFLEX_PORT_OUT={folder} RESFLEX_PORT_LUT={folder / 'bundle' / 'lut.json'} "
          f"RESFLEX_PORT_CHECKPOINT_SHA256={result.manifest.model.checkpoint_sha256}")


def import_all(folder: Path) -> int:
    bundle = folder / "bundle"
    missing = [p for p in PORTS if not (folder / f"device_profile_{p}.json").is_file()]
    if missing:
        print(f"port_roundtrip: no device_profile.json from {', '.join(missing)} in {folder}", file=sys.stderr)
        return 1
    for port in PORTS:
        path = folder / f"device_profile_{port}.json"
        device = json.loads(path.read_text())["device_id"]
        print(f"--- {port}: resflex profile {bundle.name} --import {path.name}")
        if resflex(["profile", str(bundle), "--import", str(path)]) != 0:
            return 1
        print(f"--- {port}: resflex select {bundle.name} --device {device}")
        if resflex(["select", str(bundle), "--device", device, "--budget-ms", "33"]) != 0:
            return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("prepare", "import"):
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    if argv[0] == "prepare":
        prepare(folder)
        return 0
    return import_all(folder)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
