"""Smoke test of bench/train_bench.py over several seeds: the per-seed rows, the means and the claims (tiny_cnn)."""

import re
import subprocess
import sys
from pathlib import Path

from resflex.mobile.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_seeds_table_reports_means_and_claims(tmp_path):
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "train_bench.py"), "--arch", "tiny_cnn", "--width", "0.5",
         "--resolutions", "16,12", "--test-resolutions", "16,14,12", "--epochs", "1", "--train-samples", "64",
         "--val-samples", "32", "--batch-size", "16", "--step-repeats", "0", "--seeds", "0,3",
         "--models", "rsnet,rsnet_late,rsnet_ce,single", "--no-record", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "seed 0; * = training resolution" in out and "training SAN" not in out  # --models leaves SAN out
    for row in ("RS-Net (MRED), seed 0", "RS-Net (MRED), seed 3", "RS-Net (CE only), seed 3", "I-Nets, seed 3"):
        assert f"| {row} |" in out, row
    mean = re.search(r"\| \*\*RS-Net \(MRED\), mean \(min–max\) over seeds 0, 3\*\* \| (.*) \|", out)
    assert mean and len(mean.group(1).split(" | ")) == 3  # one cell per training resolution, then their mean
    claim = re.search(r"\| RS-Net − I-Net ± s\.e\. \(goal ≥ −0\.5 pt\) \| (.*) \|", out)
    assert claim and all(cell[-1] in "✓✗" for cell in claim.group(1).split(" | ")[:-1])  # last: mean over resolutions
    assert re.search(r"\| RS-Net \(MRED\): [0-9.]+, [0-9.]+ \(I-Nets [0-9]+ s\) \| \*\*[0-9.]+×\*\* \|", out)  # training cost
    assert re.search(r"\| RS-Net \(CE only\) − RS-Net \(MRED\) ± s\.e\. \| ", out)  # --models rsnet_ce
    assert re.search(r"\| RS-Net \(MRED, KD after warm-up\) − RS-Net \(MRED\) ± s\.e\. \| ", out)  # rsnet_late
    for folder, distill, after_warmup in (("rsnet", True, False), ("rsnet_late", True, True),
                                          ("rsnet_ce", False, False)):  # each in its own run folder
        payload = read_checkpoint(tmp_path / "out" / "seed3" / folder / "16-12" / "checkpoint.pt")
        config = payload["train_state"]["train_config"]
        assert (config["distill"], config["distill_after_warmup"]) == (distill, after_warmup), folder

    bad = subprocess.run([sys.executable, str(REPO / "bench" / "train_bench.py"), "--models", "rsnet,inet",
                          "--no-record", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert bad.returncode != 0 and "--models" in bad.stderr and "inet" in bad.stderr
