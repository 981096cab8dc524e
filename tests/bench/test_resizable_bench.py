"""Smoke test of bench/resizable_bench.py: its --quick mode runs every table end to end (tiny_cnn, seconds)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_mode_prints_every_table(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "bench" / "resizable_bench.py"), "--quick", "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for heading in ("Training cost per iteration", "(a) Table 1", "(b) Configuration front", "(c) Appendix B.1",
                    "(d) Resizable-Adapt", "(e) Resizable-Aug"):
        assert heading in out, heading
    assert "| 32:0.5,0.5 |" in out and "Resizable-Adapt (cheap pass + learner" in out
    assert "recorded in" not in out  # --quick never writes bench/RESULTS.md
    assert (tmp_path / "out" / "resizable" / "checkpoint.pt").is_file()
    assert (tmp_path / "out" / "adapt" / "learner.pt").is_file()
