"""Smoke test of bench/executorch_lower_bench.py: one export per variant in fresh processes, the stage table and the
byte-identity line it prints."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("executorch")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("off", ["_without_idle_retraces", "_deferred_recompiles"])
def test_before_and_after_write_the_same_pte_and_print_the_stages(off):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "executorch_lower_bench.py"), "--precisions", "fp32",
                           "--resolutions", "16", "--width", "0.25", "--repeats", "1", "--off", off],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[2].strip(): line for line in done.stdout.splitlines() if line.startswith("| fp32 |")}
    assert {"to_edge", "to_backend", "xnnpack passes", "**total**"} <= set(rows)
    before, after = (float(x) for x in rows["**total**"].split("|")[3:5])
    assert before > 0 and after > 0
    assert "fp32: .pte bytes identical in every run: yes" in done.stdout


def test_an_unknown_speedup_is_refused():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "executorch_lower_bench.py"), "--off", "_faster"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--off '_faster': expected" in done.stderr
