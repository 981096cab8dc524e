"""Smoke test of bench/bn_auto_bench.py: per-checkpoint rows, their mean and the worst gap (tiny_cnn)."""

import re
import subprocess
import sys
from pathlib import Path

from resflex.mobile.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]


def test_auto_and_nearest_per_checkpoint_and_their_mean(tmp_path):
    paths = []
    for seed in (0, 1):
        config = TrainConfig(arch="tiny_cnn", resolutions=(16, 12), width=0.5, epochs=1, batch_size=16,
                             train_samples=64, val_samples=16, workers=0, progress=False, seed=seed,
                             bn_calibration_images=0, out=str(tmp_path / f"run{seed}"), device="cpu")
        train(config)
        paths.append(str(config.checkpoint_path))
    run = subprocess.run([sys.executable, str(REPO / "bench" / "bn_auto_bench.py"), "synthetic", "15,13", *paths,
                          "--val", "16"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert out.count("| `auto` |") == 3 and "Mean over the 2 checkpoints" in out
    assert re.search(r"\| `auto` − `nearest` \| [+-][0-9.]+ \| [+-][0-9.]+ \| [+-][0-9.]+ \|", out)
    assert re.search(r"worst single checkpoint, `auto` − `nearest` at one resolution: [+-][0-9.]+ pt", out)
